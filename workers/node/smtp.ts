/**
 * The Mailer port on an SMTP relay, through nodemailer's pooled transport. Node only: SMTP needs
 * raw TCP, which the edge does not have (there the HTTP providers serve).
 *
 *   createSmtpMailer("smtp://user:pass@smtp.example.com:587")    STARTTLS when offered
 *   createSmtpMailer("smtps://user:pass@smtp.example.com")       implicit TLS (port 465)
 *
 * Query parameters are nodemailer options (`?maxConnections=10&tls.rejectUnauthorized=false`).
 * Replies are classified for the engine by RFC 5321's classes: 4yz is transient (try again),
 * 5yz permanent (the message was refused), except the authentication codes, which say no
 * message will pass until someone fixes the credentials.
 */
import { createHash } from "node:crypto";
import nodemailer, { type NodemailerError } from "nodemailer";
import { parseConnectionUrl } from "nodemailer/lib/shared";
import { ProviderError, type Mailer, type OutgoingMessage, type SendResult } from "../../shared/email/mailer";

const PROVIDER = "smtp";

export interface SmtpMailerOptions {
  /** Connections the pool keeps open at once (an email pool runs 50-100 sends). Defaults to 10. */
  maxConnections?: number;
  /** A send that takes longer is abandoned as `unavailable`. Defaults to 30 s. */
  timeoutMs?: number;
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
const CONNECTION_CODES = new Set(["ECONNECTION", "ETIMEDOUT", "ESOCKET", "EDNS", "ETLS", "EPROXY", "EMAXLIMIT", "EPROTOCOL"]);

export function createSmtpMailer(url: string, opts: SmtpMailerOptions = {}): SmtpMailer {
  const parsed = parseConnectionUrl(url);
  // The credentials are kept only to scrub them from error messages; they are never logged.
  const secrets = [parsed.auth?.user, parsed.auth?.pass].filter((s): s is string => typeof s === "string" && s.length > 0);
  const host = parsed.host ?? "localhost";
  const timeoutMs = opts.timeoutMs ?? 30_000;

  const transport = nodemailer.createTransport({
    // nodemailer's defaults wait 2 minutes for a connection; a send must fail well within the
    // job's timeout so the retry (or another provider) gets its turn.
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 30_000,
    maxConnections: opts.maxConnections ?? 10,
    ...parsed,
    pool: true,
    // Forced off whatever the URL says: nodemailer's logger would print the session to stdout.
    logger: false,
    debug: false,
  });

  return {
    name: PROVIDER,
    // One message per pooled connection at a time: the pool is the relay's concurrency.
    concurrency: Number((parsed as { maxConnections?: unknown }).maxConnections ?? opts.maxConnections ?? 10) || 10,

    async send(message: OutgoingMessage, signal?: AbortSignal): Promise<SendResult> {
      signal?.throwIfAborted();
      const timeout = AbortSignal.timeout(timeoutMs);
      try {
        const info = await transport.sendMail({
          from: message.from,
          to: message.to,
          subject: message.subject,
          html: message.html,
          text: message.text,
          headers: message.headers,
          messageId: messageIdFor(message),
          signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
        });
        return { providerMessageId: info.messageId };
      } catch (err) {
        // The caller's abort (job cancelled, shutdown) is theirs to see, not a relay failure.
        signal?.throwIfAborted();
        if (timeout.aborted) {
          throw new ProviderError(PROVIDER, "unavailable", `send to ${host} timed out after ${timeoutMs} ms`);
        }
        throw classify(err as NodemailerError, host, secrets);
      }
    },

    async close() {
      transport.close();
    },
  };
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
  // A reply that refuses, or a session that never reached the message, proves the relay did not take it.
  const refused = { mayHaveLeft: false };
  if (code !== undefined) {
    if (AUTH_CODES.has(code)) return new ProviderError(PROVIDER, "auth", message);
    if (code >= 400 && code < 500) return new ProviderError(PROVIDER, "unavailable", message, undefined, refused);
    // 503 is a bad command sequence (the session, not the message): a new connection can pass.
    if (code === 503) return new ProviderError(PROVIDER, "unavailable", message, undefined, refused);
    if (code >= 500) return new ProviderError(PROVIDER, "rejected", message);
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
