import { createServer, type IncomingHttpHeaders, type Server } from "node:http";

export interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface WebhookReceiver {
  url: string;
  port: number;
  received: Received[];
  /** Statuses to answer on a path, in order; 200 once they run out. */
  script: Map<string, number[]>;
  on(path: string): Received[];
  close(): Promise<void>;
}

/** A real HTTP receiver on 127.0.0.1: answers each path from its script (then 200), keeps every request. */
export async function startReceiver(): Promise<WebhookReceiver> {
  const received: Received[] = [];
  const script = new Map<string, number[]>();
  const server: Server = createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString()));
    req.on("end", () => {
      const path = req.url ?? "/";
      received.push({ path, headers: req.headers, body });
      const status = script.get(path)?.shift() ?? 200;
      if (status >= 300 && status < 400) res.writeHead(status, { location: "/landed" });
      else if (status === 429) res.writeHead(status, { "retry-after": "0" });
      else res.writeHead(status, { "content-type": "text/plain" });
      res.end(status === 200 ? "thanks" : `status ${status}`);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    received,
    script,
    on: (path) => received.filter((r) => r.path === path),
    close: () => new Promise((r) => server.close(() => r())),
  };
}

/** The Standard Webhooks headers of a received delivery, as the standardwebhooks package's verify() takes them. */
export const headersOf = (r: Received): Record<string, string> => ({
  "webhook-id": String(r.headers["webhook-id"]),
  "webhook-timestamp": String(r.headers["webhook-timestamp"]),
  "webhook-signature": String(r.headers["webhook-signature"]),
});
