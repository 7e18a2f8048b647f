/**
 * POST /v1/bounces/dsn: an RFC 3464 delivery status notification, as an inbound MTA posts it
 * (the whole DSN message as message/rfc822, or its multipart/report body), for mail this
 * platform sent over SMTP. The report is matched to its send by the Message-ID of the returned
 * message (the SMTP mailer derives it from the send's key, workers/node/smtp.ts messageIdFor)
 * or its Original-Envelope-Id, and each recipient block goes through the same classifier
 * (bounce-classifier.ts) and the same recording and suppression (delivery-feedback.ts) as a
 * Resend webhook or a relay's synchronous refusal.
 *
 * A tenant key reaches its own sends only: another tenant's Message-ID is unknown to it, and
 * nothing is recorded. What it reports suppresses the address in its own list, not for every
 * tenant: one tenant's word must not stop mail from all the others (an admin key's report,
 * from the platform's own bounce mailbox, suppresses globally, as the provider paths do).
 *
 * Idempotent: a block is recorded once by a digest of message, recipient, action and status,
 * so a report posted twice records nothing the second time. Only blocks about the send's own
 * recipient count (Final- or Original-Recipient): a block about another address (a list the
 * message was expanded to) says nothing about the address we sent to.
 */
import { Hono } from "hono";
import { z } from "zod";
import { type BounceClassification, classifyBounce } from "../email/bounce-classifier";
import { recordDeliveryFeedback } from "../email/delivery-feedback";
import { type DsnRecipient, readDsn } from "../email/dsn-report";
import type { Logger, SqlClient } from "../ports";
import type { Queue } from "../queue/queue";
import { type ApiEnv } from "./auth";
import { describeRoute, json, problems, queryParameters } from "./openapi-route";
import { ApiError } from "./problem";
import { parseQuery } from "./request-input";
import { tenantQuerySchema } from "./schemas";
import { textProblem } from "./text-rule";

export interface BounceRouteDeps {
  sql: SqlClient;
  queue: Queue;
  logger: Logger;
}

/** The sends' provider whose Message-IDs a DSN returns: mail that went over SMTP. */
const SMTP_PROVIDER = "smtp";

const outcomeSchema = z.enum(["recorded", "duplicate", "unknown_message", "not_a_failure", "other_recipient"]);

/** What POST /v1/bounces/dsn answers: each recipient block, its verdict and what became of it. */
export const dsnResultSchema = z
  .object({
    message_ids: z.array(z.string()).describe("What the report names the original message by (returned Message-ID, Original-Envelope-Id)"),
    recorded: z.number().int().describe("Blocks recorded by this request"),
    recipients: z.array(
      z.object({
        recipient: z.string().describe("Final-Recipient"),
        action: z.string(),
        status: z.string().describe("The RFC 3463 status"),
        category: z.enum(["delivered", "deferral", "hard_bounce", "soft_bounce", "policy", "undeliverable", "complaint"]),
        suppress: z.boolean(),
        retry: z.boolean(),
        reason: z.string(),
        outcome: outcomeSchema.describe(
          "recorded; duplicate (recorded before); unknown_message (no send of this key's tenant has that Message-ID); not_a_failure (delivered, relayed, expanded, delayed: nothing to record); other_recipient (not the address the message was sent to)",
        ),
        send_id: z.string().nullable(),
      }),
    ),
  })
  .meta({ id: "DsnResult" });

type Outcome = z.infer<typeof outcomeSchema>;

/** Message-IDs are stored in angle brackets (<hash.pm@domain>); reports give them with or without. */
const idForms = (id: string): string[] => {
  const bare = id.replace(/^<(.*)>$/, "$1").trim();
  return [`<${bare}>`, bare];
};

