/**
 * Where the chaos suite's mail goes: sinks that count messages per recipient and keep the key of
 * every request, so a duplicate can be told apart from a replay.
 *
 * - Resend: the Resend-speaking mock (tools/resend-mock-server.ts, which honours
 *   Idempotency-Key like Resend) behind one small front server per worker slot. The front knows
 *   which worker sent a request (each slot's workers are given their own port) and can act right
 *   after the provider answered and before the worker hears the answer: the window between the
 *   provider's acceptance and the ledger's write, where a SIGKILL is most dangerous.
 * - SMTP: a real SMTP server (smtp-server), one port per slot, with a per-message delay before
 *   its 250 reply. SMTP cannot deduplicate, so it keeps each message's Message-ID (derived from
 *   the ledger key) to tell a repeat of one message from a second message.
 */
import { Agent, createServer, request as httpRequest, type Server } from "node:http";
import type { Socket } from "node:net";
import { SMTPServer } from "smtp-server";
import { startResendMock, type ResendMock } from "../resend-mock-server";

/** One accepted message, as the sink saw it. */
export interface Delivery {
  to: string;
  /** Resend: the request's Idempotency-Key; SMTP: the Message-ID. */
  key: string;
  /** The worker slot whose port it came through. */
  slot: string;
  at: number;
  batch: boolean;
}

/** Called after the provider accepted a request, before its sender gets the answer. */
export type AnsweredHook = (slot: string, accepted: number) => void | Promise<void>;

export interface MailSink {
  provider: "resend" | "smtp";
  /** The worker settings that send a slot's mail here. */
  envFor(slot: string): Record<string, string>;
  deliveries(): Delivery[];
  requests(): number;
  setLatency(ms: number): void;
  onAnswered(hook: AnsweredHook | undefined): void;
  close(): Promise<void>;
}

export const RESEND_KEY = "re_chaos_key";

/** The Resend mock behind one front server per slot. */
export async function startResendSink(slots: readonly string[], latencyMs: number): Promise<MailSink> {
  const mock: ResendMock = await startResendMock({ apiKey: RESEND_KEY });
  mock.inject({ latencyMs });
  const mockUrl = new URL(mock.url);
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  let hook: AnsweredHook | undefined;
  let requests = 0;
  /** Which slot's request each accepted email came in (by the ids in the mock's answers). */
  const slotOf = new Map<string, { slot: string; at: number }>();
  /** The ids of this answer's emails that were not seen before (a replay repeats old ids). */
  const attribute = (slot: string, body: string): number => {
    let ids: string[] = [];
    try {
      const parsed = JSON.parse(body) as { id?: string; data?: { id: string }[] };
      ids = parsed.id ? [parsed.id] : (parsed.data ?? []).map((d) => d.id);
    } catch {
      return 0;
    }
    let fresh = 0;
    for (const id of ids) {
      if (slotOf.has(id)) continue;
      slotOf.set(id, { slot, at: Date.now() });
      fresh++;
    }
    return fresh;
  };
  const servers: { slot: string; server: Server; port: number; sockets: Set<Socket> }[] = [];
  for (const slot of slots) {
    const sockets = new Set<Socket>();
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        requests++;
        const body = Buffer.concat(chunks);
        const headers = { ...req.headers, host: mockUrl.host };
        const upstream = httpRequest(
          { host: mockUrl.hostname, port: mockUrl.port, path: req.url, method: req.method, headers, agent },
          (answer) => {
            const parts: Buffer[] = [];
            answer.on("data", (c: Buffer) => parts.push(c));
            answer.on("end", () => {
              const accepted = (answer.statusCode ?? 0) < 300 ? attribute(slot, Buffer.concat(parts).toString("utf8")) : 0;
              const reply = () => {
                if (res.destroyed) return;
                res.writeHead(answer.statusCode ?? 502, answer.headers);
                res.end(Buffer.concat(parts));
              };
              if (hook && accepted > 0) {
                Promise.resolve(hook(slot, accepted)).then(reply, reply);
              } else reply();
            });
          },
        );
        upstream.on("error", () => res.destroy());
        upstream.end(body);
      });
    });
    server.on("connection", (s) => {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
    });
    server.keepAliveTimeout = 30_000;
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    servers.push({ slot, server, port: (server.address() as { port: number }).port, sockets });
  }
  return {
    provider: "resend",
    envFor(slot) {
      const s = servers.find((x) => x.slot === slot);
      if (!s) throw new Error(`no sink slot ${slot}`);
      return { RESEND_API_KEY: RESEND_KEY, RESEND_BASE_URL: `http://127.0.0.1:${s.port}`, MAIL_PROVIDERS: "resend" };
    },
    // The mock's own record is the truth (it also holds what a dead worker's request delivered).
    deliveries: () =>
      mock.delivered().map((d) => {
        const seen = slotOf.get(d.id);
        return { to: d.to[0]!.toLowerCase(), key: d.idempotencyKey ?? "", slot: seen?.slot ?? "?", at: seen?.at ?? 0, batch: d.batch };
      }),
    requests: () => requests,
    setLatency: (ms) => mock.inject({ latencyMs: ms }),
    onAnswered: (h) => void (hook = h),
    async close() {
      for (const s of servers) {
        const closed = new Promise<void>((r) => s.server.close(() => r()));
        for (const sock of s.sockets) sock.destroy();
        await closed;
      }
      agent.destroy();
      await mock.close();
    },
  };
}

/** A real SMTP server per slot, counting per recipient, with a delay before each 250. */
export async function startSmtpSink(slots: readonly string[], delayMs: number): Promise<MailSink> {
  const deliveries: Delivery[] = [];
  let delay = delayMs;
  let hook: AnsweredHook | undefined;
  let requests = 0;
  const servers: { slot: string; server: SMTPServer; port: number }[] = [];
  for (const slot of slots) {
    const server = new SMTPServer({
      authOptional: true,
      disabledCommands: ["STARTTLS", "AUTH"],
      disableReverseLookup: true,
      logger: false,
      // Far more connections than the workers' pools open (10 each): the sink is never the limit.
      maxClients: 1_000,
      closeTimeout: 100,
      onData(stream, session, callback) {
        let head = "";
        stream.on("data", (c: Buffer) => {
          // The headers are all we need; the body can be large.
          if (head.length < 8_192) head += c.toString("latin1");
        });
        stream.on("end", () => {
          requests++;
          const messageId = /^message-id:\s*(\S+)/im.exec(head)?.[1] ?? "";
          setTimeout(() => {
            const at = Date.now();
            const rcpts = session.envelope.rcptTo.map((r) => r.address.toLowerCase());
            for (const to of rcpts) deliveries.push({ to, key: messageId, slot, at, batch: false });
            // The 250 goes out now; the hook runs before the worker can have recorded it.
            callback();
            if (hook) void hook(slot, rcpts.length);
          }, delay);
        });
      },
    });
    server.on("error", () => {});
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    servers.push({ slot, server, port: (server.server.address() as { port: number }).port });
  }
  return {
    provider: "smtp",
    envFor(slot) {
      const s = servers.find((x) => x.slot === slot);
      if (!s) throw new Error(`no sink slot ${slot}`);
      return { SMTP_URL: `smtp://127.0.0.1:${s.port}`, MAIL_PROVIDERS: "smtp" };
    },
    deliveries: () => deliveries.slice(),
    requests: () => requests,
    setLatency: (ms) => void (delay = ms),
    onAnswered: (h) => void (hook = h),
    async close() {
      await Promise.all(servers.map((s) => new Promise<void>((r) => s.server.close(() => r()))));
    },
  };
}
