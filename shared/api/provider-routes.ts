/**
 * Webhooks from mail providers: Resend reports bounces, complaints and deliveries (delivered,
 * delayed) to
 * POST /providers/resend/events. No API key (Resend has none of ours): every request must carry
 * a valid Standard Webhooks signature (Resend signs through Svix: svix-id, svix-timestamp,
 * svix-signature; the webhook-* names are accepted too) made with RESEND_WEBHOOK_SECRET, at most
 * 5 minutes old. Outside /v1 because everything under /v1 demands an API key before the body is
 * read; the unsubscribe and download links live outside it for the same reason.
 *
 * Answers: 200 once a report is recorded, already recorded (Resend retries), about a message we
 * never sent, or of a type we do not use; 401 unsigned or badly signed (nothing is recorded);
 * 400 a signed body that is not the JSON Resend sends (or not valid UTF-8), 422 one holding text
 * Postgres cannot store (NUL, lone surrogates). A 5xx only when we failed, so that
 * Resend retries.
 */
import { Hono } from "hono";
import { z } from "zod";
import { recordDeliveryEvent } from "../email/delivery-events";
import { recordDeliveryFeedback } from "../email/delivery-feedback";
import { readResendEvent } from "../email/providers/resend-events";
import type { Logger, SqlClient } from "../ports";
import type { Queue } from "../queue/queue";
import { verifySignature } from "../webhooks/signature";
import { readText, parseJsonText } from "./body";
import { describeRoute, json, jsonBody, problems, security } from "./openapi-route";
import { ApiError } from "./problem";

export interface ProviderRouteDeps {
  sql: SqlClient;
  queue: Queue;
  logger: Logger;
  /** The signing secret of the Resend webhook ("whsec_…"); without it the route answers 404. */
  resendWebhookSecret?: string;
}

/** Svix ids look like "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"; anything else is refused before it becomes a key. */
const MESSAGE_ID = /^[A-Za-z0-9_.:-]{1,100}$/;

/** What POST /providers/resend/events answers (shared/email/delivery-feedback.ts). */
const resendOutcomeSchema = z.object({
  status: z.enum(["recorded", "duplicate", "unknown_message", "ignored"]),
  type: z.string().optional().describe("The event type, when ignored"),
});

export function providerRoutes(deps: ProviderRouteDeps): Hono {
  const app = new Hono();

  app.post(
    "/resend/events",
    describeRoute(() => ({
      operationId: "resendEvents",
      tags: ["providers"],
      summary: "Resend's webhook (bounces, complaints, deliveries), verified by its Svix signature; no API key",
      security: security.none,
      // Read as Resend sends it (shared/email/providers/resend-events.ts), whatever its Content-Type.
      requestBody: jsonBody({ type: "object" }),
      responses: {
        200: json(resendOutcomeSchema, "Recorded, already recorded, about a message we did not send, or ignored (another event type)"),
        ...problems("Unauthorized", "NotFound", "PayloadTooLarge", "Unavailable"),
      },
    })),
    async (c) => {
      const secret = deps.resendWebhookSecret;
      // 404, not 503: without a secret this server does not take Resend's reports at all, and
      // nothing will change until an operator sets one; a 503 would only invite retries.
      if (!secret) throw new ApiError(404, "Resend webhooks are not enabled on this server (RESEND_WEBHOOK_SECRET is unset)");
      const header = (name: string) => c.req.header(`svix-${name}`) ?? c.req.header(`webhook-${name}`);
      const id = header("id");
      const timestamp = header("timestamp");
      const signature = header("signature");
      if (!id || !timestamp || !signature) {
        throw new ApiError(401, "the request is not signed: send the svix-id, svix-timestamp and svix-signature headers");
      }
      const body = await readText(c);
      const verdict = await verifySignature(secret, { id, timestamp, signature, body }, Math.floor(deps.queue.clock.now().getTime() / 1_000));
      if (!verdict.ok) {
        deps.logger.warn("Resend webhook refused: bad signature", { svix_id: id.slice(0, 100), reason: verdict.reason });
        throw new ApiError(401, `the signature does not verify: ${verdict.reason}`);
      }
      if (!MESSAGE_ID.test(id)) throw new ApiError(400, "the svix-id header is not a message id", [{ path: "svix-id", message: "1-100 letters, digits and _ . : -" }]);
      // Signed but unstorable (NUL, lone surrogates, absurd nesting) is still Resend's mistake: a 4xx, which it does not retry.
      const event = parseJsonText(body);
      const reading = readResendEvent(event);
      if (!reading.ok) throw new ApiError(400, "the body is not a Resend event", reading.errors);
      if (reading.delivery) return c.json({ status: (await recordDeliveryEvent(deps, { ...reading.delivery, reportId: id })).status });
      if (!reading.feedback) return c.json({ status: "ignored", type: reading.type });
      const outcome = await recordDeliveryFeedback(deps, { ...reading.feedback, reportId: id });
      return c.json({ status: outcome.status });
    },
  );

  return app;
}
