/**
 * The sending guards over HTTP (shared/email/sending-guards.ts):
 *   GET  /v1/sending/guards        a tenant key: its own guard (rates counted now, thresholds, state);
 *                                  an admin key: one tenant's with ?tenant_id=, else every guard not clear
 *   POST /v1/sending/guards/reset  admin, ?tenant_id=: the guard is clear and counts from now
 */
import { Hono } from "hono";
import { z } from "zod";
import type { SendingGuards } from "../email/sending-guards";
import { type ApiEnv, assertAdmin, tenantOf } from "./auth";
import { describeRoute, json, problems, queryParameters } from "./openapi-route";
import { parseQuery } from "./request-input";
import { tenantQuerySchema } from "./schemas";

const time = z.iso.datetime({ offset: true });
const reason = z.enum(["complaint_rate", "hard_bounce_rate"]);

export const sendingGuardSchema = z
  .object({
    tenant_id: z.string(),
    state: z.enum(["clear", "tripped", "acknowledged"]).describe(
      "tripped: its campaigns are paused, and any it starts are paused too, until it resumes one (its acknowledgement); " +
        "acknowledged: the rates count from the acknowledgement; clear: neither",
    ),
    domain: z.string().nullable().describe("The domain of the tenant's From address (settings.from_email, else MAIL_FROM)"),
    window: z.object({
      hours: z.number(),
      from: time,
      to: time,
      counted_from: time.describe("The later of the window's start and the last acknowledgement or reset: where the counts start"),
    }),
    sent: z.number().int().describe("Messages sent from counted_from to now"),
    hard_bounces: z.number().int(),
    complaints: z.number().int(),
    hard_bounce_rate: z.number().describe("hard_bounces / sent (0 with nothing sent)"),
    complaint_rate: z.number().describe("complaints / sent (0 with nothing sent)"),
    thresholds: z.object({
      complaint_rate: z.number().describe("Above this the guard trips (tenants.settings.sending_guards.complaint_rate, else the platform's)"),
      hard_bounce_rate: z.number(),
      min_volume: z.number().int().describe("Fewer messages sent than this never trip the guard"),
    }),
    over: z.array(reason).describe("The thresholds the rates are above now (empty under min_volume)"),
    trips: z.number().int().describe("How many times the guard tripped"),
    tripped_at: time.nullable(),
    acknowledged_at: time.nullable(),
    last_trip: z.record(z.string(), z.unknown()).nullable().describe("The last trip as its sending.paused event told it"),
    settings_problem: z.string().nullable().describe("Why tenants.settings.sending_guards is not used, when it does not fit"),
  })
  .meta({ id: "SendingGuard" });

export const sendingGuardListSchema = z.object({ guards: z.array(sendingGuardSchema) });

const tags = ["sending"];

export function sendingGuardRoutes(guards: SendingGuards): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();

  app.get(
    "/sending/guards",
    describeRoute(() => ({
      operationId: "listSendingGuards",
      tags,
      summary: "Sending guards: the tenant's bounce and complaint rates, thresholds and state (admin: every guard not clear, or ?tenant_id=)",
      parameters: queryParameters(tenantQuerySchema),
      responses: { 200: json(sendingGuardListSchema, "The guards") },
    })),
    async (c) => {
      const query = parseQuery(c, tenantQuerySchema);
      const principal = c.get("principal");
      if (!principal.tenantId && query.tenant_id === undefined) return c.json({ guards: await guards.list() });
      return c.json({ guards: [await guards.view(tenantOf(c))] });
    },
  );

  app.post(
    "/sending/guards/reset",
    describeRoute(() => ({
      operationId: "resetSendingGuard",
      tags,
      summary: "Reset a tenant's guard (admin, ?tenant_id=): clear, its rates counted from now",
      parameters: queryParameters(tenantQuerySchema),
      responses: { 200: json(sendingGuardSchema, "The guard after the reset"), ...problems("Forbidden") },
    })),
    async (c) => {
      assertAdmin(c.get("principal"));
      parseQuery(c, tenantQuerySchema);
      return c.json(await guards.reset(tenantOf(c)));
    },
  );

  return app;
}
