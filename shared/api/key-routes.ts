/**
 * API keys over HTTP, for operators (admin keys only), so keys are made and revoked while the
 * server runs (on the embedded default `npm run keys` cannot open the database then):
 *   POST   /v1/keys                   { tenant_id, name? } or { admin: true, name? }: the key, once
 *   GET    /v1/keys[?tenant_id=]      every key, revoked ones too: never a secret or a hash
 *   GET    /v1/keys/:id               one key
 *   DELETE /v1/keys/:id               revoke (also POST /v1/keys/:id/revoke)
 * Revocation goes through the app's own ApiKeys, so this process stops accepting the key at
 * once; other Node processes within their verification cache (5 s), the edge at once.
 */
import { type Context, Hono } from "hono";
import { z } from "zod";
import { tenantId } from "../jobs/fields";
import { type ApiKeyInfo, type ApiKeys, STATIC_ADMIN_KEY_ID } from "./api-keys";
import { type ApiEnv, assertAdmin } from "./auth";
import { describeRoute, json, jsonBody, pathParam, problems, queryParameters, type RouteDeclaration } from "./openapi-route";
import { ApiError } from "./problem";
import { parseBody, parseParam, parseQuery } from "./request-input";

export const keyCreateSchema = z
  .strictObject({
    tenant_id: tenantId.optional().describe("The tenant a tenant key acts for (give this or admin: true)"),
    admin: z.boolean().optional().describe("true: an admin key, which belongs to no tenant"),
    name: z.string().trim().min(1).max(200).optional().describe("A label for people; defaults to \"admin\" or \"<tenant> key\""),
  })
  .superRefine((v, ctx) => {
    if (v.admin === true && v.tenant_id !== undefined) {
      ctx.addIssue({ code: "custom", path: ["tenant_id"], message: "an admin key belongs to no tenant: give admin: true or tenant_id, not both" });
    } else if (v.admin !== true && v.tenant_id === undefined) {
      ctx.addIssue({ code: "custom", path: ["tenant_id"], message: "give tenant_id for a tenant key, or admin: true for an admin key" });
    }
  });

export const keyListQuerySchema = z.strictObject({
  tenant_id: tenantId.optional().describe("Only this tenant's keys"),
});

/** A key as the API shows it: never its secret, never its hash. */
export const keyViewSchema = z.object({
  id: z.string().describe("The public part of the key (pmk_<id>_…)"),
  tenant_id: z.string().nullable().describe("null for admin keys"),
  admin: z.boolean(),
  name: z.string(),
  created_at: z.string(),
  revoked_at: z.string().nullable(),
}).meta({ id: "ApiKey" });

export const createdKeySchema = keyViewSchema.extend({
  key: z.string().describe("The bearer key. Shown only in this answer: only its hash is kept"),
});

export const keyListSchema = z.object({ keys: z.array(keyViewSchema).describe("Oldest first") });

export const keyView = (k: ApiKeyInfo): z.infer<typeof keyViewSchema> => ({
  id: k.id,
  tenant_id: k.tenantId,
  admin: k.admin,
  name: k.name,
  created_at: k.createdAt.toISOString(),
  revoked_at: k.revokedAt?.toISOString() ?? null,
});

const keyIdSchema = z.string().regex(/^[A-Za-z0-9]{12}$/);

const tags = ["keys"];
const keyIdParam = pathParam("id", "The key's id (pmk_<id>_…)", { type: "string", pattern: "^[A-Za-z0-9]{12}$" });
const revokeDeclaration = (operationId: string): RouteDeclaration => ({
  operationId,
  tags,
  summary: "Revoke a key (admin): refused at once by this server, within 5 s by other Node processes",
  parameters: [keyIdParam],
  responses: { 200: json(keyViewSchema, "The key, revoked"), ...problems("Forbidden", "NotFound", "Conflict") },
});

export function keyRoutes(apiKeys: ApiKeys): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();

  app.post(
    "/keys",
    describeRoute(() => ({
      operationId: "createApiKey",
      tags,
      summary: "Create an API key (admin): a tenant key ({ tenant_id }) or an admin key ({ admin: true })",
      description: "The answer carries the key itself, shown only here: only a peppered hash of its secret is stored.",
      requestBody: jsonBody(keyCreateSchema),
      responses: {
        201: json(createdKeySchema, "The key, with its secret", { Location: { schema: { type: "string" } } }),
        ...problems("Forbidden", "PayloadTooLarge", "UnsupportedMediaType"),
      },
    })),
    async (c) => {
      assertAdmin(c.get("principal"));
      const body = await parseBody(c, keyCreateSchema);
      const admin = body.admin === true;
      const created = await apiKeys.create({
        tenantId: admin ? null : body.tenant_id!,
        admin,
        name: body.name ?? (admin ? "admin" : `${body.tenant_id} key`),
      });
      const info = await apiKeys.get(created.id);
      if (!info) throw new Error(`key ${created.id} vanished after insert`);
      c.header("location", `/v1/keys/${created.id}`);
      return c.json({ ...keyView(info), key: created.key }, 201);
    },
  );

  app.get(
    "/keys",
    describeRoute(() => ({
      operationId: "listApiKeys",
      tags,
      summary: "List API keys (admin), revoked ones too, without secrets or hashes",
      parameters: queryParameters(keyListQuerySchema),
      responses: { 200: json(keyListSchema, "{ keys }"), ...problems("Forbidden") },
    })),
    async (c) => {
      assertAdmin(c.get("principal"));
      const query = parseQuery(c, keyListQuerySchema);
      const keys = await apiKeys.list();
      return c.json({ keys: keys.filter((k) => query.tenant_id === undefined || k.tenantId === query.tenant_id).map(keyView) });
    },
  );

  /** The key a path names; 404 for an id no key can have or no key has, 409 for the configured static key. */
  const keyOf = async (c: Context<ApiEnv>): Promise<ApiKeyInfo> => {
    if (c.req.param("id") === STATIC_ADMIN_KEY_ID) {
      throw new ApiError(409, "the static admin key is configured, not stored: remove ADMIN_API_KEY from the server's environment to retire it");
    }
    const id = parseParam(c, "id", keyIdSchema, (raw) => `no API key ${raw}`);
    const key = await apiKeys.get(id);
    if (!key) throw new ApiError(404, `no API key ${id}`);
    return key;
  };

  app.get(
    "/keys/:id",
    describeRoute(() => ({
      operationId: "getApiKey",
      tags,
      summary: "Get an API key (admin), without its secret",
      parameters: [keyIdParam],
      responses: { 200: json(keyViewSchema, "The key"), ...problems("Forbidden", "NotFound", "Conflict") },
    })),
    async (c) => {
      assertAdmin(c.get("principal"));
      return c.json(keyView(await keyOf(c)));
    },
  );

  const revoke = async (c: Context<ApiEnv>) => {
    assertAdmin(c.get("principal"));
    const key = await keyOf(c);
    if (key.revokedAt) throw new ApiError(409, `key ${key.id} was already revoked at ${key.revokedAt.toISOString()}`);
    // false only when revoked by another request between the read and the update: revoked either way.
    await apiKeys.revoke(key.id);
    return c.json(keyView((await apiKeys.get(key.id)) ?? key));
  };
  app.delete("/keys/:id", describeRoute(() => (revokeDeclaration("revokeApiKey"))), revoke);
  app.post("/keys/:id/revoke", describeRoute(() => (revokeDeclaration("revokeApiKeyPost"))), revoke);

  return app;
}
