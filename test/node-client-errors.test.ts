/**
 * What Node's HTTP parser refuses before the app sees it is answered as a problem too: a URL
 * past the 16 KiB header limit (found by the fuzz suite: a bare 431 with no body) and a request
 * line that is not HTTP.
 */
import { connect } from "node:net";
import type { AddressInfo } from "node:net";
import type { Server } from "node:http";
import { serve, type ServerType } from "@hono/node-server";
import { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { answerClientErrors } from "../workers/node/client-errors";

describe("requests Node refuses before the app", () => {
  let server: ServerType;
  let port: number;
  beforeAll(async () => {
    const app = new Hono().get("*", (c) => c.text("ok"));
    await new Promise<void>((ready) => {
      server = serve({ fetch: app.fetch, hostname: "127.0.0.1", port: 0 }, () => ready());
    });
    answerClientErrors(server as unknown as Server);
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  /** Sends raw bytes and reads the whole answer (the server closes the connection). */
  const raw = (request: string) =>
    new Promise<string>((resolve, reject) => {
      const socket = connect(port, "127.0.0.1", () => socket.write(request));
      let out = "";
      socket.on("data", (d) => (out += d.toString()));
      socket.on("end", () => resolve(out));
      socket.on("error", reject);
    });

  const parse = (answer: string) => {
    const [head, body] = answer.split("\r\n\r\n");
    return { status: Number(head!.split(" ")[1]), head: head!.toLowerCase(), body: JSON.parse(body!) };
  };

  it("a 20 KB URL: 431 problem+json", async () => {
    const res = parse(await raw(`GET /v1/campaigns/${"9".repeat(20_000)} HTTP/1.1\r\nhost: x\r\n\r\n`));
    expect(res.status).toBe(431);
    expect(res.head).toContain("content-type: application/problem+json");
    expect(res.body).toMatchObject({ status: 431, title: expect.any(String), detail: expect.stringContaining("16 KiB") });
  });

  it("a request line that is not HTTP: 400 problem+json", async () => {
    const res = parse(await raw("NOT HTTP AT ALL\r\n\r\n"));
    expect(res.status).toBe(400);
    expect(res.head).toContain("content-type: application/problem+json");
    expect(res.body).toMatchObject({ status: 400, type: expect.stringContaining("urn:penguinmails:problem:") });
  });

  it("an ordinary request still reaches the app", async () => {
    expect(await raw("GET /x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")).toMatch(/^HTTP\/1\.1 200/);
  });
});
