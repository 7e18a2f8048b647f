/**
 * The HTTP API as one Hono app, served by both runtimes (Node's server and the Worker's fetch).
 * Wiring only: routes live in their modules, errors all become problem+json here.
 */
import { WorkerRegistry } from "../queue/registry";
import { defaultScalingPolicy, type ScalingPolicy } from "../queue/scaling";
import type { UnsubscribeLinks } from "../email/unsubscribe";
import { bounceRoutes } from "./bounce-routes";
import { dkimRoutes } from "./dkim-routes";
import { emailRoutes } from "./email-routes";
import { exportRoutes, type ExportRouteDeps } from "./export-routes";
import { importRoutes } from "./import-routes";
import { providerRoutes } from "./provider-routes";
import { webhookRoutes } from "./webhook-routes";
import { type GuardPolicy, SendingGuards } from "../email/sending-guards";
import { sendingGuardRoutes } from "./sending-guard-routes";
import { createDohResolver } from "../webhooks/doh-resolver";
import type { UrlGuard } from "../webhooks/ssrf";
import { operationsRoutes } from "./operations-routes";
import { dashboardRoutes } from "./dashboard/routes";
import { unsubscribeRoutes } from "./unsubscribe-routes";
import { trackingRoutes, type TrackingRouteDeps } from "./tracking-routes";
import { Hono, type Context } from "hono";
import { HTTPException } from "hono/http-exception";
import { type Logger, type SqlClient, silentLogger } from "../ports";
import { ConflictError, ForbiddenError, NotFoundError, RateLimitedError, ValidationError } from "../queue/errors";
import type { Queue } from "../queue/queue";
import type { ApiKeys } from "./api-keys";
import { type ApiEnv, assertAdmin, authenticate, requireKey } from "./auth";
import { DEFAULT_BODY_LIMIT_BYTES, DEFAULT_UPLOAD_LIMIT_BYTES, isUpload, limitBody } from "./body";
import { jobsRoutes } from "./jobs-routes";
import { keyRoutes } from "./key-routes";
import { renderMetrics } from "./metrics";
import { openApiDocument } from "./openapi";
import { undeclaredRoutes } from "./openapi-coverage";
import { describeRoute, json, problems, security, text } from "./openapi-route";
import { ApiError, joinPath, problemResponse } from "./problem";
import { PROMETHEUS_CONTENT_TYPE } from "./prometheus";
import { queuesRoutes } from "./queues";
import { assertHeaderText, assertUrlText } from "./text-rule";
import { isDatabaseOutage, sqlState } from "../sql-errors";
import { healthSchema } from "./schemas";

export interface AppDeps {
  queue: Queue;
  sql: SqlClient;
  apiKeys: ApiKeys;
  logger?: Logger;
  /** Largest request body accepted; larger ones get 413. Default 1 MiB. */
  bodyLimitBytes?: number;
  /** The limit of a CSV upload (POST /v1/imports with text/csv), streamed to storage. Default 100 MiB. */
  uploadLimitBytes?: number;
  /** Shown in /healthz and the OpenAPI document. */
  version?: string;
  /** Serve /metrics without a key (for a scraper on a private network). Default false: admin key. */
  metricsPublic?: boolean;
  /** The worker registry (scaling signals, /v1/workers); one over `sql` when omitted. */
  registry?: WorkerRegistry;
  /** Thresholds of the scaling recommendation. Default: 1,000 waiting jobs; 80% memory for imports. */
  scaling?: ScalingPolicy;
  /** Signs and checks one-click unsubscribe links; /u/:token answers 404 without it. */
  unsubscribe?: UnsubscribeLinks;
  /** Checks tracking tokens and takes the hits; /c/:token and /o/:token answer 404 without it. */
  tracking?: TrackingRouteDeps;
  /**
   * The SSRF guard for customers' URLs: webhook endpoints at registration, import files at
   * POST /v1/imports and POST /v1/jobs. Default: DNS-over-HTTPS, no allow-list.
   */
  webhookGuard?: UrlGuard;
  /** The export store and download-link signer; /v1/exports and /files/:token exist only with it. */
  exports?: ExportRouteDeps;
  /** Verifies Resend's bounce and complaint webhooks at POST /providers/resend/events, which answers 404 without it. */
  resendWebhookSecret?: string;
  /** The sending guards' thresholds and window (GET /v1/sending/guards counts with them), and MAIL_FROM. Default: the guards' defaults. */
  sendingGuards?: { policy?: GuardPolicy; defaultFrom?: string };
  /** Seals the DKIM private keys the API makes (DKIM_ENCRYPTION_KEY); without it keys are listed, not made (409 naming the setting). */
  dkimEncryptionKey?: string;
}

