/**
 * One verdict on a delivery, whoever reports it: an SMTP relay's synchronous reply (RCPT TO or
 * the end of DATA), a Resend bounce or complaint webhook, a per-recipient block of an RFC 3464
 * delivery status notification. Every path reduces its evidence to the same three things (the
 * basic reply code, the RFC 3463 enhanced status, the receiver's text) and the same rules decide,
 * so a 5.1.1 is a hard bounce whether it arrives as a reply, a webhook or a DSN.
 *
 * The categories follow what mail servers that classify bounces for a living separate (KumoMTA's
 * InvalidRecipient / QuotaIssues / SpamBlock / PolicyRelated / TransientFailure classes, Postal's
 * hard and soft fails, Haraka's RFC 3463 table), folded into what this platform does about each:
 *
 *   category       suppress  retry   what it means, what we do
 *   delivered      no        no      the receiver took it (2.x.x; DSN delivered, relayed, expanded)
 *   deferral       no        yes     4.x.x: not now. A synchronous reply is retried by the job's
 *                                    backoff; a DSN "delayed" means the relay still retries itself
 *   hard_bounce    yes       no      the address is dead (5.1.1, 5.1.2, 5.1.3, 5.1.6, 5.1.10,
 *                                    5.2.1, and the providers' "does not exist" texts): mailing
 *                                    it again costs every tenant's reputation, so it is suppressed
 *                                    for all of them
 *   soft_bounce    no        no      the mailbox exists but cannot take mail for now (5.2.2 full),
 *                                    or a relay gave up on a 4.x.x after its own retries: this
 *                                    message failed, the address stays
 *   policy         no        no      5.7.x and spam, block-list, reputation, authentication texts:
 *                                    the receiver refused the *sender*, not the address. The
 *                                    message fails; suppressing a live address would punish its
 *                                    owner for our reputation (the fix is DKIM, warmup, content)
 *   undeliverable  no        no      any other permanent failure not about the address: the
 *                                    message (too large, 5.3.4 / 5.2.3), routing (5.4.x),
 *                                    protocol (5.5.x), content conversion (5.6.x), a bare 5xx
 *   complaint      yes       no      the recipient marked it as spam (only a provider reports it)
 *
 * Rules, in order (the first that decides wins):
 *  1. The class. A basic code governs (RFC 5321 4.2.1: the client acts on the first digit): every
 *     4yz is a deferral and never suppresses, whatever its enhanced status or text says; without
 *     a basic code, the enhanced status's class (a DSN's Status) does.
 *  2. A specific enhanced status, from the table below (5.7.x always policy).
 *  3. For a vague enhanced status (X.0.0, 5.1.0, 5.2.0, 5.4.1, 5.5.0; servers use these for all
 *     kinds of things: Outlook.com answers an unknown address with "5.5.0 ... mailbox
 *     unavailable", Microsoft 365's edge blocking with "5.4.1 Recipient address rejected"), or
 *     none: the text, policy phrases first (a text saying both "mailbox unavailable" and "spam"
 *     is a block, and suppressing on doubt is the costlier mistake), then quota, then "no such
 *     user" phrases.
 *  4. The vague status's subject (5.1.0 address: hard; 5.2.0 mailbox: soft), then the basic code
 *     (551 user not local and 553 mailbox name not allowed: hard; 552 storage exceeded: soft).
 *  5. Nothing recognisable: undeliverable. Nothing is suppressed on no evidence.
 *
 * Pure: no I/O, the same on Node and the edge.
 */

export type BounceCategory = "delivered" | "deferral" | "hard_bounce" | "soft_bounce" | "policy" | "undeliverable" | "complaint";

export interface BounceClassification {
  category: BounceCategory;
  /** Suppress the address for every tenant (it is dead, or its owner complained). */
  suppress: boolean;
  /**
   * Sending this message again later may succeed. The sender of a synchronous reply retries it;
   * a report (DSN, webhook) that says so is about a relay that still retries on its own.
   */
  retry: boolean;
  /** The RFC 3463 status that decided ("5.1.1"), when one was given. */
  enhancedStatus?: string;
  /** The basic SMTP reply code, when there was one. */
  code?: number;
  /** Why, in words: the rule that decided. */
  reason: string;
}

