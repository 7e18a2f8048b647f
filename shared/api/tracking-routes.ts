/**
 * The tracked links and the open pixel of campaign mail (link-tracking.ts puts them there):
 * GET /c/:token answers 302 to the link's URL, GET /o/:token a 1x1 transparent GIF. No API key:
 * the sealed token is the authority (tracking-tokens.ts), and a token that is not exactly one
 * we issued, or of the other kind, is a 404 that records nothing and redirects nowhere. The
 * redirect goes to the URL sealed in the token, which only we can seal: never an open redirect.
 *
 * No database read or write here: the hit goes to the engagement buffer, which writes in bulk
 * (engagement-buffer.ts), so these answer at the speed of the crypto.
 */
import { Hono } from "hono";
import type { EngagementSink } from "../email/engagement-buffer";
import type { TrackingTokens } from "../email/tracking-tokens";
import { describeRoute, pathParam, problems, security, text } from "./openapi-route";
import { problemResponse } from "./problem";

export interface TrackingRouteDeps {
  tokens: TrackingTokens;
  sink: EngagementSink;
}

/** GIF89a, 1x1, one transparent pixel: 43 bytes, the smallest image every client shows. */
export const PIXEL_GIF = Uint8Array.from(atob("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw=="), (ch) => ch.charCodeAt(0));

const NO_STORE = { "cache-control": "no-store, no-cache, must-revalidate, max-age=0", pragma: "no-cache", expires: "0" };

export function trackingRoutes(deps: TrackingRouteDeps): Hono {
  const app = new Hono();
  // Mounted at the root: the headers for these two paths only.
  const headers = async (c: { header(k: string, v: string): void }, next: () => Promise<void>) => {
    await next();
    c.header("referrer-policy", "no-referrer");
    c.header("x-robots-tag", "noindex");
    for (const [k, v] of Object.entries(NO_STORE)) c.header(k, v);
  };
  app.use("/c/*", headers);
  app.use("/o/*", headers);
  const notOurs = () => problemResponse(404, "not a tracking link");

  app.get(
    "/c/:token",
    describeRoute(() => ({
      operationId: "followTrackedLink",
      tags: ["tracking"],
      summary: "A tracked link of campaign mail: 302 to the link's URL and a click recorded (no API key; the sealed token is the authority)",
      security: security.none,
      parameters: [pathParam("token", "The tracked link's token (t1.…)")],
      responses: { 302: { description: "To the URL that was in the message" }, ...problems("NotFound") },
    })),
    async (c) => {
      const claim = await deps.tokens.verify(c.req.param("token"));
      if (!claim || claim.kind !== "click") return notOurs();
      deps.sink.record(claim, c.req.header("user-agent"));
      return c.redirect(claim.url, 302);
    },
  );

  app.get(
    "/o/:token",
    describeRoute(() => ({
      operationId: "openPixel",
      tags: ["tracking"],
      summary: "The open pixel of campaign mail: a 1x1 transparent GIF, never cached, and an open recorded (no API key)",
      security: security.none,
      parameters: [pathParam("token", "The pixel's token (t1.…)")],
      responses: { 200: text("image/gif", "43 bytes: a transparent pixel"), ...problems("NotFound") },
    })),
    async (c) => {
      const claim = await deps.tokens.verify(c.req.param("token"));
      if (!claim || claim.kind !== "open") return notOurs();
      deps.sink.record(claim, c.req.header("user-agent"));
      return c.body(PIXEL_GIF, 200, { "content-type": "image/gif", "content-length": String(PIXEL_GIF.length) });
    },
  );

  return app;
}
