/**
 * The one bounce classifier (shared/email/bounce-classifier.ts) and the DSN reader
 * (shared/email/dsn-report.ts), without I/O: generated SMTP replies over the code space
 * (fast-check, fixed seed) checking the policy's invariants, the three forms of one status
 * agreeing, and a table of replies real servers send.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type BounceCategory, classifyBounce, parseSmtpReply } from "../shared/email/bounce-classifier";
import { readDsn } from "../shared/email/dsn-report";
import { postfixDsn } from "./support/dsn";

const FC = { seed: 15_05, numRuns: 2_000 };
const smtp = (reply: string) => classifyBounce({ source: "smtp", reply });

const words = fc.constantFrom(
  "",
  "user unknown",
  "mailbox full",
  "blocked as spam",
  "try again later",
  "Requested action not taken: mailbox unavailable",
  "The email account that you tried to reach does not exist.",
  "Our system has detected an unusual rate of unsolicited mail",
  "message too large",
  "Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
  "no such user here",
  "quota exceeded",
  "\u0000\ud800 \r\n odd",
);
const detailArb = fc.integer({ min: 0, max: 20 });
const subjectArb = fc.integer({ min: 0, max: 8 });
/** A reply: its basic code, its enhanced status (of the same class, or none) and text. */
const reply = (codes: fc.Arbitrary<number>) =>
  fc.record({ code: codes, subject: subjectArb, detail: detailArb, enhanced: fc.boolean(), text: words, lines: fc.integer({ min: 1, max: 3 }) }).map((r) => {
    const cls = Math.floor(r.code / 100);
    const status = r.enhanced ? `${cls}.${r.subject}.${r.detail}` : undefined;
    const line = (sep: string) => `${r.code}${sep}${status ? `${status} ` : ""}${r.text}`;
    const text = [...Array.from({ length: r.lines - 1 }, () => line("-")), line(" ")].join("\r\n");
    return { ...r, cls, status, text };
  });

describe("the policy's invariants over generated SMTP replies", () => {
  it("every 4yz is a deferral: retried, never suppressed, whatever its status or text", () => {
    fc.assert(
      fc.property(reply(fc.integer({ min: 400, max: 499 })), fc.option(fc.constantFrom("5.1.1", "5.2.1", "5.7.1")), (r, wrongClass) => {
        const text = wrongClass ? `${r.code} ${wrongClass} ${r.text}` : r.text;
        const v = smtp(text);
        expect(v).toMatchObject({ category: "deferral", retry: true, suppress: false, code: r.code });
      }),
      FC,
    );
  });

  it("every 5yz 5.1.1 (5.1.2, 5.1.10, 5.2.1) suppresses and is not retried, whatever the text", () => {
    fc.assert(
      fc.property(fc.integer({ min: 500, max: 599 }), fc.constantFrom("5.1.1", "5.1.2", "5.1.10", "5.2.1", "5.01.001"), words, (code, status, text) => {
        expect(smtp(`${code} ${status} ${text}`)).toMatchObject({ category: "hard_bounce", suppress: true, retry: false });
      }),
      FC,
    );
  });

  it("every 5.7.x is a policy block: the message fails, the address is never suppressed", () => {
    fc.assert(
      fc.property(fc.integer({ min: 500, max: 599 }), detailArb, words, (code, detail, text) => {
        expect(smtp(`${code} 5.7.${detail} ${text}`)).toMatchObject({ category: "policy", suppress: false, retry: false });
      }),
      FC,
    );
  });

  it("5.2.2 mailbox full is a soft bounce: not retried, not suppressed", () => {
    fc.assert(
      fc.property(fc.integer({ min: 500, max: 599 }), words, (code, text) => {
        expect(smtp(`${code} 5.2.2 ${text}`)).toMatchObject({ category: "soft_bounce", suppress: false, retry: false });
      }),
      FC,
    );
  });

  it("suppress only for hard bounces and complaints, retry only for deferrals, over the whole code space", () => {
    fc.assert(
      fc.property(reply(fc.integer({ min: 200, max: 599 })), (r) => {
        const v = smtp(r.text);
        expect(v.suppress).toBe(v.category === "hard_bounce" || v.category === "complaint");
        expect(v.retry).toBe(v.category === "deferral");
        if (r.cls === 2 || r.cls === 3) expect(v.suppress).toBe(false);
      }),
      FC,
    );
  });

  it("never throws, whatever the text", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 300 }), fc.string({ maxLength: 40 }), fc.string({ maxLength: 300 }), (a, b, c) => {
        smtp(a);
        classifyBounce({ source: "dsn", action: b, status: b, diagnosticCode: c });
        classifyBounce({ source: "resend", kind: "bounce", bounce: { type: b, subType: b, message: a } });
      }),
      { ...FC, numRuns: 500 },
    );
  });
});