/** What each path gives the classifier. */
export type BounceEvidence =
  /** A synchronous SMTP reply: "550 5.1.1 <a@b>: user unknown", multi-line replies too. */
  | { source: "smtp"; reply: string; code?: number }
  /** One per-recipient block of an RFC 3464 report. */
  | { source: "dsn"; action: string; status: string; diagnosticCode?: string }
  /** A Resend email.bounced or email.complained event. */
  | { source: "resend"; kind: "bounce" | "complaint"; bounce?: { type?: string; subType?: string; message?: string } };

/** Suppress and retry follow from the category alone: one table, so no path can disagree. */
const FLAGS: Record<BounceCategory, { suppress: boolean; retry: boolean }> = {
  delivered: { suppress: false, retry: false },
  deferral: { suppress: false, retry: true },
  hard_bounce: { suppress: true, retry: false },
  soft_bounce: { suppress: false, retry: false },
  policy: { suppress: false, retry: false },
  undeliverable: { suppress: false, retry: false },
  complaint: { suppress: true, retry: false },
};

const verdict = (category: BounceCategory, reason: string, status: { enhanced?: string; code?: number } = {}): BounceClassification => ({
  category,
  ...FLAGS[category],
  ...(status.enhanced ? { enhancedStatus: status.enhanced } : {}),
  ...(status.code !== undefined ? { code: status.code } : {}),
  reason,
});

/** A reply or status split into its parts. */
export interface ParsedStatus {
  code?: number;
  /** "class.subject.detail", each part without leading zeros. */
  enhanced?: string;
  text: string;
}

/** RFC 3463: class 2, 4 or 5; subject and detail 1-3 digits. */
const ENHANCED = /^([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])/;
const normalEnhanced = (m: RegExpExecArray): string => `${m[1]}.${Number(m[2])}.${Number(m[3])}`;

/** An RFC 3463 status at the start of `text` ("5.1.1", "5.1.1 (bad mailbox)"), normalised. */
export function parseEnhancedStatus(text: string): string | undefined {
  const m = ENHANCED.exec(text.trim());
  return m ? normalEnhanced(m) : undefined;
}

/** Longest reply text looked at: the rules match phrases, a megabyte of text would only cost time. */
const MAX_TEXT = 2_000;

/**
 * An SMTP reply: "550-5.1.1 first line\r\n550 5.1.1 last line", or a DSN's "smtp; 550 ..."
 * diagnostic. The code and enhanced status come from the first line; the text is every line's
 * text, joined.
 */
export function parseSmtpReply(reply: string): ParsedStatus {
  const body = reply.slice(0, MAX_TEXT).replace(/^\s*smtp\s*;\s*/i, "");
  const lines = body.split(/\r?\n/).map((l) => l.trim()).filter((l) => l.length > 0);
  const first = /^([2-5]\d\d)(?:[ -]|$)/.exec(lines[0] ?? "");
  const code = first ? Number(first[1]) : undefined;
  const texts = lines.map((line) => {
    let rest = first ? line.replace(/^[2-5]\d\d[ -]?/, "") : line;
    const enhanced = ENHANCED.exec(rest);
    if (enhanced) rest = rest.slice(enhanced[0].length);
    return rest.trim();
  });
  const afterCode = first ? (lines[0] ?? "").slice(first[0].length).trim() : (lines[0] ?? "");
  const enhanced = ENHANCED.exec(afterCode);
  return { code, enhanced: enhanced ? normalEnhanced(enhanced) : undefined, text: texts.join(" ").trim() };
}

