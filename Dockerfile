# One image for every role: ROLE=api|worker|all and POOLS choose what a container runs.
#
# Two stages. build: every dependency, and the TypeScript bundled by esbuild into dist/
# (`npm run build`). runtime: production dependencies and dist/ only, so nothing is compiled at
# start. node itself is the container's PID 1 and receives `docker stop`'s SIGTERM: it installs
# its SIGTERM/SIGINT handlers before anything else (the kernel drops signals to a PID 1 without
# a handler) and shuts down gracefully within SHUTDOWN_GRACE_MS. It starts no child processes,
# so it has no zombies to reap; `docker run --init` (tini) works as well if you prefer an init.
# Tested without a Docker engine: test/shutdown-signals.test.ts runs this CMD as PID 1 of its own
# PID namespace (`unshare --pid --fork --mount-proc`) and sends it SIGTERM under load.

FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY schema ./schema
COPY shared ./shared
COPY workers ./workers
RUN npm run build

FROM node:24-slim
ENV NODE_ENV=production HOST=0.0.0.0 PORT=3000
WORKDIR /app
# The node user owns /app: the embedded default keeps DATA_DIR (.data) here.
RUN chown node:node /app
USER node
COPY --chown=node:node package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build --chown=node:node /app/dist/workers ./dist/workers
EXPOSE 3000
# /healthz answers 200 while the database does; a ROLE=worker container serves no HTTP.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "if (process.env.ROLE === 'worker') process.exit(0); fetch(`http://127.0.0.1:${process.env.PORT || 3000}/healthz`).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
STOPSIGNAL SIGTERM
CMD ["node", "--enable-source-maps", "dist/workers/node.js"]
