/**
 * Unsubscribe tokens are opaque and exact: the address and campaign id cannot be read out of
 * one (they used to be base64 in every List-Unsubscribe header), and a token changed anywhere,
 * cut short or given another dot-separated part is a 404 with nothing written. A real token
 * still shows the page on GET and unsubscribes on POST (RFC 8058 one-click); links in mail sent
 * before the change (version 1) still work, exactly.
 */
import { Hono } from "hono";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nodeCrypto } from "../shared/node-crypto";
import { unsubscribeRoutes } from "../shared/api/unsubscribe-routes";
import { toBase64Url } from "../shared/base64url";
import { type UnsubscribeClaim, UnsubscribeLinks } from "../shared/email/unsubscribe";
import { createTestDatabase } from "./support/services";

const SECRET = "unsubscribe-test-secret-0123456789";
const links = new UnsubscribeLinks(SECRET, "https://jobs.test/");
const claim: UnsubscribeClaim = { tenantId: "acme", email: "Ada.Lovelace@Example.com", campaignId: "camp_7Hq2Zx9Lm" };

/** Every base64url spelling of `text` as it would appear inside a longer encoded string. */
function base64Spellings(text: string): string[] {
  const out: string[] = [];
  for (const lead of ["", "x", "xy"]) {
    const encoded = toBase64Url(new TextEncoder().encode(lead + text));
    // Drop the characters that mix in the lead's bits or the partial group at the end.
    const start = Math.ceil((lead.length * 4) / 3) + 1;
    out.push(encoded.slice(start, encoded.length - 3));
  }
  return out;
}

/** The version 1 token, as mail sent before the change carries it. */
async function legacyToken(c: UnsubscribeClaim, secret = SECRET): Promise<string> {
  const body = new TextEncoder().encode(JSON.stringify([c.tenantId, c.email.toLowerCase(), c.campaignId]));
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(`unsubscribe:${secret}`), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, body)).slice(0, 16);
  return `${toBase64Url(body)}.${toBase64Url(mac)}`;
}

/** One character changed at every position, every prefix, and additions around the token. */
function tamperings(token: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < token.length; i++) {
    const c = token[i]!;
    out.push(token.slice(0, i) + (c === "A" ? "B" : "A") + token.slice(i + 1));
  }
  for (let n = 0; n < token.length; n++) out.push(token.slice(0, n));
  out.push(`${token}.`, `${token}.x`, `${token}.${token.split(".").pop()}`, `x.${token}`, `${token}A`, `${token}==`, `${token} `);
  return out;
}

describe("unsubscribe tokens", () => {
  it("carry neither the address nor the campaign id, in plain or base64, nor their length to the byte", async () => {
    const token = await links.token(claim);
    expect(token).toMatch(/^v2\.[A-Za-z0-9_-]+$/);
    for (const secret of [claim.email.toLowerCase(), claim.campaignId!, claim.tenantId, "lovelace", "example.com"]) {
      expect(token.toLowerCase()).not.toContain(secret.toLowerCase());
      for (const spelling of base64Spellings(secret)) if (spelling.length >= 4) expect(token).not.toContain(spelling);
      for (const spelling of base64Spellings(`"${secret}"`)) if (spelling.length >= 4) expect(token).not.toContain(spelling);
    }
    // A one-character-longer address gives a token of the same length (padded).
    expect((await links.token({ ...claim, email: `a${claim.email}` })).length).toBe(token.length);
  });

  it("are the same for the same claim (a resent message must not differ) and differ between claims and secrets", async () => {
    const token = await links.token(claim);
    expect(await links.token({ ...claim, email: claim.email.toUpperCase() })).toBe(token);
    expect(await new UnsubscribeLinks(SECRET, "http://other.test").token(claim)).toBe(token);
    expect(await links.token({ ...claim, campaignId: "camp_7Hq2Zx9Ln" })).not.toBe(token);
    expect(await links.token({ ...claim, campaignId: null })).not.toBe(token);
    expect(await new UnsubscribeLinks("another-secret-0123456789abcdef", "http://x").token(claim)).not.toBe(token);
    expect(await links.url(claim)).toBe(`https://jobs.test/u/${token}`);
  });

  it("verify to their claim, and only exactly: any changed character, truncation or extra part is refused", async () => {
    const token = await links.token(claim);
    expect(await links.verify(token)).toEqual({ ...claim, email: claim.email.toLowerCase() });
    expect(await links.verify(await links.token({ ...claim, campaignId: null }))).toEqual({ ...claim, email: claim.email.toLowerCase(), campaignId: null });
    expect(await new UnsubscribeLinks("another-secret-0123456789abcdef", "http://x").verify(token)).toBeNull();
    for (const t of tamperings(token)) expect(await links.verify(t), t).toBeNull();
    for (const t of ["", "v2.", "v2", "garbage", "v2.!!!!", `v2.${"A".repeat(5000)}`]) expect(await links.verify(t)).toBeNull();
  });

  it("are the same bytes from node:crypto (Node) and from WebCrypto (the edge), for any claim and secret", async () => {
    expect(nodeCrypto, "this test runs on Node, where the node:crypto path is taken").toBeDefined();
    const text = fc.string({ minLength: 1, maxLength: 80, unit: "grapheme" });
    await fc.assert(
      fc.asyncProperty(
        fc.record({ tenantId: text, email: fc.emailAddress(), campaignId: fc.option(text, { nil: null }) }),
        fc.string({ minLength: 16, maxLength: 64 }),
        async (c, secret) => {
          const l = new UnsubscribeLinks(secret, "https://jobs.test");
          const token = await l.token(c);
          expect(await l.tokenWithWebCrypto(c)).toBe(token);
          expect(await l.verify(token)).toEqual({ ...c, email: c.email.toLowerCase() });
        },
      ),
      { numRuns: 300 },
    );
  });

  it("of version 1 (mail sent before) still verify, exactly: no extra part, no other spelling, the full MAC", async () => {
    const old = await legacyToken(claim);
    expect(await links.verify(old)).toEqual({ ...claim, email: claim.email.toLowerCase() });
    expect(await links.verify(await legacyToken(claim, "another-secret-0123456789abcdef"))).toBeNull();
    for (const t of tamperings(old)) expect(await links.verify(t), t).toBeNull();
  });
});

