import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { render } from "@react-email/render";
import { build } from "esbuild";
import { Miniflare } from "miniflare";
import { createElement } from "react";
import { describe, expect, it } from "vitest";
import {
  compileTemplate,
  htmlToTextOptions,
  normalizeText,
  renderSystemTemplate,
  renderTenantTemplate,
  systemTemplates,
  TemplateError,
  TenantEmail,
  type TenantTemplate,
  type TemplateVariables,
  valueResolver,
} from "../shared/email/templates";

const campaign: TenantTemplate = {
  subject: "{{first_name | Friend}}, your {{attributes.plan | free}} plan",
  blocks: [
    { type: "heading", text: "Hello {{first_name | there}}!" },
    { type: "text", text: "Your plan is {{attributes.plan}} & you have {{credits}} credits. Static <b>stays text</b>." },
    { type: "text", text: "{{intro}}" },
    { type: "button", text: "Open {{first_name}}'s dashboard", href: "https://app.test/c/{{contact_id}}?src=mail&x={{first_name}}" },
    { type: "divider" },
    { type: "button", text: "{{cta_label | Read more}}", href: "{{cta_url}}" },
    { type: "text", text: "Questions? Reply to {{ reply_to | \"support@acme.test\" }}." },
  ],
};

/** A few recipients, the awkward ones included. */
const recipients: TemplateVariables[] = [
  {
    first_name: "Ada",
    credits: 3,
    contact_id: 1,
    attributes: { plan: "pro" },
    cta_url: "https://acme.test/read",
    unsubscribe_url: "https://acme.test/u/1?t=abc",
  },
  {
    first_name: `Eve "<script>alert('x')</script>"`,
    credits: 0,
    contact_id: 2,
    intro: "  Line one\n\n   line two\t& more  ",
    cta_label: "",
    cta_url: "javascript:alert(1)",
    unsubscribe_url: `https://acme.test/u/2?a=1&b="2"&c='3'`,
    sender_address: "Acme Inc., 1 <Main> St, Springfield",
  },
  { contact_id: 3, cta_url: "mailto:help@acme.test", intro: "", first_name: "   " },
  { first_name: "Zoë 🐧", contact_id: 4, cta_url: "#top", credits: 12.5, attributes: { plan: null }, reply_to: "x\u0000y@acme.test" },
  { first_name: "Bob", contact_id: 5, cta_url: " https://acme.test/a b\n", cta_label: "  ", unsubscribe_url: "" },
];