/** Enhanced statuses that say what happened on their own (class 5; 5.7.x is handled as a whole). */
const SPECIFIC: Record<string, [BounceCategory, string]> = {
  "1.1": ["hard_bounce", "bad destination mailbox address: the address does not exist"],
  "1.2": ["hard_bounce", "bad destination system address: the domain does not exist or takes no mail"],
  "1.3": ["hard_bounce", "bad destination mailbox address syntax"],
  "1.4": ["undeliverable", "ambiguous destination mailbox address"],
  "1.5": ["undeliverable", "the destination address was valid, the message still failed"],
  "1.6": ["hard_bounce", "the mailbox has moved and there is no forwarding address"],
  // The sender's address, not the recipient's: fix the From or envelope sender.
  "1.7": ["policy", "the sender's mailbox address syntax was refused"],
  "1.8": ["policy", "the sender's domain was refused"],
  "1.9": ["undeliverable", "relayed to a non-compliant mailer"],
  "1.10": ["hard_bounce", "the recipient's domain has a null MX (RFC 7505): it takes no mail"],
  "2.1": ["hard_bounce", "the mailbox is disabled and takes no mail"],
  "2.2": ["soft_bounce", "the mailbox is full"],
  "2.3": ["undeliverable", "the message is larger than the mailbox accepts"],
  "2.4": ["undeliverable", "a mailing list expansion failed"],
  "3.1": ["undeliverable", "the receiving mail system is full"],
  "3.2": ["undeliverable", "the receiving system does not accept network messages"],
  "3.3": ["undeliverable", "the receiving system cannot handle a feature of the message"],
  "3.4": ["undeliverable", "the message is too big for the receiving system"],
  "3.5": ["undeliverable", "the receiving system is incorrectly configured"],
  "4.2": ["undeliverable", "the connection to the receiver broke"],
  "4.3": ["undeliverable", "a directory (DNS) server failed"],
  "4.4": ["undeliverable", "unable to route: no mail server for the domain"],
  "4.6": ["undeliverable", "a routing loop was detected"],
  "4.7": ["undeliverable", "the delivery time expired"],
  "5.1": ["undeliverable", "the receiver did not recognise a command"],
  "5.2": ["undeliverable", "the receiver refused a command's syntax"],
  "5.3": ["undeliverable", "too many recipients"],
  "5.4": ["undeliverable", "the receiver refused a command's arguments"],
  "5.5": ["undeliverable", "wrong protocol version"],
  "6.1": ["undeliverable", "a media type in the message is not supported"],
  "6.2": ["undeliverable", "the message could not be converted as needed"],
  "6.3": ["undeliverable", "the message needed a conversion that is prohibited"],
  "6.5": ["undeliverable", "a conversion of the message failed"],
};

/** Phrases, by what they say. Policy first: see rule 3. */
const POLICY_TEXT =
  /\b(spam|spamhaus|spamcop|barracuda|unsolicited|junk|black ?list(ed)?|block ?list(ed)?|blocked|blacklisted|reputation|dnsbl|rbl\b|banned|abuse|policy|policies|dmarc|spf\b|dkim|unauthenticated|not authenticated|authentication required|not authorized|relay(ing)? (access )?(denied|not permitted)|sender (address )?(rejected|denied|refused|invalid|unknown|blocked)|sender verify failed|too many complaints|ip .{0,40}(listed|rejected))/i;
const QUOTA_TEXT =
  /(over ?quota|quota (exceeded|full)|exceeded (its|the|their)? ?(storage|quota)|(mailbox|inbox|account) (is )?(full|over)|insufficient (system )?storage|out of storage|storage (allocation )?exceeded|mailbox size limit)/i;
const DEAD_ADDRESS_TEXT =
  /((user|mailbox|recipient|address|account|addressee)( name)? (is )?(unknown|not found|does not exist|doesn't exist|unavailable|disabled|inactive|deactivated|invalid|no longer (exists|active|available)|not (valid|known|local))|no such (user|mailbox|recipient|address|account|person)|unknown (user|recipient|mailbox|address|local part)|invalid (recipient|mailbox|address)|(does not|doesn't) have an? [\w.-]{0,40} ?account|(address|recipient) (address )?rejected|recipientnotfound|recipient not found|account that you tried to reach (does not exist|is disabled)|not our customer|undeliverable address|domain (name )?(not found|does not exist))/i;
const TOO_LARGE_TEXT = /(message|size).{0,20}(too (large|big)|exceeds)/i;

/** Statuses too vague to decide by (rule 3): the text decides first. */
const isVague = (subjectDetail: string): boolean => /^\d+\.0$/.test(subjectDetail) || subjectDetail === "4.1" || subjectDetail === "5.0";

/** What rule decided, so an adapter can put its own source's word in place of the last-resort default. */
type Decided = { result: BounceClassification; by: "class" | "status" | "text" | "default" };

