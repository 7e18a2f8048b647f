/**
 * The Mailer port: how the email pipeline hands a rendered message to a provider (Resend, an
 * SMTP relay, or the embedded outbox). Providers classify their failures so the engine knows
 * whether to retry, wait, fail over or give up.
 */
import type { BounceClassification } from "./bounce-classifier";

export interface OutgoingMessage {
  tenantId: string;
  from: string;
  to: string;
  subject: string;
  html: string;
  text: string;
  /** Extra headers, e.g. List-Unsubscribe and List-Unsubscribe-Post (RFC 8058). */
  headers?: Record<string, string>;
  /**
   * Stable for one message across every retry: the provider's deduplication key (Resend's
   * Idempotency-Key), so a run repeated after a crash does not send twice.
   */
  idempotencyKey: string;
  tags?: Record<string, string>;
}

export interface SendResult {
  providerMessageId: string;
}

export type ProviderFailure =
  /** 429: wait (retryAfterMs when the provider said) and try again. */
  | "rate_limited"
  /** 5xx, timeouts, connection errors: try again later, or another provider. */
  | "unavailable"
  /** The message or address was refused (4xx validation): sending it again cannot help. */
  | "rejected"
  /** Credentials or account problem: no message will go through until someone fixes it. */
  | "auth";

export class ProviderError extends Error {
  override name = "ProviderError";
  /**
   * Whether the provider may have taken the message although the call failed: no answer came
   * (a timeout, a dropped connection). Then the message must go again only the way it went, to
   * the same provider under the same key, never to another provider. An answer that refuses
   * (a 4xx, a 5xx, a 4yz SMTP reply) or a connection that never opened proves it was not taken.
   * Defaults to true for "unavailable" (the safe side) and false otherwise.
   */
  readonly mayHaveLeft: boolean;
  /**
   * The receiving side's verdict on this recipient, when the failure is its reply about it (an
   * SMTP relay's answer to RCPT TO or to the message data): a hard bounce suppresses the address
   * the way a bounce report does, a deferral is retried. Absent for failures that say nothing
   * about the address (credentials, connections, the sender refused at MAIL FROM).
   */
  readonly bounce?: BounceClassification;
  constructor(
    readonly provider: string,
    readonly failure: ProviderFailure,
    message: string,
    readonly retryAfterMs?: number,
    options?: { cause?: unknown; mayHaveLeft?: boolean; bounce?: BounceClassification },
  ) {
    super(message, options);
    this.mayHaveLeft = options?.mayHaveLeft ?? failure === "unavailable";
    if (options?.bounce) this.bounce = options.bounce;
  }

  get retryable(): boolean {
    return this.failure === "rate_limited" || this.failure === "unavailable";
  }
}

/**
 * The instants that decide whether a message may be delivered twice or not at all after a crash,
 * for a provider without an idempotency key (SMTP). Called synchronously, at the instant itself:
 * what they write must be on its way to the database before the process can die in between.
 */
export interface HandoverHooks {
  /**
   * The message's last byte (SMTP's terminating dot) is with the operating system, on its way to
   * a relay that from then on holds the whole message. `providerMessageId` is the id it goes under.
   */
  handedOver(providerMessageId: string): void;
  /** After handedOver: the relay refused it, or the session broke before it answered. */
  notTaken(): void;
}

export interface Mailer {
  readonly name: string;
  /** `hooks` are called by providers that can tell when a message was handed over (SMTP). */
  send(message: OutgoingMessage, signal?: AbortSignal, hooks?: HandoverHooks): Promise<SendResult>;
  /**
   * Sends several messages in one call where the provider has a batch endpoint (Resend: 100 a
   * call). Results come back in input order; a failed call rejects as a whole with ProviderError.
   */
  sendBatch?(messages: readonly OutgoingMessage[], signal?: AbortSignal): Promise<SendResult[]>;
  /** Most messages one sendBatch call takes. */
  readonly maxBatch?: number;
  /** Single sends it takes at once (an SMTP pool's connections). Defaults to 8. */
  readonly concurrency?: number;
}