describe("system templates", () => {
  it("sys_transactional renders title, paragraphs and button to HTML and text", async () => {
    const out = await renderSystemTemplate("sys_transactional", {
      title: "Your export is ready",
      body: "We packed 1,204 contacts.\n\nThe link works for 24 hours <really>.",
      button_label: "Download",
      button_url: "https://files.test/export.csv?sig=a&b=c",
    });
    expect(out.subject).toBe("Your export is ready");
    expect(out.html).toMatch(/^<!DOCTYPE html/);
    expect(out.html).toContain(">Your export is ready</h1>");
    expect(out.html).toContain(">We packed 1,204 contacts.</p>");
    expect(out.html).toContain("The link works for 24 hours &lt;really&gt;.</p>");
    expect(out.html).toContain('href="https://files.test/export.csv?sig=a&amp;b=c"');
    expect(out.html).toContain("PenguinMails"); // the layout's header
    expect(out.text).toBe(
      [
        "PenguinMails",
        "Your export is ready",
        "We packed 1,204 contacts.",
        "The link works for 24 hours <really>.",
        "Download https://files.test/export.csv?sig=a&b=c",
        "-".repeat(40),
      ].join("\n\n"),
    );
    // No unsubscribe link unless one is given; the footer shows the sender's address when given.
    expect(out.html).not.toContain("Unsubscribe");
    const withFooter = await renderSystemTemplate(
      "sys_transactional",
      { title: "Hi", subject: "Custom subject", unsubscribe_url: "https://x.test/u?a=1&b=2" },
      { brandName: "Acme", postalAddress: "Acme Inc., 1 Main St" },
    );
    expect(withFooter.subject).toBe("Custom subject");
    expect(withFooter.html).toContain('href="https://x.test/u?a=1&amp;b=2"');
    expect(withFooter.text).toContain("Acme Inc., 1 Main St\n\nUnsubscribe https://x.test/u?a=1&b=2");
    expect(withFooter.text.startsWith("Acme\n\nHi")).toBe(true);
  });

  it("sys_import_finished renders the counts and the error report link", async () => {
    const out = await renderSystemTemplate("sys_import_finished", {
      rows_read: 10_250,
      created: 9_000,
      updated: "1000", // numbers may arrive as strings in a job's variables
      invalid: 200,
      duplicate: 50,
      file_name: "spring.csv",
      list_name: "Newsletter",
      error_report_url: "https://files.test/errors.csv",
    });
    expect(out.subject).toBe("Contact import finished: 9,000 created, 1,000 updated, 250 skipped");
    for (const [label, n] of [
      ["Rows read", "10,250"],
      ["Contacts created", "9,000"],
      ["Contacts updated", "1,000"],
      ["Invalid rows", "200"],
      ["Duplicate rows", "50"],
    ]) {
      expect(out.html).toMatch(new RegExp(`>${label}</td><td[^>]*>${n}</td>`));
      expect(out.text).toMatch(new RegExp(`^${label} +${n}$`, "m"));
    }
    expect(out.text).toContain("We read 10,250 rows from spring.csv into the list Newsletter.");
    expect(out.html).toContain('href="https://files.test/errors.csv"');
    expect(out.text).toContain("Download the error report https://files.test/errors.csv");

    const clean = await renderSystemTemplate("sys_import_finished", { rows_read: 3, created: 3, updated: 0, invalid: 0, duplicate: 0 });
    expect(clean.subject).toBe("Contact import finished: 3 created, 0 updated");
    expect(clean.html).not.toContain("error report");
  });

  it("sys_webhook_disabled names the endpoint, the reason and the time (UTC)", async () => {
    const out = await renderSystemTemplate("sys_webhook_disabled", {
      endpoint_id: "whe_abc",
      endpoint_url: "https://hooks.acme.test/in?x=<b>",
      reason: "the receiver answered 410 Gone",
      disabled_at: "2026-05-01T09:30:00.000Z",
    });
    expect(out.subject).toBe("Webhook endpoint disabled: https://hooks.acme.test/in?x=<b>");
    expect(out.text).toContain("We stopped sending events to https://hooks.acme.test/in?x=<b> on 1 May 2026 at 09:30 UTC: the receiver answered 410 Gone.");
    expect(out.text).toContain("Endpoint whe_abc.");
    // The URL is the customer's text: escaped in HTML, never a link.
    expect(out.html).toContain("x=&lt;b&gt;");
    expect(out.html).not.toContain('href="https://hooks.acme.test');
    const bad = await renderSystemTemplate("sys_webhook_disabled", { endpoint_id: "whe_abc", endpoint_url: "https://x.test", reason: "r", disabled_at: "yesterday" }).catch((e) => e);
    expect(bad.issues.map((i: { path: string }) => i.path)).toEqual(["disabled_at"]);
  });

  it("sys_export_ready gives the size, the download link and its expiry", async () => {
    const out = await renderSystemTemplate("sys_export_ready", {
      source: "list",
      rows: 12_345,
      bytes: 2_500_000,
      download_url: "https://jobs.example.com/files/abc.def",
      expires_at: "2026-05-08T09:30:00.000Z",
    });
    expect(out.subject).toBe("Your export is ready: 12,345 rows");
    expect(out.text).toContain("The list export has 12,345 rows (2.4 MB, CSV).");
    expect(out.text).toContain("until 8 May 2026");
    expect(out.html).toContain('href="https://jobs.example.com/files/abc.def"');
    const bad = await renderSystemTemplate("sys_export_ready", { source: "list", rows: 1, bytes: 1, download_url: "javascript:alert(1)", expires_at: "2026-05-08T09:30:00Z" }).catch((e) => e);
    expect(bad.issues.map((i: { path: string }) => i.path)).toEqual(["download_url"]);
  });

  it("checks variables with the template's schema and names the offending paths", async () => {
    expect(Object.keys(systemTemplates).sort()).toEqual(["sys_export_ready", "sys_import_finished", "sys_transactional", "sys_webhook_disabled"]);
    const bad = await renderSystemTemplate("sys_import_finished", { rows_read: -1, created: 1, updated: 0, invalid: 0 }).catch((e) => e);
    expect(bad).toBeInstanceOf(TemplateError);
    expect(bad.code).toBe("invalid_variables");
    expect(bad.issues.map((i: { path: string }) => i.path).sort()).toEqual(["duplicate", "rows_read"]);
    const js = await renderSystemTemplate("sys_transactional", { title: "x", button_label: "Go", button_url: "javascript:alert(1)" }).catch((e) => e);
    expect(js.code).toBe("invalid_variables");
    const unknown = await renderSystemTemplate("sys_nope", {}).catch((e) => e);
    expect(unknown.code).toBe("unknown_template");
  });
});

