/**
 * One-click unsubscribe (RFC 8058): mail clients POST to the List-Unsubscribe URL; people who
 * click the link get a page with a button that POSTs. A GET never unsubscribes by itself (link
 * scanners and previews follow links). No API key: the token is the authority, and a token
 * that is not exactly one we issued (see UnsubscribeLinks.verify) is a 404 before anything is
 * read or written.
 */
import { Hono } from "hono";
import { describeRoute, pathParam, problems, security, text } from "./openapi-route";
import type { SqlClient } from "../ports";
import { Suppressions } from "../email/suppressions";
import type { UnsubscribeLinks } from "../email/unsubscribe";

const Page = (props: { title: string; children?: unknown }) => (
  <html lang="en">
    <head>
      <meta charset="utf-8" />
      <meta name="viewport" content="width=device-width, initial-scale=1" />
      <meta name="robots" content="noindex" />
      <title>{props.title}</title>
      <style>{`body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#1f2937}
button{font:inherit;padding:.5rem 1rem;border-radius:6px;border:1px solid #1f2937;background:#1f2937;color:#fff;cursor:pointer}`}</style>
    </head>
    <body>
      <h1>{props.title}</h1>
      {props.children}
    </body>
  </html>
);

export function unsubscribeRoutes(sql: SqlClient, links: UnsubscribeLinks): Hono {
  const app = new Hono();
  const suppressions = new Suppressions(sql);
  app.use("*", async (c, next) => {
    await next();
    c.header("content-security-policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'");
    c.header("referrer-policy", "no-referrer");
    c.header("cache-control", "no-store");
  });

  const token = [pathParam("token", "The token of the List-Unsubscribe link (v2.…)")];
  const page = (description: string) => text("text/html", description);

  app.get(
    "/:token",
    describeRoute(() => ({
      operationId: "unsubscribePage",
      tags: ["unsubscribe"],
      summary: "The unsubscribe page: a button that POSTs (a GET never unsubscribes); no API key, the signed token is the authority",
      security: security.none,
      parameters: token,
      responses: { 200: page("A page asking to confirm"), 404: page("A token we did not issue, exactly") },
    })),
    async (c) => {
      const claim = await links.verify(c.req.param("token"));
      if (!claim) return c.html(<Page title="This link is not valid">The unsubscribe link is broken or was changed.</Page>, 404);
      return c.html(
        <Page title="Unsubscribe">
          <p>Stop sending email to <strong>{claim.email}</strong>?</p>
          <form method="post">
            <button type="submit">Unsubscribe</button>
          </form>
        </Page>,
      );
    },
  );

  app.post(
    "/:token",
    describeRoute(() => ({
      operationId: "unsubscribe",
      tags: ["unsubscribe"],
      summary: "One-click unsubscribe (RFC 8058): suppresses the address for the tenant and marks the contact unsubscribed",
      security: security.none,
      parameters: token,
      responses: { 200: page("Unsubscribed"), 404: page("A token we did not issue, exactly; nothing recorded"), ...problems("Unavailable") },
    })),
    async (c) => {
      const claim = await links.verify(c.req.param("token"));
      if (!claim) return c.html(<Page title="This link is not valid">The unsubscribe link is broken or was changed.</Page>, 404);
      await suppressions.add(claim.tenantId, claim.email, "unsubscribe");
      await sql.query(
        `with c as (
           update contacts set status = 'unsubscribed', updated_at = now()
           where tenant_id = $1 and lower(email) = lower($2) and status = 'active' returning id
         )
         insert into email_events (tenant_id, campaign_id, type, data)
         -- The campaign through the tenant's own rows: a link outlives what it names (no 5xx then).
         values ($1, (select id from campaigns where tenant_id = $1 and id = $3), 'unsubscribed',
                 jsonb_build_object('email', lower($2), 'contact_updated', (select count(*) from c)))`,
        [claim.tenantId, claim.email, claim.campaignId],
      );
      return c.html(<Page title="You are unsubscribed">{claim.email} will not get these emails any more.</Page>);
    },
  );

  return app;
}
