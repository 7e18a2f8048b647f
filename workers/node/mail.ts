import type { Mailer } from "../../shared/email/mailer";
import { createOutboxMailer } from "../../shared/email/providers/outbox";
import { createResendMailer } from "../../shared/email/providers/resend";
import { createEmailServices } from "../../shared/email/services";
import { type Clock, type Logger, type Redis, silentLogger, type Sql } from "../../shared/ports";
import { type NodeConfig, publicUrlOf } from "./config";
import { createHandoverJournal } from "./handover-journal";
import { DkimKeys } from "../../shared/email/dkim-keys";
import { createDkimSigner } from "./dkim-signer";
import { createSmtpMailer, type SmtpMailer } from "./smtp";

/**
 * The Node runtime's mail setup: the providers the configuration names (Resend, an SMTP relay),
 * the outbox when none is configured (the embedded default: messages stored, readable in
 * outbox_messages), and the email services built on them.
 */
export function nodeEmailServices(
  config: NodeConfig,
  deps: { sql: Sql; redis?: Redis; clock: Clock; pepper: string; dkimEncryptionKey?: string; logger?: Logger },
) {
  const mailers: Mailer[] = [];
  let smtp: SmtpMailer | undefined;
  if (config.RESEND_API_KEY) mailers.push(createResendMailer({ apiKey: config.RESEND_API_KEY, baseUrl: config.RESEND_BASE_URL }));
  if (config.SMTP_URL) {
    // SMTP mail is signed with the tenant's key for its From domain where it has one; Resend signs its own.
    const dkim = createDkimSigner({ keys: new DkimKeys(deps.sql, deps.clock, undefined), encryptionKey: deps.dkimEncryptionKey, clock: deps.clock });
    mailers.push((smtp = createSmtpMailer(config.SMTP_URL, { dkim })));
  }
  const outbox = createOutboxMailer(deps.sql);
  const wanted = config.MAIL_PROVIDERS ?? (mailers.length > 0 ? mailers.map((m) => m.name) : ["outbox"]);
  if (wanted.includes("outbox")) mailers.push(outbox);
  for (const name of wanted) {
    if (!mailers.some((m) => m.name === name)) {
      throw new Error(`MAIL_PROVIDERS names ${name}, but it is not configured (${name === "resend" ? "RESEND_API_KEY" : "SMTP_URL"} is unset)`);
    }
  }
  const services = createEmailServices({
    sql: deps.sql,
    redis: deps.redis,
    redisPrefix: config.REDIS_PREFIX,
    clock: deps.clock,
    mailers: mailers.filter((m) => wanted.includes(m.name)),
    providerOrder: wanted,
    defaultFrom: config.MAIL_FROM,
    publicUrl: publicUrlOf(config),
    // UnsubscribeLinks derives its own HMAC key from it ("unsubscribe:" + secret), the same on the edge.
    unsubscribeSecret: config.UNSUBSCRIBE_SECRET ?? deps.pepper,
    providerPerSecond: config.MAIL_RATE_PER_SECOND,
    tenantPerSecond: config.TENANT_MAIL_RATE_PER_SECOND,
  });
  // SMTP has no idempotency key: the ledger notes each message's handover to the relay on a
  // connection of its own (see handover-journal.ts). Only where sends run, on a real Postgres.
  const handover =
    smtp && wanted.includes("smtp") && config.DATABASE_URL && config.ROLE !== "api"
      ? createHandoverJournal(config.DATABASE_URL, {
          applicationName: `penguinmails-jobs:${config.ROLE}:handover`,
          logger: deps.logger ?? silentLogger,
          fallback: deps.sql,
        })
      : undefined;
  return {
    ...services,
    send: { ...services.send, handover },
    close: async () => {
      await smtp?.close();
      await handover?.close();
    },
  };
}
