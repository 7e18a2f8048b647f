/**
 * Dev-only WebSocket-to-TCP bridge, so the Neon serverless driver (which speaks the Postgres wire
 * protocol inside WebSocket binary frames) can reach a plain local Postgres under `wrangler dev`
 * or in tests. Point the driver at it with `wsProxy: bridge.url` (see workers/edge/neon.ts).
 *
 * The driver opens `ws://<wsProxy>?address=<host>:<port>` when wsProxy is a string, or whatever
 * a wsProxy function returns. The bridge accepts any path and ignores `address`: every
 * connection goes to the one configured target, so a client can never use it to dial an
 * arbitrary host.
 *
 *   npx tsx tools/ws-tcp-bridge.ts [--port 5433] [--target 127.0.0.1:5432] [--host 127.0.0.1]
 */
import { createServer } from "node:http";
import { connect } from "node:net";
import type { Duplex } from "node:stream";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { WebSocketServer, createWebSocketStream } from "ws";

export interface WsTcpBridgeOptions {
  /** Port to listen on; 0 picks a free one. */
  port: number;
  /** Where every connection goes. Defaults to 127.0.0.1:5432. */
  target?: { host: string; port: number };
  /** Interface to listen on. Defaults to 127.0.0.1: the bridge hands out unauthenticated Postgres sockets. */
  host?: string;
}

export interface WsTcpBridge {
  /** ws://host:port/v2, usable as the Neon driver's wsProxy (createNeonSql strips the scheme). */
  url: string;
  port: number;
  close(): Promise<void>;
}

export async function startWsTcpBridge(opts: WsTcpBridgeOptions): Promise<WsTcpBridge> {
  const target = opts.target ?? { host: "127.0.0.1", port: 5432 };
  const listenHost = opts.host ?? "127.0.0.1";
  // Compression would only cost CPU on loopback, and the driver does not negotiate it anyway.
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  // Every socket this bridge holds, so close() can cut them: upgraded sockets leave the HTTP server's tracking.
  const sockets = new Set<Duplex>();
  const track = (s: Duplex) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  };

  const server = createServer((_req, res) => {
    res.writeHead(426, { "content-type": "text/plain", connection: "close" }).end("WebSocket upgrade required\n");
  });

  server.on("upgrade", (req, client: Duplex, head: Buffer) => {
    track(client);
    // A client resetting mid-handshake must not become an uncaught 'error' that kills the bridge.
    client.on("error", () => client.destroy());
    // Browsers always send Origin and WebSockets are exempt from CORS: without this, any web page
    // could reach the (often trust-auth) local Postgres through the bridge. Drivers send none.
    if (req.headers.origin !== undefined) return refuse(client, 403, "Forbidden");
    // Dial Postgres before completing the handshake, so an unreachable database shows up as a
    // failed WebSocket open in the driver instead of a socket that opens and then drops.
    const tcp = connect(target.port, target.host);
    track(tcp);
    tcp.setNoDelay(true); // the wire protocol is many small request/response messages
    const failDial = () => refuse(client, 502, "Bad Gateway");
    tcp.once("error", failDial);
    tcp.once("connect", () => {
      tcp.off("error", failDial);
      if (client.destroyed) return void tcp.destroy();
      wss.handleUpgrade(req, client, head, (ws) => {
        // The stream form carries backpressure both ways; Buffers go out as binary frames,
        // which the driver requires (it reads each message as bytes).
        const stream = createWebSocketStream(ws);
        const kill = () => {
          tcp.destroy();
          stream.destroy();
        };
        stream.on("error", kill);
        tcp.on("error", kill);
        // pipe() ends the other side when one ends: a WebSocket close half-closes the TCP socket
        // (Postgres then closes it), and Postgres closing sends a WebSocket close frame.
        stream.pipe(tcp);
        tcp.pipe(stream);
      });
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, listenHost, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : opts.port;
  const urlHost = listenHost.includes(":") ? `[${listenHost}]` : listenHost;

  let closing: Promise<void> | undefined;
  return {
    url: `ws://${urlHost}:${port}/v2`,
    port,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        for (const s of sockets) s.destroy();
        wss.close();
      });
      return closing;
    },
  };
}

function refuse(client: Duplex, status: number, reason: string): void {
  if (client.destroyed) return;
  client.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}

function parseHostPort(value: string): { host: string; port: number } {
  const i = value.lastIndexOf(":");
  const port = Number(value.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) {
    throw new Error(`expected host:port, got ${JSON.stringify(value)}`);
  }
  return { host: value.slice(0, i).replace(/^\[(.*)\]$/, "$1"), port };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      port: { type: "string", default: process.env.WS_BRIDGE_PORT ?? "5433" },
      host: { type: "string", default: "127.0.0.1" },
      target: { type: "string", default: process.env.WS_BRIDGE_TARGET ?? "127.0.0.1:5432" },
    },
  });
  const target = parseHostPort(values.target);
  const bridge = await startWsTcpBridge({ port: Number(values.port), host: values.host, target });
  console.log(`ws-tcp-bridge: ${bridge.url} -> ${target.host}:${target.port} (use it as the Neon driver's wsProxy)`);
  const stop = () => void bridge.close().then(() => process.exit(0));
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}
