/**
 * The Mailer port on an SMTP relay, over a pool of nodemailer's SMTP connections. Node only:
 * SMTP needs raw TCP, which the edge does not have (there the HTTP providers serve).
 *
 *   createSmtpMailer("smtp://user:pass@smtp.example.com:587")    STARTTLS when offered
 *   createSmtpMailer("smtps://user:pass@smtp.example.com")       implicit TLS (port 465)
 *
 * Query parameters are nodemailer's connection options (`?maxConnections=10&maxMessages=100&
 * tls.rejectUnauthorized=false`). Replies are classified for the engine by RFC 5321's classes:
 * 4yz is transient (try again), 5yz permanent (the message was refused), except the
 * authentication codes, which say no message will pass until someone fixes the credentials.
 *
 * The pool is ours, not nodemailer's, for one reason: SMTP has no idempotency key, so whether a
 * message may go again after a crash depends on whether its terminating dot had left. The pool
 * owns each session's socket and tells the caller (HandoverHooks) the instant the dot is with the
 * kernel, so the send ledger can note it before the process could die in between.
 */
import { createHash } from "node:crypto";
import type { Socket } from "node:net";
import type { NodemailerError } from "nodemailer";
import MailComposer from "nodemailer/lib/mail-composer";
import { parseConnectionUrl } from "nodemailer/lib/shared";
import SMTPConnection from "nodemailer/lib/smtp-connection";
import { classifyBounce } from "../../shared/email/bounce-classifier";
import { type HandoverHooks, ProviderError, type Mailer, type OutgoingMessage, type SendResult } from "../../shared/email/mailer";
import { type DkimSigner, DkimSigningError } from "./dkim-signer";

const PROVIDER = "smtp";

export interface SmtpMailerOptions {
  /** Connections the pool keeps open at once (an email pool runs 50-100 sends). Defaults to 10. */
  maxConnections?: number;
  /** Messages one connection carries before it is closed and a fresh one opened. Defaults to 100. */
  maxMessages?: number;
  /** A send that takes longer is abandoned as `unavailable`. Defaults to 30 s. */
  timeoutMs?: number;
  /** An idle connection is closed after this long. Defaults to 10 s. */
  idleMs?: number;
  /** Signs each message with its tenant's DKIM key for its From domain, where it has one. Unset: nothing is signed. */
  dkim?: DkimSigner;
}

export interface SmtpMailer extends Mailer {
  /** Closes the pool's connections (at shutdown). */
  close(): Promise<void>;
}

/**
 * 530 authentication required, 534 mechanism too weak, 535 credentials invalid, 538 encryption
 * required for the mechanism: account or configuration problems, not this message's.
 */
const AUTH_CODES = new Set([530, 534, 535, 538]);
/** Errors without an SMTP reply that mean the relay could not be reached or the session broke. */
const CONNECTION_CODES = new Set(["ECONNECTION", "ETIMEDOUT", "ESOCKET", "EDNS", "ETLS", "EPROXY", "EMAXLIMIT", "EPROTOCOL", "ESTREAM"]);

type ConnectionOptions = ConstructorParameters<typeof SMTPConnection>[0] & { auth?: { user?: string; pass?: string } };