describe("tenant templates", () => {
  it("fills variables, escaping <script> and quotes in HTML but not in the text part or subject", async () => {
    const out = await renderTenantTemplate(campaign, recipients[1]);
    const name = `Eve "<script>alert('x')</script>"`;
    expect(out.subject).toBe(`${name}, your free plan`);
    expect(out.html).toContain("Hello Eve &quot;&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&quot;!</h1>");
    expect(out.html).not.toContain("<script>");
    expect(out.html).toContain(
      'href="https://app.test/c/2?src=mail&amp;x=Eve%20&quot;&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&quot;"',
    );
    expect(out.text).toContain(`Hello ${name}!`);
    expect(out.text).toContain("Your plan is & you have 0 credits. Static <b>stays text</b>.");
    expect(out.text).toContain("Line one line two & more"); // whitespace collapses in text
    // javascript: never reaches an href; the button falls back to its label.
    expect(out.html).not.toMatch(/javascript:/i);
    expect(out.text).toContain("\n\nRead more\n\n");
    // Default with quotes, unknown variables empty.
    expect(out.text).toContain("Questions? Reply to support@acme.test.");
    expect(out.text).toContain("Acme Inc., 1 <Main> St, Springfield");
    expect(out.html).toContain("Acme Inc., 1 &lt;Main&gt; St, Springfield");
  });

  it("renders unknown variables as empty strings or their default", async () => {
    const out = await renderTenantTemplate({ subject: "Hi {{nobody}}|{{nobody | you}}", blocks: [{ type: "text", text: "[{{missing}}] [{{missing|dflt}}]" }] });
    expect(out.subject).toBe("Hi |you");
    expect(out.html).toContain(">[] [dflt]</p>");
    expect(out.text).toContain("[] [dflt]");
  });

  it("rejects blocks that do not fit the schema", async () => {
    const bad = await renderTenantTemplate({ subject: "x", blocks: [{ type: "video" }] } as unknown as TenantTemplate).catch((e) => e);
    expect(bad).toBeInstanceOf(TemplateError);
    expect(bad).toMatchObject({ code: "invalid_template", issues: [{ path: "blocks.0.type" }] });
    await expect(compileTemplate({ subject: "x", blocks: [{ type: "button", text: "x" }] } as unknown as TenantTemplate)).rejects.toMatchObject({
      code: "invalid_template",
    });
  });

  it("renders what react-email's own render(element) and render(element, { plainText: true }) give", async () => {
    const vars = recipients[0]!;
    const resolve = valueResolver(vars);
    const element = createElement(TenantEmail, { blocks: campaign.blocks, resolve, unsubscribeUrl: resolve.href("{{unsubscribe_url}}") });
    const ours = await renderTenantTemplate(campaign, vars);
    expect(ours.html).toBe(await render(element));
    expect(ours.text).toBe(normalizeText(await render(element, { plainText: true, htmlToTextOptions })));
  });
});

