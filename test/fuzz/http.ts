/**
 * A raw HTTP/1.1 client for the fuzz suite. fetch (undici) refuses or normalises exactly the
 * inputs we want to send (invalid UTF-8 in the request target, raw bytes in a header value,
 * a Content-Length that fetch would compute itself), so requests are written byte for byte
 * on a socket to 127.0.0.1 and the answer is parsed here. One connection a request
 * (`connection: close`): no state carries from one request to the next.
 */
import { connect } from "node:net";

export interface RawRequest {
  method: string;
  /** The request target exactly as sent: path and query, already percent-encoded (or not). */
  target: string;
  /** Header name and value pairs; values are written as latin1 bytes (so 0x80-0xff go through raw). */
  headers: [string, string][];
  body?: Uint8Array;
}

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  /** The whole answer as received (status line, headers, body), for secret scanning. */
  raw: Buffer;
}

const CRLF = Buffer.from("\r\n");

function decodeChunked(data: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  while (at < data.length) {
    const lineEnd = data.indexOf(CRLF, at);
    if (lineEnd < 0) break;
    const size = Number.parseInt(data.subarray(at, lineEnd).toString("latin1").split(";")[0]!.trim(), 16);
    if (!Number.isFinite(size) || size === 0) break;
    parts.push(data.subarray(lineEnd + 2, lineEnd + 2 + size));
    at = lineEnd + 2 + size + 2;
  }
  return Buffer.concat(parts);
}

function parseResponse(raw: Buffer): RawResponse {
  const headEnd = raw.indexOf("\r\n\r\n");
  if (headEnd < 0) throw new Error(`incomplete HTTP response (${raw.length} bytes): ${raw.subarray(0, 200).toString("latin1")}`);
  const [statusLine, ...lines] = raw.subarray(0, headEnd).toString("latin1").split("\r\n");
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? "")?.[1]);
  if (!Number.isInteger(status)) throw new Error(`bad status line: ${statusLine}`);
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  let body = raw.subarray(headEnd + 4);
  if (headers["transfer-encoding"]?.toLowerCase().includes("chunked")) body = decodeChunked(body);
  else if (headers["content-length"] !== undefined) body = body.subarray(0, Number(headers["content-length"]));
  return { status, headers, body: Buffer.from(body), raw };
}

/** Sends one request to 127.0.0.1:port and resolves with the whole answer (or rejects after timeoutMs). */
export function sendRaw(port: number, req: RawRequest, timeoutMs = 30_000): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on("connect", () => {
      const head: string[] = [`${req.method} ${req.target} HTTP/1.1`, `host: 127.0.0.1:${port}`, "connection: close"];
      for (const [name, value] of req.headers) head.push(`${name}: ${value}`);
      if (req.body !== undefined && !req.headers.some(([n]) => n.toLowerCase() === "content-length" || n.toLowerCase() === "transfer-encoding")) {
        head.push(`content-length: ${req.body.byteLength}`);
      }
      socket.write(Buffer.concat([Buffer.from(`${head.join("\r\n")}\r\n\r\n`, "latin1"), req.body ? Buffer.from(req.body) : Buffer.alloc(0)]));
    });
    socket.on("data", (chunk: Buffer) => {
      chunks.push(chunk);
      // An event stream (GET /v1/jobs/:id/events) stays open while its job waits: its answer is
      // the head and the first event, which the checks read like any body.
      const raw = Buffer.concat(chunks);
      const headEnd = raw.indexOf("\r\n\r\n");
      if (headEnd < 0 || !/\r\ncontent-type:\s*text\/event-stream/i.test(raw.subarray(0, headEnd).toString("latin1"))) return;
      if (raw.indexOf("\n\n", headEnd + 4) < 0) return;
      clearTimeout(timer);
      socket.destroy();
      resolve(parseResponse(raw));
    });
    socket.on("error", (err) => {
      clearTimeout(timer);
      // A server that answered and then reset the connection still answered.
      const raw = Buffer.concat(chunks);
      if (raw.indexOf("\r\n\r\n") >= 0) {
        try {
          return resolve(parseResponse(raw));
        } catch {
          // fall through to the error
        }
      }
      reject(err);
    });
    socket.on("end", () => {
      clearTimeout(timer);
      try {
        resolve(parseResponse(Buffer.concat(chunks)));
      } catch (err) {
        reject(err);
      }
    });
  });
}

/** Builds a RawRequest for a JSON call (the seeding and the checks use it; the fuzz builds its own). */
export function jsonRequest(method: string, target: string, key: string | undefined, body?: unknown): RawRequest {
  const headers: [string, string][] = [];
  if (key) headers.push(["authorization", `Bearer ${key}`]);
  if (body !== undefined) headers.push(["content-type", "application/json"]);
  return { method, target, headers, body: body === undefined ? undefined : Buffer.from(JSON.stringify(body), "utf8") };
}