/** The rules (see the module comment) over a reply's or status's parts; `impliedClass` when neither code nor status says. */
function decide(s: ParsedStatus, impliedClass?: 2 | 4 | 5): Decided {
  const status = { enhanced: s.enhanced, code: s.code };
  const enhancedClass = s.enhanced ? Number(s.enhanced[0]) : undefined;
  const cls = s.code !== undefined ? Math.floor(s.code / 100) : (enhancedClass ?? impliedClass);
  const text = s.text.slice(0, MAX_TEXT);
  if (cls === 2) return { result: verdict("delivered", "the receiver accepted the message", status), by: "class" };
  if (cls === 4) {
    const why = QUOTA_TEXT.test(text) || s.enhanced?.endsWith(".2.2")
      ? "the mailbox is full for now"
      : /\.7\.\d+$/.test(s.enhanced ?? "") || POLICY_TEXT.test(text)
        ? "the receiver is throttling or temporarily refusing the sender"
        : "the receiver asked to try again later";
    return { result: verdict("deferral", `temporary failure: ${why}`, status), by: "class" };
  }
  if (cls !== 5) return { result: verdict("undeliverable", "no delivery status could be read from the report", status), by: "default" };

  const subjectDetail = s.enhanced ? s.enhanced.slice(s.enhanced.indexOf(".") + 1) : undefined;
  // Rule 2. 5.7.x is security or policy whatever the detail (5.7.1 not authorised, 5.7.26
  // unauthenticated, Microsoft's 5.7.606 banned IP): the sender's problem, never the address's.
  if (subjectDetail?.startsWith("7.")) return { result: verdict("policy", "refused by the receiver's security or spam policy", status), by: "status" };
  if (subjectDetail && !isVague(subjectDetail)) {
    const known = SPECIFIC[subjectDetail];
    if (known) return { result: verdict(known[0], known[1], status), by: "status" };
  }
  // Rule 3: the text.
  if (POLICY_TEXT.test(text)) return { result: verdict("policy", "the receiver's text names a spam, reputation or authentication block", status), by: "text" };
  if (QUOTA_TEXT.test(text)) return { result: verdict("soft_bounce", "the receiver's text says the mailbox is full", status), by: "text" };
  if (DEAD_ADDRESS_TEXT.test(text)) return { result: verdict("hard_bounce", "the receiver's text says the address does not exist", status), by: "text" };
  if (TOO_LARGE_TEXT.test(text)) return { result: verdict("undeliverable", "the receiver's text says the message is too large", status), by: "text" };
  // Rule 4: the vague status's subject, then the basic code.
  if (subjectDetail === "1.0") return { result: verdict("hard_bounce", "the receiver refused the destination address (5.1.0)", status), by: "status" };
  if (subjectDetail === "2.0") return { result: verdict("soft_bounce", "the receiver refused the mailbox for an unstated reason (5.2.0)", status), by: "status" };
  if (s.code === 551) return { result: verdict("hard_bounce", "551: the user is not local to the receiver", status), by: "status" };
  if (s.code === 553) return { result: verdict("hard_bounce", "553: the mailbox name is not allowed", status), by: "status" };
  if (s.code === 552) return { result: verdict("soft_bounce", "552: the mailbox's storage allocation is exceeded", status), by: "status" };
  if (subjectDetail && !isVague(subjectDetail)) {
    return { result: verdict("undeliverable", `a permanent failure (${s.enhanced}) that is not about the address`, status), by: "status" };
  }
  // Rule 5.
  return { result: verdict("undeliverable", "a permanent failure the receiver did not explain", status), by: "default" };
}

/** Resend's subtypes that say what happened when its message carries no SMTP status (Resend relays SES's). */
const RESEND_SUBTYPES: Record<string, [BounceCategory, string]> = {
  mailboxfull: ["soft_bounce", "Resend: the mailbox is full"],
  messagetoolarge: ["undeliverable", "Resend: the message is too large"],
  contentrejected: ["policy", "Resend: the receiver rejected the content"],
  attachmentrejected: ["policy", "Resend: the receiver rejected an attachment"],
  suppressed: ["hard_bounce", "Resend: the address is on its suppression list (it bounced before)"],
  onaccountsuppressionlist: ["hard_bounce", "Resend: the address is on the account's suppression list"],
};