describe("the unsubscribe routes", () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let app: Hono;
  beforeAll(async () => {
    db = await createTestDatabase("unsubscribe");
    app = new Hono().route("/u", unsubscribeRoutes(db.sql, links));
    await db.sql.query(
      `insert into contacts (tenant_id, email) values ('acme', 'ada.lovelace@example.com'), ('acme', 'grace@example.com'), ('acme', 'old@example.com')`,
    );
  });
  afterAll(async () => {
    await db?.drop();
  });

  const state = async () => {
    const [s] = await db.sql.query<{ suppressions: number; events: number; unsubscribed: number }>(
      `select (select count(*)::int from suppressions) as suppressions, (select count(*)::int from email_events) as events,
              (select count(*)::int from contacts where status <> 'active') as unsubscribed`,
    );
    return s!;
  };
  const post = (path: string) =>
    app.request(path, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "List-Unsubscribe=One-Click" });

  it("refuse a tampered, truncated or extended token with 404 and write nothing", async () => {
    const token = await links.token({ tenantId: "acme", email: "grace@example.com", campaignId: null });
    const before = await state();
    for (const t of [...tamperings(token).filter((t) => t !== "" && !t.includes(" ")), ...tamperings(await legacyToken({ tenantId: "acme", email: "grace@example.com", campaignId: null })).filter((t) => t !== "" && !t.includes(" "))]) {
      const path = `/u/${t}`;
      expect((await post(path)).status, path).toBe(404);
      expect((await app.request(path)).status, path).toBe(404);
    }
    expect(await state()).toEqual(before);
  });

  it("show the page on GET without unsubscribing, and unsubscribe on the one-click POST", async () => {
    const token = await links.token({ tenantId: "acme", email: "Ada.Lovelace@example.com", campaignId: null });
    const page = await app.request(`/u/${token}`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain("ada.lovelace@example.com");
    expect(await state()).toMatchObject({ suppressions: 0, unsubscribed: 0 });

    const res = await post(`/u/${token}`);
    expect(res.status).toBe(200);
    expect(await res.text()).toContain("You are unsubscribed");
    const rows = await db.sql.query<{ tenant_id: string; reason: string }>("select tenant_id, reason from suppressions where email_lower = 'ada.lovelace@example.com'");
    expect(rows).toEqual([{ tenant_id: "acme", reason: "unsubscribe" }]);
    const [c] = await db.sql.query<{ status: string }>("select status from contacts where lower(email) = 'ada.lovelace@example.com'");
    expect(c!.status).toBe("unsubscribed");
  });

  it("unsubscribe with a version 1 link from mail sent before the change, and a link naming a campaign no longer there", async () => {
    expect((await post(`/u/${await legacyToken({ tenantId: "acme", email: "old@example.com", campaignId: null })}`)).status).toBe(200);
    expect(await db.sql.query("select 1 from suppressions where email_lower = 'old@example.com'")).toHaveLength(1);
    const gone = await links.token({ tenantId: "acme", email: "grace@example.com", campaignId: "camp_gone" });
    expect((await post(`/u/${gone}`)).status).toBe(200);
    expect(await db.sql.query("select 1 from suppressions where email_lower = 'grace@example.com'")).toHaveLength(1);
  });
});
