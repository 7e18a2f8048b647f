/**
 * npx tsx tools/bench/render.ts: what a campaign pays per recipient to render its template.
 *
 *   first render   compileTemplate: the one react-email render (two shapes: with and without the
 *                  footer's unsubscribe link) and the split into chunks and slots; cold (first
 *                  call in the process) and warm (median of later compiles)
 *   direct         renderTenantTemplate (React + html-to-text per recipient), for comparison
 *   fill           compiled.fill per recipient: median of BENCH_RUNS runs over BENCH_RECIPIENTS
 *                  recipients (defaults 5 and 100,000); target <= 50 µs
 *
 * Exits 1 when the fill median is above the target. The machines are shared and noisy.
 */
import { compileTemplate, renderTenantTemplate, type TenantTemplate } from "../../shared/email/templates";

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const RECIPIENTS = Number(process.env.BENCH_RECIPIENTS ?? 100_000);
const TARGET_US = 50;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** A realistic campaign: personalised heading, paragraphs, a tracked button, a divider, a footer line. */
const template: TenantTemplate = {
  subject: "{{first_name | Hi there}}, your {{plan}} plan renews on {{renewal_date}}",
  blocks: [
    { type: "heading", text: "Good news, {{first_name | friend}}!" },
    {
      type: "text",
      text: "Your {{plan}} plan renews on {{renewal_date}}. Over the past month you sent {{sent_count}} emails with an open rate of {{open_rate}}, and your audience grew to {{audience_size}} contacts.",
    },
    { type: "text", text: "As a thank-you, here is a code for 20% off the next upgrade: {{coupon}}." },
    { type: "button", text: "See your report", href: "https://app.penguinmails.test/r/{{contact_id}}?utm_source=email&c={{campaign_id}}" },
    { type: "divider" },
    { type: "text", text: "You are receiving this because {{email}} subscribed to product updates from {{company | Acme}}." },
  ],
};

const recipient = (i: number) => ({
  first_name: i % 7 === 0 ? "" : `Name${i} <O'Brien & "Co">`,
  plan: i % 2 ? "Pro" : "Team",
  renewal_date: `2026-0${1 + (i % 9)}-1${i % 10}`,
  sent_count: 1000 + (i % 5000),
  open_rate: `${(i % 100) / 2}%`,
  audience_size: 20_000 + i,
  coupon: `SAVE-${i.toString(36).toUpperCase()}`,
  contact_id: i,
  campaign_id: "cmp_spring",
  email: `user${i}@example.test`,
  unsubscribe_url: `https://app.penguinmails.test/u/${i}?sig=${(i * 2654435761) % 4294967296}&t="x"`,
});

const fmt = (n: number, digits = 2) => n.toFixed(digits);

// First render: cold (the first React render in this process), then warm.
let started = performance.now();
let compiled = await compileTemplate(template);
const coldMs = performance.now() - started;
const warm: number[] = [];
for (let i = 0; i < 20; i++) {
  started = performance.now();
  compiled = await compileTemplate(template);
  warm.push(performance.now() - started);
}

// The direct path, per recipient, for comparison.
const direct: number[] = [];
for (let i = 0; i < 200; i++) {
  started = performance.now();
  await renderTenantTemplate(template, recipient(i));
  direct.push(performance.now() - started);
}

// Recipients' variables are built beforehand: only fill is timed.
const people = Array.from({ length: RECIPIENTS }, (_, i) => recipient(i));
let sink = 0;
for (let i = 0; i < Math.min(RECIPIENTS, 20_000); i++) sink += compiled.fill(people[i]!).html.length; // warm-up
const perRecipient: number[] = [];
for (let run = 0; run < RUNS; run++) {
  started = performance.now();
  for (let i = 0; i < RECIPIENTS; i++) {
    const out = compiled.fill(people[i]!);
    sink += out.html.length + out.text.length + out.subject.length;
  }
  perRecipient.push(((performance.now() - started) * 1000) / RECIPIENTS);
}

const sample = compiled.fill(people[1]!);
const fillUs = median(perRecipient);
const lines = [
  `template: ${template.blocks.length} blocks, ${compiled.slotCount} slots, ${compiled.variables.length} variables; ` +
    `message ${sample.html.length} B html + ${sample.text.length} B text`,
  `first render (compileTemplate): ${fmt(coldMs, 1)} ms cold, ${fmt(median(warm))} ms warm (median of ${warm.length})`,
  `direct render (React per recipient): ${fmt(median(direct) * 1000, 0)} µs median over ${direct.length}`,
  `fill per recipient: ${fmt(fillUs)} µs median of ${RUNS} runs over ${RECIPIENTS.toLocaleString("en-US")} recipients ` +
    `(runs: ${perRecipient.map((x) => fmt(x)).join(", ")}; target <= ${TARGET_US} µs)`,
  `speed-up over direct: ${fmt((median(direct) * 1000) / fillUs, 0)}x`,
];
process.stdout.write(`${lines.join("\n")}\n`);
if (sink === 0) process.stdout.write("\n");
if (fillUs > TARGET_US) process.exit(1);