describe("one status, three forms: an SMTP reply, a DSN block, a Resend event", () => {
  it("a 5yz: the reply, the DSN (failed) and Resend (Permanent) give the same verdict", () => {
    fc.assert(
      fc.property(reply(fc.integer({ min: 500, max: 599 })), (r) => {
        const direct = smtp(r.text);
        const dsn = classifyBounce({ source: "dsn", action: "failed", status: r.status ?? "5.0.0", diagnosticCode: `smtp; ${r.text}` });
        const resend = classifyBounce({ source: "resend", kind: "bounce", bounce: { type: "Permanent", subType: "General", message: r.text } });
        for (const v of [dsn, resend]) expect({ category: v.category, suppress: v.suppress, retry: v.retry }).toEqual({ category: direct.category, suppress: direct.suppress, retry: direct.retry });
      }),
      FC,
    );
  });

  it("a 4yz: the reply and the DSN's delayed are deferrals; a DSN failed or a Resend Transient (the relay gave up) a soft bounce; none suppresses", () => {
    fc.assert(
      fc.property(reply(fc.integer({ min: 400, max: 499 })), (r) => {
        const status = r.status ?? "4.0.0";
        const direct = smtp(r.text);
        const delayed = classifyBounce({ source: "dsn", action: "delayed", status, diagnosticCode: `smtp; ${r.text}` });
        const failed = classifyBounce({ source: "dsn", action: "failed", status, diagnosticCode: `smtp; ${r.text}` });
        const resend = classifyBounce({ source: "resend", kind: "bounce", bounce: { type: "Transient", subType: "General", message: r.text } });
        expect([direct.category, delayed.category]).toEqual(["deferral", "deferral"]);
        expect([failed.category, resend.category]).toEqual(["soft_bounce", "soft_bounce"]);
        expect([direct, delayed, failed, resend].map((v) => v.suppress)).toEqual([false, false, false, false]);
      }),
      FC,
    );
  });

  it("a DSN whose Status is only X.0.0 takes the diagnostic's more specific status", () => {
    expect(classifyBounce({ source: "dsn", action: "failed", status: "5.0.0", diagnosticCode: "smtp; 550 5.1.1 <a@b.example>: Recipient address rejected" })).toMatchObject({
      category: "hard_bounce",
      enhancedStatus: "5.1.1",
    });
    expect(classifyBounce({ source: "dsn", action: "delivered", status: "2.0.0" })).toMatchObject({ category: "delivered", suppress: false, retry: false });
    expect(classifyBounce({ source: "dsn", action: "relayed", status: "2.0.0" }).category).toBe("delivered");
    expect(classifyBounce({ source: "dsn", action: "failed", status: "4.4.7", diagnosticCode: "smtp; 421 4.4.7 message expired" })).toMatchObject({ category: "soft_bounce", suppress: false });
  });

  it("Resend: complaints suppress; without an SMTP status its type and subtype decide, as before", () => {
    expect(classifyBounce({ source: "resend", kind: "complaint" })).toMatchObject({ category: "complaint", suppress: true });
    expect(classifyBounce({ source: "resend", kind: "bounce", bounce: { type: "Permanent" } })).toMatchObject({ category: "hard_bounce", suppress: true });
    expect(classifyBounce({ source: "resend", kind: "bounce", bounce: { type: "Undetermined", subType: "Undetermined" } }).category).toBe("hard_bounce");
    expect(classifyBounce({ source: "resend", kind: "bounce", bounce: { type: "Transient", subType: "MailboxFull", message: "mailbox full" } }).category).toBe("soft_bounce");
    expect(classifyBounce({ source: "resend", kind: "bounce", bounce: { type: "Transient", subType: "ContentRejected" } }).category).toBe("policy");
    expect(classifyBounce({ source: "resend", kind: "bounce", bounce: { type: "Permanent", subType: "Suppressed" } }).category).toBe("hard_bounce");
    // A Permanent bounce whose message is a spam block: the receiver refused the sender, not the address.
    expect(classifyBounce({ source: "resend", kind: "bounce", bounce: { type: "Permanent", subType: "General", message: "smtp; 550 5.7.1 Message rejected as spam" } })).toMatchObject({ category: "policy", suppress: false });
    expect(classifyBounce({ source: "resend", kind: "bounce", bounce: { type: "Permanent", message: "The recipient's server said: 550 5.1.1 no such user" } }).category).toBe("hard_bounce");
  });
});