/**
 * Postgres refusing a value it was sent: text it cannot store (22P05, 22021), a date, number or
 * literal out of range (22008, 22003, 22P02), a document nested past its stack (54001). The
 * text, id, date and depth rules refuse these before any query; this is the backstop, so a rule
 * that misses a case still answers the client's mistake with a 4xx (logged, to close the gap).
 */
const INPUT_SQLSTATES: Record<string, string> = {
  "22P05": "a value holds a character that cannot be stored",
  "22021": "a value is not valid UTF-8 text or holds a NUL character",
  "22008": "a date or time is out of range",
  "22003": "a number is out of range",
  "22P02": "a value is not in the expected format",
  "54001": "a value is nested too deeply",
};

/** Engine and API errors as problems; anything else is a 500 that says nothing about internals. */
function toResponse(err: unknown, c: Context, logger: Logger): Response {
  if (err instanceof ApiError) return problemResponse(err.status, err.detail, err.errors, err.headers);
  if (err instanceof ValidationError) {
    return problemResponse(422, err.message, err.issues.map((i) => ({ path: joinPath(i.path), message: i.message })));
  }
  if (err instanceof NotFoundError) return problemResponse(404, err.message);
  if (err instanceof ConflictError) return problemResponse(409, err.message);
  if (err instanceof RateLimitedError) return problemResponse(429, err.message, undefined, { "retry-after": String(err.retryAfterSeconds) });
  if (err instanceof ForbiddenError) return problemResponse(403, err.message);
  if (err instanceof HTTPException && err.status < 500) return problemResponse(err.status, err.message || "request rejected");
  const state = sqlState(err);
  const refused = state === undefined ? undefined : INPUT_SQLSTATES[state];
  if (refused) {
    logger.warn("request refused by the database: an input rule let it through", {
      method: c.req.method,
      path: c.req.path,
      sqlstate: state,
      err: err instanceof Error ? err.message : String(err),
    });
    return problemResponse(422, `the request cannot be stored: ${refused}`);
  }
  if (isDatabaseOutage(err)) {
    // Postgres restarting or out of reach: the request was fine and may be sent again shortly.
    logger.warn("request failed: the database is unavailable", { method: c.req.method, path: c.req.path, err: err instanceof Error ? err.message : String(err) });
    return problemResponse(503, "the database is unavailable; try again shortly", undefined, { "retry-after": "1" });
  }
  logger.error("request failed", {
    method: c.req.method,
    path: c.req.path,
    err: err instanceof Error ? err.message : String(err),
    stack: err instanceof Error ? err.stack : undefined,
  });
  return problemResponse(500, "an unexpected error occurred; it has been logged");
}

let routesChecked = false;