export function createSmtpMailer(url: string, opts: SmtpMailerOptions = {}): SmtpMailer {
  const parsed = parseConnectionUrl(url) as ConnectionOptions & { maxConnections?: unknown; maxMessages?: unknown };
  // The credentials are kept only to scrub them from error messages; they are never logged.
  const secrets = [parsed.auth?.user, parsed.auth?.pass].filter((s): s is string => typeof s === "string" && s.length > 0);
  const host = parsed.host ?? "localhost";
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const { maxConnections, maxMessages, auth, ...connection } = parsed;
  const pool = new SessionPool(
    {
      // nodemailer's defaults wait 2 minutes for a connection; a send must fail well within the
      // job's timeout so the retry (or another provider) gets its turn.
      connectionTimeout: 10_000,
      greetingTimeout: 10_000,
      socketTimeout: 30_000,
      ...connection,
      // Forced off whatever the URL says: nodemailer's logger would print the session to stdout.
      logger: false,
      debug: false,
    },
    auth?.user ? { user: auth.user, pass: auth.pass } : undefined,
    {
      size: Number(maxConnections ?? opts.maxConnections ?? 10) || 10,
      maxMessages: Number(maxMessages ?? opts.maxMessages ?? 100) || 100,
      idleMs: opts.idleMs ?? 10_000,
    },
  );

  return {
    name: PROVIDER,
    // One message per pooled connection at a time: the pool is the relay's concurrency.
    concurrency: pool.size,

    async send(message: OutgoingMessage, signal?: AbortSignal, hooks?: HandoverHooks): Promise<SendResult> {
      signal?.throwIfAborted();
      const timeout = AbortSignal.timeout(timeoutMs);
      const messageId = messageIdFor(message);
      try {
        const mail = new MailComposer({
          from: message.from,
          to: message.to,
          subject: message.subject,
          html: message.html,
          text: message.text,
          headers: message.headers,
          messageId,
        }).compile();
        const built = await mail.build();
        const raw = opts.dkim ? await opts.dkim.sign(message, built) : built;
        const session = await pool.acquire(signal ? AbortSignal.any([signal, timeout]) : timeout);
        try {
          await session.send(mail.getEnvelope() as SMTPConnection.Envelope, raw, { signal, timeout }, {
            handedOver: () => hooks?.handedOver(messageId),
            notTaken: () => hooks?.notTaken(),
          });
        } finally {
          pool.release(session);
        }
        return { providerMessageId: messageId };
      } catch (err) {
        // The caller's abort (job cancelled, shutdown) is theirs to see, not a relay failure.
        signal?.throwIfAborted();
        // Before the relay was spoken to, and not its fault (see DkimSigningError).
        if (err instanceof DkimSigningError) throw err;
        if (timeout.aborted) {
          throw new ProviderError(PROVIDER, "unavailable", `send to ${host} timed out after ${timeoutMs} ms`);
        }
        throw classify(err as NodemailerError, host, secrets);
      }
    },

    async close() {
      pool.close();
    },
  };
}

/** SMTP's end of message data (RFC 5321 4.1.1.4): what a relay takes as the whole message. */
const TERMINATOR = Buffer.from("\r\n.\r\n");

/** One open, authenticated SMTP session, carrying one message at a time. */
class Session {
  sent = 0;
  dead = false;
  idleTimer: NodeJS.Timeout | undefined;
  /** Set while a message is under way: called once its terminator is with the kernel. */
  private onTerminator: (() => void) | undefined;
  private tail = Buffer.alloc(0);

  constructor(readonly conn: SMTPConnection) {
    conn.on("error", () => void (this.dead = true));
    conn.on("end", () => void (this.dead = true));
  }

  /**
   * Watches what the session writes. nodemailer pipes the message through its dot-escaping
   * stream into this socket (the TLS one after STARTTLS) and ends it with CRLF.CRLF, which
   * cannot occur earlier in escaped data; the write's callback runs once those bytes are with
   * the kernel, and a kernel sends what it holds even when the process is killed right after.
   */
  watch(socket: Socket): void {
    const write = socket.write;
    const session = this;
    socket.write = function (this: Socket, chunk: unknown, ...rest: unknown[]): boolean {
      const notify = session.onTerminator;
      if (!notify || !(chunk instanceof Uint8Array)) return (write as (...a: unknown[]) => boolean).apply(this, [chunk, ...rest]);
      session.tail = Buffer.concat([session.tail, chunk.subarray(-TERMINATOR.length)]).subarray(-TERMINATOR.length);
      if (!session.tail.equals(TERMINATOR)) return (write as (...a: unknown[]) => boolean).apply(this, [chunk, ...rest]);
      session.onTerminator = undefined;
      const callback = rest.find((r): r is (err?: Error | null) => void => typeof r === "function");
      const encoding = rest.find((r) => typeof r === "string");
      return (write as (...a: unknown[]) => boolean).call(this, chunk, encoding, (err?: Error | null) => {
        if (!err) notify();
        callback?.(err);
      });
    } as Socket["write"];
  }