describe("replies real servers send", () => {
  const table: [string, BounceCategory][] = [
    ["550 5.1.1 <x@example.com>: user unknown", "hard_bounce"],
    ["550-5.1.1 The email account that you tried to reach does not exist. Please try\r\n550-5.1.1 double-checking the recipient's email address for typos or\r\n550 5.1.1 unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser", "hard_bounce"],
    ["550 5.2.1 The email account that you tried to reach is disabled.", "hard_bounce"],
    ["553 5.1.2 We weren't able to find the recipient domain.", "hard_bounce"],
    ["452 4.2.2 The email account that you tried to reach is over quota.", "deferral"],
    ["552 5.2.2 The email account that you tried to reach is over quota.", "soft_bounce"],
    ["452 4.2.2 mailbox full", "deferral"],
    ["421 4.7.0 try later", "deferral"],
    ["421-4.7.0 [192.0.2.1] Our system has detected an unusual rate of\r\n421 4.7.0 unsolicited mail originating from your IP address.", "deferral"],
    ["451 4.7.1 Greylisting in action, please come back later", "deferral"],
    ["550 5.7.1 [192.0.2.1] Our system has detected that this message is likely unsolicited mail.", "policy"],
    ["550 5.7.26 This mail has been blocked because the sender is unauthenticated.", "policy"],
    ["554 5.7.1 blocked as spam", "policy"],
    ["550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup", "hard_bounce"],
    ["550 5.4.1 Recipient address rejected: Access denied. AS(201806281) [AM0PR01MB1234.eurprd01.prod.exchangelabs.com]", "hard_bounce"],
    ["550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302). [DB5EUR03FT012.eop-EUR03.prod.protection.outlook.com]", "hard_bounce"],
    ["550 5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150).", "policy"],
    ["451 4.7.500 Server busy. Please try again later from [192.0.2.1]. (S77714)", "deferral"],
    ["550 5.7.606 Access denied, banned sending IP [192.0.2.1]", "policy"],
    ["554 delivery error: dd This user doesn't have a yahoo.com account (x@yahoo.com) [0] - mta1234.mail.ne1.yahoo.com", "hard_bounce"],
    ["421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints", "deferral"],
    ["553 5.7.1 [BL21] Connections will not be accepted from 192.0.2.1, because the ip is in Spamhaus's list", "policy"],
    ["550 5.1.1 <x@example.org>: Recipient address rejected: User unknown in virtual mailbox table", "hard_bounce"],
    ["554 5.7.1 <x@example.org>: Relay access denied", "policy"],
    ["553 5.1.8 <news@acme.test>: Sender address rejected: Domain not found", "policy"],
    ["450 4.1.1 <x@example.org>: Recipient address rejected: unverified address", "deferral"],
    ["552 5.3.4 Message size exceeds fixed limit", "undeliverable"],
    ["552 Message size exceeds fixed maximum message size", "undeliverable"],
    ["550 No such user here", "hard_bounce"],
    ["554 Transaction failed", "undeliverable"],
    ["550 Message rejected because it looks like spam", "policy"],
    ["550 5.1.0 Address rejected", "hard_bounce"],
    ["550", "undeliverable"],
    ["250 2.0.0 OK 1700000000 a1-20020a05600c000000b00000000000si1234567wmq.1 - gsmtp", "delivered"],
  ];
  for (const [text, category] of table) {
    it(`${JSON.stringify(text.slice(0, 60))} → ${category}`, () => {
      const v = smtp(text);
      expect(v.category).toBe(category);
      expect(v.reason.length).toBeGreaterThan(0);
    });
  }

  it("reads the code, the status and every line's text of a multi-line reply", () => {
    expect(parseSmtpReply("550-5.1.1 first\r\n550 5.1.1 second")).toEqual({ code: 550, enhanced: "5.1.1", text: "first second" });
    expect(parseSmtpReply("smtp; 550 5.01.001 x")).toMatchObject({ code: 550, enhanced: "5.1.1" });
    expect(parseSmtpReply("mailbox full")).toEqual({ code: undefined, enhanced: undefined, text: "mailbox full" });
  });
});

