/**
 * The OpenAPI 3.1 document, generated from the routes the app registered: each route declares
 * its operation next to its handler (describeRoute, openapi-route.ts), from the zod schemas it
 * parses with and answers by, so the document can neither drift from the routes nor miss one
 * (shared/api/openapi-coverage.ts checks the second).
 * What no single route owns is here: the info, servers and security schemes, the problem
 * responses, and the enqueue schemas, one a job type of the catalog.
 */
import type { Hono } from "hono";
import { z } from "zod";
import type { JobType } from "../jobs/definition";
import { enqueueRequestSchema, MAX_BATCH } from "../queue/queue";
import { declaredPaths, SchemaComponents } from "./openapi-paths";
import { problemResponses } from "./openapi-route";

type Json = Record<string, unknown>;
const uri = (id: string) => `#/components/schemas/${id}`;

/** "email.send" -> "EmailSendEnqueueRequest": component names read better without dots. */
export const enqueueSchemaName = (type: string) =>
  `${type
    .split(/[^A-Za-z0-9]+/)
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join("")}EnqueueRequest`;

/** Drops the JSON Schema dialect markers zod adds to each top-level schema; OpenAPI 3.1 sets the dialect once. */
function clean(schemas: Record<string, Json>): Record<string, Json> {
  return Object.fromEntries(
    Object.entries(schemas).map(([name, { $schema: _s, $id: _i, ...rest }]) => [name, rest]),
  );
}

/**
 * payload.tenant_id is filled from the API key when omitted, so the document must not list it
 * as required (the payload schema itself requires it of the stored job).
 */
function tenantIdOptional(schema: Json): void {
  if (Array.isArray(schema.required)) schema.required = schema.required.filter((f) => f !== "tenant_id");
  for (const key of ["oneOf", "anyOf", "allOf"] as const) {
    const branches = schema[key];
    if (Array.isArray(branches)) for (const b of branches) tenantIdOptional(b as Json);
  }
}

/**
 * One enqueue schema a job type (its payload schema in the queue's envelope), their union
 * (EnqueueRequest, discriminated by type) and the batch of them: what POST /v1/jobs and
 * /v1/jobs/batch take, which the routes check against the same catalog.
 */
function enqueueSchemas(catalog: ReadonlyMap<string, JobType>): Record<string, Json> {
  const requests = z.registry<{ id: string }>();
  const envelopes = [...catalog.values()].map((def) => {
    const envelope = enqueueRequestSchema
      .extend({ type: z.literal(def.type), payload: def.payload })
      .describe(`${def.description}${def.adminOnly ? " Admin keys only; runs as the system tenant." : ""}`);
    requests.add(envelope, { id: enqueueSchemaName(def.type) });
    return envelope;
  });
  const [first, ...rest] = envelopes;
  if (!first) throw new Error("the job catalog is empty");
  const anyEnqueue = z.discriminatedUnion("type", [first, ...rest]);
  requests.add(anyEnqueue, { id: "EnqueueRequest" });
  requests.add(z.strictObject({ jobs: z.array(anyEnqueue).min(1).max(MAX_BATCH) }), { id: "BatchRequest" });
  const schemas = clean(z.toJSONSchema(requests, { io: "input", unrepresentable: "any", uri }).schemas as Record<string, Json>);
  for (const def of catalog.values()) {
    const payload = (schemas[enqueueSchemaName(def.type)]?.properties as Json | undefined)?.payload;
    if (payload) tenantIdOptional(payload as Json);
  }
  return schemas;
}

const TAGS: [name: string, description: string][] = [
  ["jobs", "Enqueue, follow, cancel, retry and delete background jobs"],
  ["queues", "Counts per job type; pause, resume and retry a type (admin)"],
  ["contacts", "Contacts, upserted by address"],
  ["lists", "Lists of contacts"],
  ["segments", "Lists filtered on contact attributes"],
  ["templates", "Email templates of blocks with {{variables}}"],
  ["campaigns", "A template sent to a list or a segment, fanned out in batches"],
  ["suppressions", "Addresses never sent to again"],
  ["outbox", "What the embedded outbox provider would have sent"],
  ["imports", "Contact imports from a CSV"],
  ["exports", "CSV exports of lists, segments and campaigns, and their signed downloads"],
  ["webhooks", "Webhook endpoints, their secrets and deliveries"],
  ["dkim", "DKIM keys of tenants' sending domains: SMTP mail from a domain is signed with its active key"],
  ["sending", "Sending guards: bounce and complaint rates that pause a tenant's campaigns"],
  ["keys", "API keys (admin)"],
  ["providers", "Webhooks from mail providers"],
  ["unsubscribe", "One-click unsubscribe pages"],
  ["tracking", "Tracked links and the open pixel of campaign mail"],
  ["ops", "Health, metrics, scaling signals, workers, schedules and this document"],
];

/** The document of `app`: its declared routes, under the info, servers and components no route owns. */
export function openApiDocument(app: Hono<any>, options: { catalog: ReadonlyMap<string, JobType>; version: string }): Json {
  const named = new SchemaComponents();
  const paths = declaredPaths(app, named);
  const responses = named.resolve(problemResponses());
  return {
    openapi: "3.1.0",
    info: {
      title: "PenguinMails Jobs API",
      version: options.version,
      description:
        "Enqueue and manage background jobs. Authenticate with `Authorization: Bearer <key>`; " +
        "a tenant key sees only its tenant's jobs, an admin key sees all. Errors are RFC 9457 problem details.",
    },
    // Relative: the paths are under wherever this document is served (behind any proxy or PUBLIC_URL).
    servers: [{ url: "/", description: "The server that serves this document" }],
    security: [{ bearerAuth: [] }],
    tags: TAGS.map(([name, description]) => ({ name, description })),
    paths,
    components: {
      securitySchemes: { bearerAuth: { type: "http", scheme: "bearer", description: "pmk_<id>_<secret>" } },
      schemas: { ...enqueueSchemas(options.catalog), ...named.schemas },
      responses,
    },
  };
}
