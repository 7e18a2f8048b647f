/**
 * RFC 3464 delivery status notifications, read from what an inbound MTA posts: the whole DSN
 * message (message/rfc822, whose own Content-Type is multipart/report) or its multipart/report
 * body alone (the boundary then in the request's Content-Type). From it: the per-recipient
 * blocks of the message/delivery-status part (RFC 6533's message/global-delivery-status too),
 * and what names the original message, the Message-ID of the returned message or headers
 * (message/rfc822, text/rfc822-headers) and the Original-Envelope-Id.
 *
 * A small parser of just these parts rather than a general MIME library: it runs on the edge
 * too (mailparser needs Node's streams), and everything it walks is bounded (parts, depth,
 * recipients, header lines), so a hostile body costs at most its size, which the API limits.
 */
import { parseEnhancedStatus } from "./bounce-classifier";

export interface DsnRecipient {
  /** Final-Recipient's address ("rfc822; a@b" → "a@b"). */
  finalRecipient: string;
  originalRecipient?: string;
  /** failed, delayed, delivered, relayed or expanded (lower case). */
  action: string;
  /** The RFC 3463 status, normalised ("5.1.1"). */
  status: string;
  /** "smtp; 550 5.1.1 ...": the remote MTA's reply, when the report carries it. */
  diagnosticCode?: string;
  remoteMta?: string;
}

export interface DsnReport {
  /** What may name the original message, best first: the returned Message-ID, the Original-Envelope-Id. */
  messageIds: string[];
  reportingMta?: string;
  recipients: DsnRecipient[];
}

export type DsnReading =
  | { ok: true; report: DsnReport }
  | { ok: false; status: 400 | 415 | 422; detail: string; errors?: { path: string; message: string }[] };

const ACTIONS = new Set(["failed", "delayed", "delivered", "relayed", "expanded"]);
/** Bounds: a real DSN has a handful of parts and recipients. */
const MAX_PARTS = 50;
const MAX_DEPTH = 5;
const MAX_RECIPIENTS = 100;
const MAX_HEADER_LINES = 1_000;
/** Longest field value kept (Diagnostic-Code can be a long multi-line reply). */
const MAX_VALUE = 2_000;

type Headers = Map<string, string>;

/** Splits a message or part at its first empty line. */
function splitEntity(text: string): { headers: Headers; body: string } {
  const m = /\r?\n\r?\n/.exec(text);
  const head = m ? text.slice(0, m.index) : text;
  const body = m ? text.slice(m.index + m[0].length) : "";
  // An entity that starts with an empty line has no headers at all.
  if (/^\r?\n/.test(text)) return { headers: new Map(), body: text.replace(/^\r?\n/, "") };
  return { headers: parseFields(head), body };
}

/** "Name: value" lines with folding (RFC 5322 2.2.3); names lower-cased, the first of each kept. */
function parseFields(block: string): Headers {
  const fields: Headers = new Map();
  let name: string | undefined;
  let value = "";
  const flush = () => {
    if (name !== undefined && !fields.has(name)) fields.set(name, value.trim().slice(0, MAX_VALUE));
  };
  const lines = block.split(/\r?\n/);
  for (let i = 0; i < lines.length && i < MAX_HEADER_LINES; i++) {
    const line = lines[i]!;
    if (/^[ \t]/.test(line) && name !== undefined) {
      if (value.length < MAX_VALUE) value += ` ${line.trim()}`;
      continue;
    }
    flush();
    const colon = line.indexOf(":");
    name = colon > 0 ? line.slice(0, colon).trim().toLowerCase() : undefined;
    value = colon > 0 ? line.slice(colon + 1) : "";
  }
  flush();
  return fields;
}

interface MediaType {
  type: string;
  params: Map<string, string>;
}