async function digest(parts: string[]): Promise<string> {
  const bytes = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(parts.join("\n")));
  return Array.from(new Uint8Array(bytes).slice(0, 16), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Lenient: a DSN may return an original message in any charset; only its ASCII fields are read. */
const latinSafe = new TextDecoder("utf-8");

export function bounceRoutes(deps: BounceRouteDeps): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();

  app.post(
    "/bounces/dsn",
    describeRoute(() => ({
      operationId: "postDsn",
      tags: ["suppressions"],
      summary: "Record an RFC 3464 delivery status notification (bounce report) for mail sent over SMTP",
      description:
        "The body is the DSN as an inbound MTA received it: `message/rfc822` (the whole message) or `multipart/report` (its body, the boundary in Content-Type), up to the body limit. Each failed recipient is classified as SMTP replies and Resend bounces are, and recorded once: a hard bounce suppresses the address (in the tenant's own list for a tenant key, for every tenant for an admin key), marks the contact and publishes email.bounced. A tenant key reaches its own sends only.",
      parameters: queryParameters(tenantQuerySchema),
      requestBody: {
        required: true,
        content: {
          "message/rfc822": { schema: { type: "string" } },
          "multipart/report": { schema: { type: "string" } },
        },
      },
      responses: {
        202: json(dsnResultSchema, "Read; what each recipient block was and whether it was recorded"),
        ...problems("PayloadTooLarge", "UnsupportedMediaType", "ValidationFailed"),
      },
    })),
    async (c) => {
      const query = parseQuery(c, tenantQuerySchema);
      const principal = c.get("principal");
      // A tenant key: its own sends. An admin key: any tenant's, or the one it names.
      const tenantId = principal.tenantId ?? query.tenant_id;
      const text = latinSafe.decode(await c.req.arrayBuffer());
      const reading = readDsn(c.req.header("content-type"), text);
      if (!reading.ok) throw new ApiError(reading.status, reading.detail, reading.errors);
      const { report } = reading;
      for (const [i, r] of report.recipients.entries()) {
        for (const [field, value] of [["final-recipient", r.finalRecipient], ["diagnostic-code", r.diagnosticCode ?? ""]] as const) {
          const why = textProblem(value, 2_000);
          if (why) throw new ApiError(422, "the report holds text that cannot be stored", [{ path: `recipients.${i}.${field}`, message: why }]);
        }
      }

      const send = await findSend(deps.sql, report.messageIds, tenantId);
      const recipients = [];
      let recorded = 0;
      for (const r of report.recipients) {
        const classification = classifyBounce({ source: "dsn", action: r.action, status: r.status, diagnosticCode: r.diagnosticCode });
        const { outcome, sendId } = await record(deps, { report, r, classification, send, tenantScoped: principal.tenantId !== null });
        if (outcome === "recorded") recorded++;
        recipients.push({
          recipient: r.finalRecipient,
          action: r.action,
          status: r.status,
          category: classification.category,
          suppress: classification.suppress,
          retry: classification.retry,
          reason: classification.reason,
          outcome,
          send_id: sendId,
        });
      }
      deps.logger.info("DSN read", { tenant_id: tenantId ?? null, blocks: recipients.length, recorded, known: send !== undefined });
      return c.json({ message_ids: report.messageIds, recorded, recipients }, 202);
    },
  );

  return app;
}

interface SendRef {
  id: string;
  tenant_id: string;
  recipient: string;
  provider_message_id: string;
}

/** The SMTP send a report's ids name, within the tenant when one is given. */
async function findSend(sql: SqlClient, ids: readonly string[], tenantId: string | undefined): Promise<SendRef | undefined> {
  const forms = ids.flatMap(idForms);
  const [row] = await sql.query<SendRef>(
    `select id::text, tenant_id, recipient, provider_message_id from email_sends
     where provider_message_id = any($1::text[]) and provider = $2 and ($3::text is null or tenant_id = $3) order by id limit 1`,
    [forms, SMTP_PROVIDER, tenantId ?? null],
  );
  return row;
}

async function record(
  deps: BounceRouteDeps,
  o: { report: { messageIds: string[] }; r: DsnRecipient; classification: BounceClassification; send: SendRef | undefined; tenantScoped: boolean },
): Promise<{ outcome: Outcome; sendId: string | null }> {
  const { r, classification, send } = o;
  if (!send) return { outcome: "unknown_message", sendId: null };
  // Delivered, relayed, expanded: nothing went wrong. Delayed: the reporting MTA still tries.
  if (classification.category === "delivered" || classification.retry) return { outcome: "not_a_failure", sendId: send.id };
  const ours = [r.finalRecipient, r.originalRecipient].some((a) => a?.toLowerCase() === send.recipient.toLowerCase());
  if (!ours) return { outcome: "other_recipient", sendId: send.id };
  const reportId = `dsn_${await digest([send.provider_message_id, r.finalRecipient.toLowerCase(), r.action, r.status])}`;
  const outcome = await recordDeliveryFeedback(deps, {
    provider: SMTP_PROVIDER,
    reportId,
    send: { sendId: send.id, tenantId: send.tenant_id },
    classification,
    suppressFor: o.tenantScoped ? "tenant" : "global",
    detail: { final_recipient: r.finalRecipient, action: r.action, status: r.status, diagnostic_code: r.diagnosticCode, remote_mta: r.remoteMta },
  });
  return { outcome: outcome.status, sendId: send.id };
}