describe("the compiled fast path", () => {
  it("fills exactly what a direct react-email render gives, for every recipient", async () => {
    for (const layout of [undefined, { brandName: "Acme & Co", postalAddress: "Acme Inc., 1 Main St" }]) {
      const compiled = await compileTemplate(campaign, layout);
      expect(compiled.variables).toEqual(
        expect.arrayContaining(["first_name", "attributes.plan", "credits", "intro", "contact_id", "cta_label", "cta_url", "reply_to", "unsubscribe_url"]),
      );
      for (const vars of recipients) {
        const direct = await renderTenantTemplate(campaign, vars, layout);
        const filled = compiled.fill(vars);
        expect(filled.subject).toBe(direct.subject);
        expect(filled.html).toBe(direct.html);
        expect(filled.text).toBe(direct.text);
      }
    }
  });

  it("puts the unsubscribe URL in the footer's link, escaped for the attribute, and leaves the link out without one", async () => {
    const compiled = await compileTemplate(campaign);
    const withLink = compiled.fill(recipients[1]!);
    const footer = withLink.html.slice(withLink.html.lastIndexOf("<hr"));
    expect(footer).toMatch(
      /<a href="https:\/\/acme\.test\/u\/2\?a=1&amp;b=&quot;2&quot;&amp;c=&#x27;3&#x27;"[^>]*>Unsubscribe<\/a>/,
    );
    expect(withLink.text.endsWith(`Unsubscribe https://acme.test/u/2?a=1&b="2"&c='3'`)).toBe(true);
    // A quote in the URL cannot break out of the attribute.
    const attack = compiled.fill({ unsubscribe_url: `https://x.test/" onclick="alert(1)` });
    expect(attack.html).toContain('href="https://x.test/&quot;%20onclick=&quot;alert(1)"');
    expect(attack.html).not.toContain('" onclick="');
    for (const vars of [recipients[2]!, recipients[4]!]) {
      const out = compiled.fill(vars);
      expect(out.html).not.toContain("Unsubscribe");
      expect(out.html).toBe((await renderTenantTemplate(campaign, vars)).html);
    }
  });

  it("treats values as data: a token-like or brace-laden value is never filled again", async () => {
    const compiled = await compileTemplate({ subject: "{{a}}{{b}}", blocks: [{ type: "text", text: "{{a}}|{{b}}" }] });
    const out = compiled.fill({ a: "{{b}}", b: "zzpm0000_0_zz" });
    expect(out.subject).toBe("{{b}}zzpm0000_0_zz");
    expect(out.text).toContain("{{b}}|zzpm0000_0_zz");
  });
});

describe("runs in Cloudflare Workers", () => {
  it("bundles with esbuild for workerd (neutral platform, worker conditions)", () => {
    const dir = mkdtempSync(join(tmpdir(), "tpl-"));
    try {
      execFileSync(
        "npx",
        [
          "esbuild",
          "shared/email/templates/index.ts",
          "--bundle",
          "--platform=neutral",
          "--conditions=workerd,worker,browser",
          "--format=esm",
          `--outfile=${join(dir, "tpl.js")}`,
          "--log-level=error",
        ],
        { stdio: "pipe" },
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("renders the same bytes in workerd as on Node", async () => {
    // As wrangler builds it (process.env.NODE_ENV defined: no nodejs_compat in this Worker).
    const entry = `
      import { compileTemplate, renderSystemTemplate, renderTenantTemplate } from "./shared/email/templates";
      export default {
        async fetch(request) {
          const { template, vars } = await request.json();
          const direct = await renderTenantTemplate(template, vars);
          const compiled = (await compileTemplate(template)).fill(vars);
          const system = await renderSystemTemplate("sys_import_finished", { rows_read: 5, created: 3, updated: 1, invalid: 1, duplicate: 0 });
          return Response.json({ direct, compiled, system });
        },
      };`;
    const result = await build({
      stdin: { contents: entry, resolveDir: process.cwd(), loader: "ts", sourcefile: "tpl-worker.ts" },
      bundle: true,
      platform: "neutral",
      conditions: ["workerd", "worker", "browser"],
      format: "esm",
      write: false,
      define: { "process.env.NODE_ENV": '"production"' },
      logLevel: "error",
    });
    const script = result.outputFiles[0]!.text;
    const mf = new Miniflare({ modules: true, script, compatibilityDate: "2026-04-20" });
    try {
      const vars = recipients[1]!;
      const res = await mf.dispatchFetch("http://tpl.test/", { method: "POST", body: JSON.stringify({ template: campaign, vars }) });
      expect(res.status).toBe(200);
      const edge = (await res.json()) as Record<"direct" | "compiled" | "system", { subject: string; html: string; text: string }>;
      const node = await renderTenantTemplate(campaign, vars);
      expect(edge.direct).toEqual(node);
      expect(edge.compiled).toEqual(node);
      expect(edge.system).toEqual(
        await renderSystemTemplate("sys_import_finished", { rows_read: 5, created: 3, updated: 1, invalid: 1, duplicate: 0 }),
      );
    } finally {
      await mf.dispose();
    }
  });
});