  /**
   * One message. After its terminator left, a refusal or a broken session is reported as
   * notTaken; the caller's own abort (shutdown, cancel) is not: the relay holds the whole
   * message and answers as if the process had died, which is what the ledger then assumes.
   */
  send(
    envelope: SMTPConnection.Envelope,
    raw: Buffer,
    signals: { signal?: AbortSignal; timeout: AbortSignal },
    hooks: { handedOver(): void; notTaken(): void },
  ): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let handedOver = false;
      let settled = false;
      const finish = (err?: unknown) => {
        if (settled) return;
        settled = true;
        this.onTerminator = undefined;
        this.tail = Buffer.alloc(0);
        signals.signal?.removeEventListener("abort", onAbort);
        signals.timeout.removeEventListener("abort", onTimeout);
        if (err !== undefined) {
          this.dead = true;
          this.conn.close();
          reject(err);
        } else resolve();
      };
      const onAbort = () => finish(signals.signal!.reason);
      const onTimeout = () => {
        if (handedOver) hooks.notTaken();
        finish(signals.timeout.reason);
      };
      signals.signal?.addEventListener("abort", onAbort, { once: true });
      signals.timeout.addEventListener("abort", onTimeout, { once: true });
      this.onTerminator = () => {
        handedOver = true;
        hooks.handedOver();
      };
      this.sent++;
      this.conn.send(envelope, raw, (err) => {
        if (settled) return;
        if (err && handedOver) hooks.notTaken();
        finish(err ?? undefined);
      });
    });
  }
}

/** Up to `size` sessions; a send takes an idle one, opens one, or waits its turn. */
class SessionPool {
  private readonly idle: Session[] = [];
  private readonly waiting: { resolve: (s: Session) => void; reject: (e: unknown) => void; signal: AbortSignal; onAbort: () => void }[] = [];
  private open = 0;
  private closed = false;
  readonly size: number;

  constructor(
    private readonly options: ConnectionOptions,
    private readonly auth: { user: string; pass?: string } | undefined,
    private readonly limits: { size: number; maxMessages: number; idleMs: number },
  ) {
    this.size = limits.size;
  }

  async acquire(signal: AbortSignal): Promise<Session> {
    signal.throwIfAborted();
    if (this.closed) throw Object.assign(new Error("the SMTP pool is closed"), { code: "ECONNECTION" });
    for (let s = this.idle.pop(); s; s = this.idle.pop()) {
      clearTimeout(s.idleTimer);
      if (!s.dead) return s;
      this.forget(s);
    }
    if (this.open < this.limits.size) {
      this.open++;
      try {
        const session = await this.connect(signal);
        session.conn.once("end", () => this.forget(session));
        return session;
      } catch (err) {
        this.open--;
        this.handOn();
        throw err;
      }
    }
    return new Promise<Session>((resolve, reject) => {
      const entry = { resolve, reject, signal, onAbort: () => {
        this.waiting.splice(this.waiting.indexOf(entry), 1);
        reject(signal.reason);
      } };
      signal.addEventListener("abort", entry.onAbort, { once: true });
      this.waiting.push(entry);
    });
  }

  /** Back into the pool after a send (or closed: dead, worn out, or the pool closing). */
  release(session: Session): void {
    if (session.dead || this.closed || session.sent >= this.limits.maxMessages) {
      if (!session.dead) session.conn.quit();
      session.dead = true;
      this.forget(session);
      return;
    }
    const next = this.waiting.shift();
    if (next) {
      next.signal.removeEventListener("abort", next.onAbort);
      next.resolve(session);
      return;
    }
    session.idleTimer = setTimeout(() => {
      this.idle.splice(this.idle.indexOf(session), 1);
      session.dead = true;
      session.conn.quit();
      this.forget(session);
    }, this.limits.idleMs);
    session.idleTimer.unref();
    this.idle.push(session);
  }

  close(): void {
    this.closed = true;
    for (const s of this.idle.splice(0)) {
      clearTimeout(s.idleTimer);
      s.dead = true;
      s.conn.quit();
    }
    for (const w of this.waiting.splice(0)) w.reject(Object.assign(new Error("the SMTP pool is closed"), { code: "ECONNECTION" }));
  }

  private forgotten = new WeakSet<Session>();
  private forget(session: Session): void {
    if (this.forgotten.has(session)) return;
    this.forgotten.add(session);
    this.open--;
    this.handOn();
  }

