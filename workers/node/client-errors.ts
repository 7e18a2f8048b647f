/**
 * Requests Node's HTTP parser refuses before the app sees them (headers over Node's 16 KiB
 * limit, a malformed request line, bytes HTTP does not allow) are answered as problems too, like
 * every other client mistake, instead of Node's bare "431" or "400" with no body.
 */
import type { Server } from "node:http";
import type { Socket } from "node:net";
import { problemOf, PROBLEM_CONTENT_TYPE } from "../../shared/api/problem";

const STATUS_BY_CODE: Record<string, [number, string]> = {
  HPE_HEADER_OVERFLOW: [431, "the request's headers (the URL included) exceed the server's limit of 16 KiB"],
  HPE_URI_TOO_LONG: [414, "the request's URL is too long"],
};

export function answerClientErrors(server: Pick<Server, "on">): void {
  server.on("clientError", (err: Error & { code?: string }, socket: Socket) => {
    // A reset or a closed socket has no one left to answer.
    if (err.code === "ECONNRESET" || !socket.writable) return void socket.destroy();
    const [status, detail] = STATUS_BY_CODE[err.code ?? ""] ?? [400, "the request is not valid HTTP/1.1"];
    const body = JSON.stringify(problemOf(status, detail));
    socket.end(
      `HTTP/1.1 ${status} ${status === 431 ? "Request Header Fields Too Large" : status === 414 ? "URI Too Long" : "Bad Request"}\r\n` +
        `content-type: ${PROBLEM_CONTENT_TYPE}\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  });
}