/** A Content-Type value: "multipart/report; report-type=delivery-status; boundary="x"". */
export function parseMediaType(value: string | undefined): MediaType {
  const [head = "", ...rest] = (value ?? "").split(";");
  const params = new Map<string, string>();
  const re = /^\s*([^=\s]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s;]*))/;
  for (const p of rest.join(";").match(/(?:[^;"]|"(?:[^"\\]|\\.)*")+/g) ?? []) {
    const m = re.exec(p);
    if (m) params.set(m[1]!.toLowerCase(), m[2] !== undefined ? m[2].replace(/\\(.)/g, "$1") : m[3]!);
  }
  return { type: head.trim().toLowerCase(), params };
}

/** The parts of a multipart body between its boundary lines (preamble and epilogue dropped). */
function multipartParts(body: string, boundary: string): string[] | undefined {
  const delimiter = `--${boundary}`;
  const lines = body.split(/\r?\n/);
  const parts: string[] = [];
  let current: string[] | undefined;
  let closed = false;
  for (const line of lines) {
    const trimmed = line.trimEnd();
    if (trimmed === delimiter || trimmed === `${delimiter}--`) {
      if (current) parts.push(current.join("\r\n"));
      if (parts.length > MAX_PARTS) return undefined;
      if (trimmed.endsWith("--") && trimmed !== delimiter) {
        closed = true;
        current = undefined;
        break;
      }
      current = [];
      continue;
    }
    current?.push(line);
  }
  // A body cut short of its closing delimiter still has the parts it began.
  if (current && !closed) parts.push(current.join("\r\n"));
  return parts;
}

/** A part's body as its Content-Transfer-Encoding says (base64, quoted-printable, or as is). */
function decodeBody(body: string, encoding: string | undefined): string {
  const cte = (encoding ?? "").trim().toLowerCase();
  if (cte === "base64") {
    try {
      const bytes = Uint8Array.from(atob(body.replace(/[^A-Za-z0-9+/=]/g, "")), (c) => c.charCodeAt(0));
      return new TextDecoder("utf-8").decode(bytes);
    } catch {
      return "";
    }
  }
  if (cte === "quoted-printable") {
    const bytes: number[] = [];
    const raw = body.replace(/=\r?\n/g, "");
    for (let i = 0; i < raw.length; i++) {
      const hex = raw[i] === "=" ? /^[0-9A-Fa-f]{2}/.exec(raw.slice(i + 1, i + 3)) : null;
      if (hex) {
        bytes.push(parseInt(hex[0], 16));
        i += 2;
      } else bytes.push(...new TextEncoder().encode(raw[i]!));
    }
    return new TextDecoder("utf-8").decode(new Uint8Array(bytes));
  }
  return body;
}

interface Found {
  status?: string;
  returned?: Headers;
}

/**
 * Walks an entity for its first multipart/report: the delivery-status part and the returned
 * message's headers among that report's own parts. Outside a report, multipart/* and
 * message/rfc822 parts are entered (a DSN forwarded as an attachment); inside it, the returned
 * message is read for its headers only.
 */
function findReport(headers: Headers, body: string, depth: number, budget: { parts: number }): Found | undefined {
  if (depth > MAX_DEPTH || budget.parts > MAX_PARTS) return undefined;
  const media = parseMediaType(headers.get("content-type") ?? "text/plain");
  if (media.type === "message/rfc822" || media.type === "message/global") {
    const inner = splitEntity(decodeBody(body, headers.get("content-transfer-encoding")));
    return findReport(inner.headers, inner.body, depth + 1, budget);
  }
  if (!media.type.startsWith("multipart/")) return undefined;
  const boundary = media.params.get("boundary");
  if (!boundary) return undefined;
  const parts = multipartParts(body, boundary) ?? [];
  budget.parts += parts.length;
  if (budget.parts > MAX_PARTS) return undefined;
  const entities = parts.map(splitEntity);
  if (media.type === "multipart/report") {
    const found: Found = {};
    for (const part of entities) {
      const type = parseMediaType(part.headers.get("content-type") ?? "text/plain").type;
      const decoded = () => decodeBody(part.body, part.headers.get("content-transfer-encoding"));
      if ((type === "message/delivery-status" || type === "message/global-delivery-status") && found.status === undefined) found.status = decoded();
      else if ((type === "message/rfc822" || type === "message/global" || type === "text/rfc822-headers" || type === "message/global-headers") && !found.returned) {
        found.returned = splitEntity(decoded()).headers;
      }
    }
    if (found.status !== undefined) return found;
  }
  for (const part of entities) {
    const inner = findReport(part.headers, part.body, depth + 1, budget);
    if (inner) return inner;
  }
  return undefined;
}

/** "rfc822; <a@b>" → "a@b" (the address type is dropped: only rfc822 and utf-8 addresses are mail). */
const addressOf = (value: string | undefined): string | undefined => {
  if (!value) return undefined;
  const semi = value.indexOf(";");
  const address = (semi >= 0 ? value.slice(semi + 1) : value).trim().replace(/^<(.*)>$/, "$1").trim();
  return address.length > 0 ? address : undefined;
};

/** xtext (RFC 3461 4): "+2B" stands for "+". */
const decodeXtext = (value: string): string => value.replace(/\+([0-9A-Fa-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));

/** Reads a posted report. `contentType` is the request's; `text` its body. */
export function readDsn(contentType: string | undefined, text: string): DsnReading {
  const media = parseMediaType(contentType);
  let found: Found | undefined;
  if (media.type === "message/rfc822") {
    const entity = splitEntity(text);
    found = findReport(entity.headers, entity.body, 0, { parts: 0 });
  } else if (media.type === "multipart/report") {
    if (!media.params.get("boundary")) return { ok: false, status: 400, detail: "the multipart/report Content-Type names no boundary" };
    found = findReport(new Map([["content-type", contentType!]]), text, 0, { parts: 0 });
  } else {
    return {
      ok: false,
      status: 415,
      detail: "send the report as `Content-Type: message/rfc822` (the whole DSN message) or `multipart/report; report-type=delivery-status; boundary=…` (its body)",
    };
  }
  if (!found?.status) {
    return { ok: false, status: 400, detail: "the body is not an RFC 3464 report: no multipart/report with a message/delivery-status part was found" };
  }

  const groups = found.status
    .split(/\r?\n(?:[ \t]*\r?\n)+/)
    .map((g) => g.trim())
    .filter((g) => g.length > 0)
    .map(parseFields);
  const perMessage = groups[0] ?? new Map<string, string>();
  const blocks = groups.slice(1);
  if (blocks.length === 0) return { ok: false, status: 422, detail: "the delivery-status part has no per-recipient fields (Final-Recipient, Action, Status)" };
  if (blocks.length > MAX_RECIPIENTS) return { ok: false, status: 422, detail: `the report has ${blocks.length} recipients; at most ${MAX_RECIPIENTS} are read` };

  const errors: { path: string; message: string }[] = [];
  const recipients: DsnRecipient[] = [];
  blocks.forEach((f, i) => {
    const finalRecipient = addressOf(f.get("final-recipient"));
    const action = f.get("action")?.trim().toLowerCase().split(/[\s(]/)[0];
    const status = parseEnhancedStatus(f.get("status") ?? "");
    if (!finalRecipient) errors.push({ path: `recipients.${i}.final-recipient`, message: "required: the recipient's address, as `rfc822; a@example.com`" });
    if (!action || !ACTIONS.has(action)) errors.push({ path: `recipients.${i}.action`, message: "required: failed, delayed, delivered, relayed or expanded" });
    if (!status) errors.push({ path: `recipients.${i}.status`, message: "required: an RFC 3463 status such as 5.1.1" });
    if (finalRecipient && action && status) {
      recipients.push({
        finalRecipient,
        originalRecipient: addressOf(f.get("original-recipient")),
        action,
        status,
        diagnosticCode: f.get("diagnostic-code"),
        remoteMta: addressOf(f.get("remote-mta")),
      });
    }
  });
  if (errors.length > 0) return { ok: false, status: 422, detail: "the report's per-recipient fields are incomplete", errors };

  const envelopeId = perMessage.get("original-envelope-id");
  const ids = [found.returned?.get("message-id")?.trim(), envelopeId ? decodeXtext(envelopeId.trim()) : undefined].filter(
    (v): v is string => typeof v === "string" && v.length > 0 && v.length <= 998,
  );
  if (ids.length === 0) {
    return {
      ok: false,
      status: 422,
      detail: "the report does not say which message it is about: include the returned message or its headers (message/rfc822 or text/rfc822-headers, with its Message-ID), or an Original-Envelope-Id",
    };
  }
  return { ok: true, report: { messageIds: [...new Set(ids)], reportingMta: addressOf(perMessage.get("reporting-mta")), recipients } };
}