export function createApp(deps: AppDeps): Hono<ApiEnv> {
  const { queue, sql, apiKeys } = deps;
  const logger = deps.logger ?? silentLogger;
  const version = deps.version ?? "0.0.0-dev";
  const app = new Hono<ApiEnv>();

  app.onError((err, c) => toResponse(err, c, logger));
  app.notFound((c) => problemResponse(404, `no route for ${c.req.method} ${c.req.path}`));

  // The text rule for every path segment, query value and stored header, before any route
  // (and before authentication: it reads no body and touches nothing). Its declaration (as the
  // key check's below) is merged into every operation under its path: what it can answer.
  app.use("*", describeRoute(() => ({ responses: problems("BadRequest", "ValidationFailed") })), async (c, next) => {
    assertUrlText(c.req.url);
    assertHeaderText(c.req.raw.headers);
    await next();
  });

  // Authenticate before reading a body, so callers without a key cannot make us buffer one.
  // Keys are checked against the database: any /v1 call can meet an outage.
  app.use("/v1/*", describeRoute(() => ({ security: security.bearer, responses: problems("Unauthorized", "Unavailable") })), requireKey(apiKeys));
  // CSV uploads stream to storage, so they may be far larger than a JSON body.
  const jsonLimit = limitBody(deps.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES);
  const uploadLimit = limitBody(deps.uploadLimitBytes ?? DEFAULT_UPLOAD_LIMIT_BYTES);
  app.use("*", (c, next) => (isUpload(c) ? uploadLimit(c, next) : jsonLimit(c, next)));
  app.use("/v1/*", async (c, next) => {
    await next();
    c.header("cache-control", "no-store");
  });

  // One SSRF guard for every customer URL the API takes (webhook endpoints, import files).
  const urlGuard = deps.webhookGuard ?? { resolver: createDohResolver() };
  app.route("/v1/jobs", jobsRoutes(queue, sql, urlGuard));
  app.route("/v1/queues", queuesRoutes(queue, sql));
  const registry = deps.registry ?? new WorkerRegistry(sql, queue.clock);
  const policy = deps.scaling ?? defaultScalingPolicy;
  app.route("/v1", operationsRoutes(queue, registry, policy));
  app.route("/dashboard", dashboardRoutes({ queue, sql, apiKeys, registry, scaling: policy, logger }));
  app.route("/v1", emailRoutes(queue, sql));
  app.route("/v1", keyRoutes(apiKeys));
  app.route("/v1", webhookRoutes(queue, sql, urlGuard));
  const guards = new SendingGuards({ sql, queue, clock: queue.clock, logger, ...deps.sendingGuards });
  app.route("/v1", sendingGuardRoutes(guards));
  app.route("/v1", dkimRoutes(sql, queue.clock, deps.dkimEncryptionKey));
  if (deps.unsubscribe) app.route("/u", unsubscribeRoutes(sql, deps.unsubscribe));
  if (deps.tracking) app.route("/", trackingRoutes(deps.tracking));
  app.route("/v1", bounceRoutes({ sql, queue, logger }));
  app.route("/providers", providerRoutes({ sql, queue, logger, resendWebhookSecret: deps.resendWebhookSecret }));
  if (deps.exports) app.route("/", exportRoutes(queue, sql, deps.exports));
  if (deps.exports) app.route("/v1", importRoutes(queue, sql, deps.exports.storage, urlGuard));

  app.get(
    "/healthz",
    describeRoute(() => ({
      operationId: "health",
      tags: ["ops"],
      summary: "Liveness and database reachability",
      security: security.none,
      responses: { 200: json(healthSchema, "Healthy"), ...problems("Unavailable") },
    })),
    async (c) => {
      try {
        await sql.query("select 1");
      } catch (err) {
        logger.warn("health check: database unreachable", { err: err instanceof Error ? err.message : String(err) });
        return problemResponse(503, "the database is unreachable");
      }
      return c.json({ status: "ok" as const, version });
    },
  );

  // Made on the first request, when every route of the app is registered; then kept.
  let openapi: Record<string, unknown> | undefined;
  app.get(
    "/openapi.json",
    describeRoute(() => ({
      operationId: "openapi",
      tags: ["ops"],
      summary: "This document",
      security: security.none,
      responses: { 200: json({ type: "object" }, "OpenAPI 3.1 document") },
    })),
    (c) => c.json((openapi ??= openApiDocument(app, { catalog: queue.catalog, version }))),
  );

  app.get(
    "/metrics",
    describeRoute(() => ({
      operationId: "metrics",
      tags: ["ops"],
      summary: "Prometheus metrics (admin key, unless the server makes them public)",
      security: [...security.bearer, {}],
      responses: {
        200: text(PROMETHEUS_CONTENT_TYPE, "Text exposition format 0.0.4"),
        ...problems("Unauthorized", "Forbidden", "Unavailable"),
      },
    })),
    async (c) => {
      if (!deps.metricsPublic) assertAdmin(await authenticate(c, apiKeys));
      return c.body(await renderMetrics(queue, sql, registry, policy), 200, { "content-type": PROMETHEUS_CONTENT_TYPE });
    },
  );

  // A route without a declaration would be served but missing from /openapi.json: refused here,
  // so the first test (or start) that builds the app says which one. Once a process: the Worker
  // builds an app for every request, and the routes' code does not change between them.
  if (!routesChecked) {
    const undeclared = undeclaredRoutes(app.routes);
    if (undeclared.length > 0) {
      throw new Error(`routes registered without an OpenAPI declaration (describeRoute in shared/api/openapi-route.ts): ${undeclared.join(", ")}`);
    }
    routesChecked = true;
  }
  return app;
}
