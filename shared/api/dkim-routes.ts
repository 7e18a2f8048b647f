/**
 * DKIM keys of a tenant's sending domains over HTTP, scoped to the caller's tenant (admin keys
 * name one with ?tenant_id=). Answers carry selectors, DNS records and status, never a private
 * key: those are sealed at birth and opened only by the SMTP signer (workers/node/dkim-signer.ts).
 */
import { type Context, Hono } from "hono";
import { z } from "zod";
import { DkimKeyCipher } from "../email/dkim-crypto";
import { DEFAULT_RETIRING_HOURS, DkimKeys } from "../email/dkim-keys";
import type { Clock, SqlClient } from "../ports";
import { type ApiEnv, tenantOf } from "./auth";
import { describeRoute, json, jsonBody, pathParam, problems, queryParameters } from "./openapi-route";
import { ApiError, zodFieldErrors } from "./problem";
import { parseBody, parseQuery } from "./request-input";
import { tenantQuerySchema } from "./schemas";

/**
 * A sending domain as DNS spells it: ASCII labels of letters, digits and inner hyphens, at least
 * two of them, 253 characters at most, no trailing dot; any case, kept in lower case.
 * Internationalised names go in their punycode form (xn--…), as they appear in DNS.
 */
const LABELS = /^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
export const sendingDomain = z
  .string()
  .min(3, "expected a domain name such as mail.example.com")
  .max(253, "a domain name has at most 253 characters")
  .transform((d) => d.toLowerCase())
  .refine((d) => /^[\x00-\x7f]*$/.test(d), { message: "use the domain's ASCII (punycode, xn--…) form", abort: true })
  .refine((d) => LABELS.test(d), "expected a domain name such as mail.example.com (labels of letters, digits and inner hyphens)");

export const dkimSchemas = {
  rotate: z.strictObject({
    /** How long the replaced key stays published (status retiring) so mail signed with it still verifies. */
    retiring_hours: z.number().int().min(0).max(30 * 24).default(DEFAULT_RETIRING_HOURS),
  }),
};

const isoTime = z.iso.datetime({ offset: true });

export const dkimKeySchema = z
  .object({
    domain: z.string(),
    selector: z.string().describe("The s= of signatures made with this key"),
    status: z.enum(["active", "retiring", "retired"]).describe("active: signs new mail; retiring: signs nothing, still verifies until retire_after; retired: its record may be removed"),
    created_at: isoTime,
    retire_after: isoTime.nullable().describe("Until when a replaced key stays published; null while active"),
    dns: z
      .object({ name: z.string().describe("<selector>._domainkey.<domain>"), type: z.literal("TXT"), value: z.string().describe("v=DKIM1; k=rsa; p=…") })
      .describe("The TXT record to publish while the key is active or retiring"),
  })
  .meta({ id: "DkimKey" });

export const dkimKeyListSchema = z.object({ domain: z.string(), keys: z.array(dkimKeySchema).describe("Newest first, the 100 newest") });
export const dkimRotationSchema = z.object({ active: dkimKeySchema.describe("The new key: publish its record"), retiring: dkimKeySchema.describe("The key it replaces") });

/** The tenant a request acts for (the key's own, or an admin's ?tenant_id=), once the query is checked. */
function tenant(c: Context<ApiEnv>): string {
  parseQuery(c, tenantQuerySchema);
  return tenantOf(c);
}

/** The :domain of the path, or a 422 naming it (a domain is the caller's input, not one of our ids). */
function domainOf(c: Context): string {
  const parsed = sendingDomain.safeParse(c.req.param("domain") ?? "");
  if (!parsed.success) throw new ApiError(422, "invalid domain", zodFieldErrors(parsed.error, ["domain"]));
  return parsed.data;
}

const tags = ["dkim"];
const ofDomain = [
  ...queryParameters(tenantQuerySchema),
  pathParam("domain", "The sending domain (the From address's), e.g. mail.example.com", { type: "string", minLength: 3, maxLength: 253 }),
];

export function dkimRoutes(sql: SqlClient, clock: Clock, encryptionKey: string | undefined): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  const keys = new DkimKeys(sql, clock, encryptionKey ? new DkimKeyCipher(encryptionKey) : undefined);

  app.post(
    "/domains/:domain/dkim",
    describeRoute(() => ({
      operationId: "createDkimKey",
      tags,
      summary: "Make the domain's DKIM key (RSA-2048): publish the answer's DNS record; SMTP mail from the domain is signed with it",
      parameters: ofDomain,
      responses: { 201: json(dkimKeySchema, "The key: its selector and DNS record"), ...problems("Conflict", "TooManyRequests") },
    })),
    async (c) => {
      const tenantId = tenant(c);
      return c.json(await keys.create(tenantId, domainOf(c)), 201);
    },
  );

  app.get(
    "/domains/:domain/dkim",
    describeRoute(() => ({
      operationId: "listDkimKeys",
      tags,
      summary: "The domain's DKIM keys with their DNS records and status (never a private key)",
      parameters: ofDomain,
      responses: { 200: json(dkimKeyListSchema, "The keys, newest first"), ...problems("NotFound") },
    })),
    async (c) => {
      const tenantId = tenant(c);
      const domain = domainOf(c);
      return c.json({ domain, keys: await keys.list(tenantId, domain) });
    },
  );

  app.post(
    "/domains/:domain/dkim/rotate",
    describeRoute(() => ({
      operationId: "rotateDkimKey",
      tags,
      summary: "A new active key under a new selector; the old one stays published (retiring) for retiring_hours, then is retired",
      parameters: ofDomain,
      requestBody: jsonBody(dkimSchemas.rotate, { required: false }),
      responses: {
        200: json(dkimRotationSchema, "The new key and the one it replaces"),
        ...problems("NotFound", "Conflict", "PayloadTooLarge", "UnsupportedMediaType", "TooManyRequests"),
      },
    })),
    async (c) => {
      const tenantId = tenant(c);
      const domain = domainOf(c);
      const req = await parseBody(c, dkimSchemas.rotate, { optional: true });
      return c.json(await keys.rotate(tenantId, domain, req.retiring_hours * 3_600_000));
    },
  );

  return app;
}
