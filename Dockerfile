# One image for every role: ROLE=api|worker|all and POOLS choose what a container runs.
FROM node:20-slim
WORKDIR /app
ENV NODE_ENV=production HOST=0.0.0.0 PORT=3000
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY schema ./schema
COPY shared ./shared
COPY workers ./workers
COPY tsconfig.json ./
USER node
EXPOSE 3000
CMD ["npx", "tsx", "workers/node.ts"]