  /** A slot came free: the first waiter, if any, opens a session of its own. */
  private handOn(): void {
    const next = this.waiting.shift();
    if (!next) return;
    next.signal.removeEventListener("abort", next.onAbort);
    this.acquire(next.signal).then(next.resolve, next.reject);
  }

  private connect(signal: AbortSignal): Promise<Session> {
    return new Promise<Session>((resolve, reject) => {
      const conn = new SMTPConnection(this.options);
      const session = new Session(conn);
      const fail = (err: unknown) => {
        signal.removeEventListener("abort", onAbort);
        session.dead = true;
        conn.close();
        reject(err);
      };
      const onAbort = () => fail(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      conn.once("error", fail);
      conn.connect(() => {
        const ready = () => {
          conn.off("error", fail);
          signal.removeEventListener("abort", onAbort);
          // The socket as it is now, after any STARTTLS: the one the message data goes through.
          session.watch(conn._socket as Socket);
          resolve(session);
        };
        if (!this.auth) return ready();
        conn.login(this.auth, (err) => (err ? fail(err) : ready()));
      });
    });
  }
}

/**
 * The same Message-ID for every attempt at one message (a hash of its idempotency key), so a
 * duplicate that slips through after a crash is recognisable downstream: receiving servers and
 * clients that deduplicate by Message-ID drop it. The sender's domain keeps it globally unique
 * in the form RFC 5322 recommends.
 */
export function messageIdFor(message: Pick<OutgoingMessage, "from" | "idempotencyKey">): string {
  const hash = createHash("sha256").update(message.idempotencyKey).digest("hex").slice(0, 32);
  const domain = /@([^\s<>@]+?)>?\s*$/.exec(message.from)?.[1] ?? "penguinmails.invalid";
  return `<${hash}.pm@${domain}>`;
}

function classify(err: NodemailerError, host: string, secrets: readonly string[]): ProviderError {
  const code = err.responseCode;
  const what = err.command ? `${err.command} on ${host}` : `send to ${host}`;
  const detail = code ? `${code} ${(err.response ?? err.message).trim()}` : `${err.code ?? "error"}: ${err.message}`;
  const message = scrub(`${what} failed: ${detail}`, secrets);
  // The receiver's verdict on the recipient (its reply to RCPT TO or to the data; not 503, a
  // command out of sequence), classified as every bounce is (shared/email/bounce-classifier.ts).
  const aboutRecipient = code !== undefined && code !== 503 && (err.command === "RCPT TO" || err.command === "DATA");
  const bounce = aboutRecipient ? classifyBounce({ source: "smtp", reply: err.response ?? String(code), code }) : undefined;
  // A reply that refuses, or a session that never reached the message, proves the relay did not take it.
  const refused = { mayHaveLeft: false, bounce };
  if (code !== undefined) {
    if (AUTH_CODES.has(code)) return new ProviderError(PROVIDER, "auth", message);
    if (code >= 400 && code < 500) return new ProviderError(PROVIDER, "unavailable", message, undefined, refused);
    // 503 is a bad command sequence (the session, not the message): a new connection can pass.
    if (code === 503) return new ProviderError(PROVIDER, "unavailable", message, undefined, refused);
    if (code >= 500) return new ProviderError(PROVIDER, "rejected", message, undefined, { bounce });
  }
  if (err.code === "EAUTH" || err.code === "ENOAUTH" || err.code === "EOAUTH2") return new ProviderError(PROVIDER, "auth", message);
  // A message nodemailer cannot build or address (no recipients, a bad address) fails every time.
  if (err.code === "EENVELOPE" || err.code === "EMESSAGE" || err.code === "EMAXRECIPIENTS") {
    return new ProviderError(PROVIDER, "rejected", message);
  }
  if (err.code && CONNECTION_CODES.has(err.code)) {
    // Broken before the message was handed over (connecting, greeting, TLS), or during it: then unknown.
    const beforeMessage = err.code === "ECONNECTION" || err.code === "EDNS" || err.command === "CONN";
    return new ProviderError(PROVIDER, "unavailable", message, undefined, { mayHaveLeft: !beforeMessage });
  }
  // Unknown: retrying is the safe side (the Message-ID marks a duplicate).
  return new ProviderError(PROVIDER, "unavailable", message);
}

function scrub(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) out = out.split(s).join("***");
  return out;
}