describe("reading RFC 3464 reports", () => {
  it("a Postfix DSN posted whole (message/rfc822): its recipient block and the returned Message-ID", () => {
    const r = readDsn("message/rfc822", postfixDsn({ to: "gone@example.org", messageId: "<abc.pm@acme.test>" }));
    expect(r).toEqual({
      ok: true,
      report: {
        messageIds: ["<abc.pm@acme.test>"],
        reportingMta: "mx.example.net",
        recipients: [
          {
            finalRecipient: "gone@example.org",
            originalRecipient: "gone@example.org",
            action: "failed",
            status: "5.1.1",
            diagnosticCode: "smtp; 550 5.1.1 <gone@example.org>: Recipient address rejected: User unknown in virtual mailbox table",
            remoteMta: "mail.example.org",
          },
        ],
      },
    });
  });

  it("its multipart/report body alone, the boundary in the Content-Type; several recipient blocks", () => {
    const whole = postfixDsn({ to: "a@example.org", messageId: "<m@acme.test>", extra: "Final-Recipient: rfc822; b@example.org\r\nAction: delayed\r\nStatus: 4.2.2" });
    const body = whole.slice(whole.indexOf("\r\n\r\n") + 4);
    const r = readDsn('multipart/report; report-type=delivery-status; boundary="4F1A2B3C.1700000000/mx.example.net"', body);
    expect(r.ok && r.report.recipients.map((x) => [x.finalRecipient, x.action, x.status])).toEqual([
      ["a@example.org", "failed", "5.1.1"],
      ["b@example.org", "delayed", "4.2.2"],
    ]);
  });

  it("refuses what is not a report, naming what is missing", () => {
    expect(readDsn("application/json", "{}")).toMatchObject({ ok: false, status: 415 });
    expect(readDsn("multipart/report", "x")).toMatchObject({ ok: false, status: 400, detail: expect.stringContaining("boundary") });
    expect(readDsn("message/rfc822", "Subject: hi\r\n\r\nhello")).toMatchObject({ ok: false, status: 400, detail: expect.stringContaining("message/delivery-status") });
    const noStatus = postfixDsn({ to: "a@example.org", messageId: "<m@acme.test>" }).replace("Status: 5.1.1", "Status: bounced");
    expect(readDsn("message/rfc822", noStatus)).toMatchObject({ ok: false, status: 422, errors: [{ path: "recipients.0.status" }] });
    const noId = postfixDsn({ to: "a@example.org", messageId: "<m@acme.test>" }).replace("Message-ID: <m@acme.test>\r\n", "");
    expect(readDsn("message/rfc822", noId)).toMatchObject({ ok: false, status: 422, detail: expect.stringContaining("which message") });
  });

  it("never throws on generated bodies, and walks at most a bounded number of parts", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 2_000 }), fc.constantFrom("message/rfc822", "multipart/report; boundary=x", "multipart/report; boundary=\"\""), (text, ct) => {
        const r = readDsn(ct, text);
        expect(typeof r.ok).toBe("boolean");
      }),
      { ...FC, numRuns: 500 },
    );
    const many = `--x\r\n${Array.from({ length: 10_000 }, () => "Content-Type: text/plain\r\n\r\nhi\r\n--x").join("\r\n")}--\r\n`;
    expect(readDsn("multipart/report; boundary=x", many)).toMatchObject({ ok: false, status: 400 });
  });
});