/** A status anywhere in a provider's message: "smtp; 550 5.1.1 ...", "... said: 550 5.1.1 ...". */
function statusIn(message: string): ParsedStatus | undefined {
  const head = parseSmtpReply(message);
  if (head.code !== undefined || head.enhanced) return head;
  // Further in, only a code with its enhanced status, or an enhanced status alone: a bare
  // three-digit number in prose ("sent to 400 people") is not a reply.
  const at = /\b[245]\d\d[ -][245]\.\d{1,3}\.\d{1,3}\b|\b[245]\.\d{1,3}\.\d{1,3}\b/.exec(message.slice(0, MAX_TEXT));
  return at ? parseSmtpReply(message.slice(at.index)) : undefined;
}

/**
 * A report's verdict is final: the relay that wrote it (Resend, an MTA giving up with "failed")
 * retried already. A 4.x.x it reports as a failure is then a soft bounce, not a deferral.
 */
function finalOf(d: Decided, who: string): BounceClassification {
  if (d.result.category !== "deferral") return d.result;
  return { ...d.result, ...FLAGS.soft_bounce, category: "soft_bounce", reason: `${who} gave up after retrying a temporary failure (${d.result.reason})` };
}

/** The one classifier: every path's evidence, the same rules. */
export function classifyBounce(evidence: BounceEvidence): BounceClassification {
  switch (evidence.source) {
    case "smtp": {
      const parsed = parseSmtpReply(evidence.reply);
      return decide(parsed.code === undefined && evidence.code !== undefined ? { ...parsed, code: evidence.code } : parsed).result;
    }
    case "dsn": {
      const action = evidence.action.trim().toLowerCase();
      const status = parseEnhancedStatus(evidence.status);
      const diagnostic = evidence.diagnosticCode ? parseSmtpReply(evidence.diagnosticCode) : undefined;
      // Status is the reporting MTA's final word (RFC 3464 2.3.4); the diagnostic's own status
      // is more specific when Status is only X.0.0 of the same class. A diagnostic code of
      // another class than Status (a 4yz reply the MTA retried until it expired) does not govern.
      const statusClass = status?.[0];
      const enhanced = status && diagnostic?.enhanced && /\.0\.0$/.test(status) && diagnostic.enhanced[0] === statusClass ? diagnostic.enhanced : status;
      const code = diagnostic?.code !== undefined && String(diagnostic.code)[0] === statusClass ? diagnostic.code : undefined;
      const parsed: ParsedStatus = { code, enhanced, text: diagnostic?.text ?? "" };
      if (action === "delivered" || action === "relayed" || action === "expanded") {
        return verdict("delivered", `the report says the message was ${action}`, { enhanced, code });
      }
      if (action === "delayed") return verdict("deferral", "the reporting MTA has not delivered it yet and keeps trying", { enhanced, code });
      return finalOf(decide(parsed, 5), "the reporting MTA");
    }
    case "resend": {
      if (evidence.kind === "complaint") return verdict("complaint", "the recipient marked the message as spam");
      const type = (evidence.bounce?.type ?? "").toLowerCase();
      const subType = (evidence.bounce?.subType ?? "").toLowerCase().replace(/[^a-z]/g, "");
      const message = evidence.bounce?.message ?? "";
      const transient = /transient|soft/.test(type);
      const inMessage = statusIn(message);
      if (inMessage) return finalOf(decide(inMessage, transient ? 4 : 5), "Resend");
      const bySubType = RESEND_SUBTYPES[subType];
      if (bySubType) return verdict(bySubType[0], bySubType[1]);
      const byText = decide({ text: message }, transient ? 4 : 5);
      if (transient) return finalOf(byText, "Resend");
      // Permanent, Undetermined or no type, and nothing in the message that says otherwise:
      // Resend's own verdict stands (it marks Permanent only bounces it will not retry), as it
      // did before this classifier; mailing a dead address again costs every tenant.
      if (byText.by === "default") return verdict("hard_bounce", `Resend marked the bounce ${evidence.bounce?.type ?? "without a type"}`);
      return byText.result;
    }
  }
}
