/**
 * fast-check arbitraries for hostile requests. A case starts from a plausible request built from
 * the route's schema (so it reaches the handler, not just the validator), using real ids of both
 * tenants, then gets up to a few mutations: a hostile value in place of a leaf (NUL, lone
 * surrogates, invalid UTF-8 bytes, CRLF, 100 KB, numbers past 2^63, NaN, dates in year 0 or
 * 10000, 5,000-deep nesting), an unknown field, another content type, a broken body. Path
 * parameters, query values and headers get the same treatment. Secrets are planted only where a
 * secret belongs (a wrong key, a URL password, a payload field named like a credential), so any
 * output that shows one is a leak, not an echo of an ordinary field.
 */
import { createHmac } from "node:crypto";
import fc from "fast-check";
import type { RawRequest } from "./http";
import type { JsonSchema, Operation, ParamKind } from "./routes";

/** What the generator knows about the running system: both tenants' ids, keys and secrets. */
export interface FuzzContext {
  marker: string;
  adminKey: string;
  resendSecret: string;
  receiverUrl: string;
  /** The dashboard's CSRF token for the admin key (bearer-bound). */
  csrf?: string;
  jobTypes: string[];
  a: TenantIds;
  b: TenantIds;
}

export interface TenantIds {
  tenantId: string;
  key: string;
  listId: string;
  segmentId: string;
  templateId: string;
  campaignId: string;
  endpointId: string;
  importId: string;
  exportId?: string;
  jobIds: string[];
  contactEmails: string[];
  /** The storage URL of the tenant's uploaded CSV. */
  fileUrl: string;
}

export type Principal = "attacker" | "admin" | "none" | "wrong-key" | "malformed-auth" | "victim-key-id";

/** A generated request and what was planted in it. */
export interface FuzzCase {
  op: Operation;
  principal: Principal;
  raw: RawRequest;
  /** Human-readable list of what this case did to the request. */
  mutations: string[];
  /** Path of an unknown field added to a strict object of the body (the request must not be accepted). */
  unknownField?: string;
  /** Where a secret marker was planted, if anywhere. */
  secretAt: string[];
}

// -------------------------------------------------------------------------------------------
// Values that cannot be written as plain JSON values: raw JSON text and raw bytes in a string.
// -------------------------------------------------------------------------------------------

/** Emitted verbatim in the JSON body: `1e400`, 5,000 nested brackets, a duplicate key. */
export class RawJson {
  constructor(readonly text: string, readonly label: string) {}
}
/** A JSON string whose content is these bytes, not UTF-8 of a JS string (invalid UTF-8). */
export class RawBytes {
  constructor(readonly bytes: number[], readonly label: string) {}
}

function encodeJson(value: unknown, out: Buffer[]): void {
  if (value instanceof RawJson) out.push(Buffer.from(value.text, "utf8"));
  else if (value instanceof RawBytes) out.push(Buffer.from('"a'), Buffer.from(value.bytes), Buffer.from('b"'));
  else if (Array.isArray(value)) {
    out.push(Buffer.from("["));
    value.forEach((v, i) => {
      if (i) out.push(Buffer.from(","));
      encodeJson(v, out);
    });
    out.push(Buffer.from("]"));
  } else if (value !== null && typeof value === "object") {
    out.push(Buffer.from("{"));
    Object.entries(value).forEach(([k, v], i) => {
      if (i) out.push(Buffer.from(","));
      out.push(Buffer.from(`${JSON.stringify(k)}:`, "utf8"));
      encodeJson(v, out);
    });
    out.push(Buffer.from("}"));
  } else if (typeof value === "number" && !Number.isFinite(value)) out.push(Buffer.from(String(value)));
  else out.push(Buffer.from(JSON.stringify(value) ?? "null", "utf8"));
}

export const toJsonBytes = (value: unknown): Buffer => {
  const out: Buffer[] = [];
  encodeJson(value, out);
  return Buffer.concat(out);
};

// -------------------------------------------------------------------------------------------
// Hostile values.
// -------------------------------------------------------------------------------------------

const HUGE = "A".repeat(100_000);
const DEEP = 5_000;

const hostileStrings: [string, string][] = [
  ["NUL", "\u0000"],
  ["NUL inside", "ab\u0000cd"],
  ["lone high surrogate", "\ud800"],
  ["lone low surrogate", "x\udfffy"],
  ["reversed surrogates", "\udc00\ud800"],
  ["CRLF", "a\r\nX-Injected: 1\r\n\r\nbody"],
  ["100 KB", HUGE],
  ["unicode", "Zoë 😀 𝔘𝔫𝔦 ‮RTL‬ \u200b e\u0301"],
  ["empty", ""],
  ["whitespace", " \t "],
  ["percent NUL", "%00"],
  ["traversal", "../../../../etc/passwd"],
  ["sql", "' OR 1=1 --"],
  ["html", "<script>alert(1)</script>"],
  ["2^63", "9223372036854775808"],
  ["-2^63-1", "-9223372036854775809"],
  ["negative", "-1"],
  ["NaN", "NaN"],
  ["Infinity", "Infinity"],
  ["1e309", "1e309"],
  ["float", "1.5"],
  ["year 0000", "0000-01-01T00:00:00Z"],
  ["year 10000", "10000-01-01T00:00:00Z"],
  ["year 9999 end", "9999-12-31T23:59:59.999Z"],
  ["year -1", "-000001-01-01T00:00:00Z"],
  ["bad date", "2024-02-30T25:61:61Z"],
  ["garbage date", "yesterday at noon"],
  ["json text", '{"a":1}'],
  ["BOM", "\ufeffx"],
];

const hostileNumbers: [string, unknown][] = [
  ["-1", -1],
  ["0", 0],
  ["2^63", 2 ** 63],
  ["2^64", 2 ** 64],
  ["-2^63", -(2 ** 63)],
  ["2^53+2", 2 ** 53 + 2],
  ["float for int", 1.5],
  ["1e308", 1e308],
  ["-0", -0],
  ["raw 1e400", new RawJson("1e400", "1e400")],
  ["raw -1e400", new RawJson("-1e400", "-1e400")],
  ["raw 2^63 digits", new RawJson("9223372036854775808", "9223372036854775808")],
  ["raw 30 digits", new RawJson("123456789012345678901234567890", "30 digits")],
  ["raw 1.0", new RawJson("1.0", "1.0")],
  ["raw 1e2", new RawJson("1e2", "1e2")],
];

const deepArray = new RawJson(`${"[".repeat(DEEP)}1${"]".repeat(DEEP)}`, `array nested ${DEEP} deep`);
const deepObject = new RawJson(`${'{"a":'.repeat(DEEP)}1${"}".repeat(DEEP)}`, `object nested ${DEEP} deep`);

const hostileOthers: [string, unknown][] = [
  ["null", null],
  ["true", true],
  ["empty array", []],
  ["empty object", {}],
  ["array of strings", ["a", "b"]],
  ["deep array", deepArray],
  ["deep object", deepObject],
  ["invalid UTF-8 0xff", new RawBytes([0xff, 0xfe], "bytes ff fe")],
  ["overlong NUL", new RawBytes([0xc0, 0x80], "overlong NUL c0 80")],
  ["CESU surrogate", new RawBytes([0xed, 0xa0, 0x80], "encoded surrogate ed a0 80")],
  ["truncated UTF-8", new RawBytes([0xe2, 0x82], "truncated e2 82")],
  ["raw NUL byte", new RawBytes([0x00], "raw NUL byte in a string")],
];

/** Any hostile JSON value, labelled. */
export const hostileValue: fc.Arbitrary<[string, unknown]> = fc.oneof(
  { arbitrary: fc.constantFrom(...hostileStrings), weight: 5 },
  { arbitrary: fc.constantFrom(...hostileNumbers), weight: 2 },
  { arbitrary: fc.constantFrom(...hostileOthers), weight: 2 },
);

/** Hostile text for a path segment or query value: percent-encoded, invalid UTF-8 included. */
const hostileUrlText: fc.Arbitrary<[string, string]> = fc.oneof(
  fc.constantFrom<[string, string]>(
    ["%00", "%00"],
    ["%ff", "%ff"],
    ["overlong NUL", "%c0%80"],
    ["encoded surrogate", "%ed%a0%80"],
    ["truncated UTF-8", "%e2%82"],
    ["CRLF", "a%0d%0aX-Injected:%201"],
    ["2^63", "9223372036854775808"],
    ["2^64", "18446744073709551616"],
    ["-1", "-1"],
    ["float", "1.5"],
    ["exponent", "1e3"],
    ["NaN", "NaN"],
    ["Infinity", "Infinity"],
    ["10 KB", "9".repeat(10_000)],
    ["dot-dot", "%2e%2e"],
    ["encoded slash", "a%2fb"],
    ["unicode", safeEncodeURIComponent("Zoë😀")],
    ["empty", ""],
    ["year 0000", "0000-01-01T00%3A00%3A00Z"],
    ["year 10000", "10000-01-01T00%3A00%3A00Z"],
    ["bad percent", "%zz"],
    ["space", "%20"],
  ),
  fc.string({ maxLength: 12 }).map((s): [string, string] => ["random", safeEncodeURIComponent(s)]),
);

// -------------------------------------------------------------------------------------------
// Plausible values from a schema.
// -------------------------------------------------------------------------------------------

/** Names of fields that hold a credential: a redacted listing must never show their value. */
export const SECRET_FIELD_NAMES = ["password", "passwd", "pwd", "pass", "secret", "token", "api_key", "authorization", "auth", "credentials", "private_key", "cookie", "session", "bearer"];

interface Gen {
  ctx: FuzzContext;
  /** Admin requests never name the victim: an admin may act for it, and the victim's rows must stay untouched. */
  admin: boolean;
}

const oneOf = <T>(...xs: T[]) => fc.constantFrom(...xs);
/** The arbitrary's value with this probability (percent), else null. */
const sometimes = <T>(arb: fc.Arbitrary<T>, percent: number): fc.Arbitrary<T | null> =>
  fc.oneof({ arbitrary: fc.constant(null), weight: 100 - percent }, { arbitrary: arb, weight: percent });

function tenantPool(g: Gen): fc.Arbitrary<string> {
  return g.admin ? oneOf(g.ctx.a.tenantId, "fuzz_nobody") : oneOf(g.ctx.a.tenantId, g.ctx.a.tenantId, g.ctx.a.tenantId, g.ctx.a.tenantId, g.ctx.b.tenantId, "fuzz_nobody");
}

/** Real ids of both tenants (the attacker's own mostly, the victim's often) and some that exist nowhere. */
export function idPool(g: Gen, kind: ParamKind | "event" | "file_url" | "url" | "tenant"): fc.Arbitrary<string> {
  const { a, b } = g.ctx;
  switch (kind) {
    case "job":
      return oneOf(...a.jobIds, ...b.jobIds, "0", "1", "999999999999999999");
    case "list":
      return oneOf(a.listId, a.listId, b.listId, "lst_missing0000000");
    case "template":
      return oneOf(a.templateId, a.templateId, b.templateId, "sys_export_ready", "sys_missing", "tpl_missing000000");
    case "campaign":
      return oneOf(a.campaignId, a.campaignId, b.campaignId, "camp_missing00000");
    case "segment":
      return oneOf(a.segmentId, b.segmentId, "seg_missing000000");
    case "endpoint":
      return oneOf(a.endpointId, a.endpointId, b.endpointId, "whe_missing0000000");
    case "import":
      return oneOf(a.importId, b.importId, ...a.jobIds, "999999");
    case "export":
      return oneOf(...(a.exportId ? [a.exportId] : []), b.importId, "999999");
    case "email":
      return oneOf(...a.contactEmails, ...b.contactEmails, "nobody@example.com");
    case "type":
      return oneOf(...g.ctx.jobTypes, "no.such.type");
    case "token":
      return unsubscribeToken(g);
    case "file":
      return fc.oneof(fc.string({ maxLength: 40 }).map(encodeURIComponent), oneOf("x.y.z", "eyJhIjoxfQ.sig"));
    case "event":
      return oneOf("evt_missing", "00000000-0000-0000-0000-000000000000");
    case "file_url":
      return fileUrl(g);
    case "url":
      return webhookUrl(g);
    case "tenant":
      return tenantPool(g);
  }
}

const b64url = (s: string) => Buffer.from(s).toString("base64url");

/** Unsubscribe tokens as an attacker could make them: readable claims naming the victim, with forged or extra parts. */
function unsubscribeToken(g: Gen): fc.Arbitrary<string> {
  const { b, a } = g.ctx;
  const claim = b64url(JSON.stringify([b.tenantId, b.contactEmails[0], b.campaignId]));
  const own = b64url(JSON.stringify([a.tenantId, a.contactEmails[0], a.campaignId]));
  return fc.oneof(
    oneOf(`${claim}.${b64url("0123456789abcdef")}`, `${claim}.${b64url("0123456789abcdef")}.extra`, `${own}..`, `${claim}`, "..", "a.b.c.d"),
    fc.string({ maxLength: 30 }).map(encodeURIComponent),
  );
}

function fileUrl(g: Gen): fc.Arbitrary<string> {
  const { a, b, marker } = g.ctx;
  return oneOf(
    a.fileUrl,
    a.fileUrl,
    b.fileUrl,
    `https://fuzzuser:${marker}@files.example.com/contacts.csv`,
    `https://files.example.com/contacts.csv?X-Amz-Signature=${marker}&X-Amz-Credential=AKIA`,
    `https://files.example.com/contacts.csv?token=${marker}`,
    "https://10.0.0.1/contacts.csv",
    "https://169.254.169.254/latest/meta-data/",
    "http://127.0.0.1:1/contacts.csv",
    "https://[::ffff:127.0.0.1]/c.csv",
    "file:///etc/passwd",
    "s3://other-bucket/contacts.csv",
    "not a url",
  );
}

function webhookUrl(g: Gen): fc.Arbitrary<string> {
  return oneOf(
    `${g.ctx.receiverUrl}/hook/attacker-new`,
    `${g.ctx.receiverUrl}/hook/attacker-new`,
    `http://fuzzuser:${g.ctx.marker}@127.0.0.1:${new URL(g.ctx.receiverUrl).port}/hook/creds`,
    "http://10.0.0.1/hook",
    "http://169.254.169.254/",
    "ftp://example.com/x",
    "javascript:alert(1)",
  );
}

function dateString(): fc.Arbitrary<string> {
  return fc.oneof(
    fc.integer({ min: -86_400_000, max: 7 * 86_400_000 }).map((d) => new Date(Date.now() + d).toISOString()),
    oneOf("2030-01-01T00:00:00Z", "2000-01-01T00:00:00+02:00"),
  );
}

const plainText = (min: number, max: number) => fc.string({ minLength: Math.max(min, 1), maxLength: Math.max(Math.min(max, 24), Math.max(min, 1)), unit: "grapheme-ascii" });

/** Secret-bearing payload entries: a credential under a credential's name, or our key formats under ordinary names. */
function secretEntry(g: Gen): fc.Arbitrary<[string, string]> {
  const m = g.ctx.marker;
  return fc.oneof(
    fc.constantFrom(...SECRET_FIELD_NAMES).map((k): [string, string] => [k, m]),
    fc.constantFrom<[string, string]>(["note", `whsec_${m}`], ["ref", `pmk_AAAAAAAAAAAA_${m}`], ["link", `https://u:${m}@example.com/`]),
  );
}

function fromSchema(g: Gen, schema: JsonSchema | undefined, name: string, depth: number, secrets: string[]): fc.Arbitrary<unknown> {
  if (!schema || typeof schema !== "object" || depth > 6) return fc.constant("x");
  if (schema.const !== undefined) return fc.constant(schema.const);
  if (Array.isArray(schema.enum)) return fc.constantFrom(...(schema.enum as unknown[]));
  const alts = (schema.oneOf ?? schema.anyOf) as JsonSchema[] | undefined;
  if (alts?.length) return fc.oneof(...alts.map((s) => fromSchema(g, s, name, depth + 1, secrets)));
  if (schema.allOf) return fromSchema(g, { ...schema, allOf: undefined, ...Object.assign({}, ...(schema.allOf as JsonSchema[])) }, name, depth, secrets);
  const type = schema.type;
  if (Array.isArray(type)) return fc.oneof(...type.map((t: string) => fromSchema(g, { ...schema, type: t }, name, depth, secrets)));
  switch (type) {
    case "string":
      return stringFor(g, schema, name);
    case "integer":
      return fc.integer({ min: Math.max(schema.minimum ?? 0, -1_000_000), max: Math.min(schema.maximum ?? 1_000, 1_000_000) });
    case "number":
      return fc.double({ min: Math.max(schema.minimum ?? 0, -1e6), max: Math.min(schema.maximum ?? 1_000, 1e6), noNaN: true });
    case "boolean":
      return fc.boolean();
    case "null":
      return fc.constant(null);
    case "array": {
      const min = schema.minItems ?? 0;
      const max = Math.min(schema.maxItems ?? 3, Math.max(min, 3));
      return fc.array(fromSchema(g, schema.items, name, depth + 1, secrets), { minLength: min, maxLength: max });
    }
    case "object":
    case undefined: {
      const props = schema.properties as Record<string, JsonSchema> | undefined;
      if (!props) {
        // A free-form map (variables, data, attributes, mapping): plausible entries, sometimes a planted secret.
        if (type === undefined && !schema.additionalProperties) return fc.constant({});
        const valueSchema = typeof schema.additionalProperties === "object" ? schema.additionalProperties : { type: "string" };
        const entries = fc.dictionary(plainText(1, 12), fromSchema(g, valueSchema, `${name}.*`, depth + 1, secrets), { maxKeys: 3 });
        const allowsString = !valueSchema.type || valueSchema.type === "string" || (Array.isArray(valueSchema.type) && valueSchema.type.includes("string"));
        if (!allowsString) return entries;
        if (name === "mapping") return fc.oneof(fc.constant({ email: "email" }), fc.constant({ col_0: "email", col_1: "name" }), entries);
        // Secrets go only into job payloads (variables, data), which listings redact; a contact's
        // attributes are the tenant's own data and are shown back to it as stored.
        if (name !== "variables" && name !== "data") return entries;
        return fc.tuple(entries, sometimes(secretEntry(g), 30)).map(([e, s]) => {
          if (!s) return e;
          secrets.push(`${name}.${s[0]}`);
          return { ...e, [s[0]]: s[1] };
        });
      }
      const required = new Set((schema.required as string[] | undefined) ?? []);
      const model: Record<string, fc.Arbitrary<unknown>> = {};
      for (const [key, sub] of Object.entries(props)) model[key] = fromSchema(g, sub, key, depth + 1, secrets);
      return fc.record(model, { requiredKeys: [...required].filter((k) => k in model) });
    }
    default:
      return fc.constant(null);
  }
}

function stringFor(g: Gen, schema: JsonSchema, name: string): fc.Arbitrary<string> {
  const key = name.replace(/^.*\./, "");
  switch (key) {
    case "list_id":
      return idPool(g, "list");
    case "template_id":
      return idPool(g, "template");
    case "campaign_id":
      return idPool(g, "campaign");
    case "segment_id":
      return idPool(g, "segment");
    case "endpoint_id":
      return idPool(g, "endpoint");
    case "event_id":
      return idPool(g, "event");
    case "file_url":
      return idPool(g, "file_url");
    case "url":
      return idPool(g, "url");
    case "tenant_id":
    case "tenant":
      return idPool(g, "tenant");
    case "recipient":
    case "email":
    case "notify_email":
      return fc.oneof(idPool(g, "email"), fc.emailAddress());
    case "run_at":
    case "at":
    case "created_at":
      return dateString();
    case "type":
      if (!schema.enum) return idPool(g, "type");
      break;
    case "key":
      return oneOf(g.ctx.adminKey, g.ctx.a.key, `pmk_AAAAAAAAAAAA_${g.ctx.marker}`, "");
    case "csrf_token":
      return oneOf(g.ctx.csrf ?? "none", g.ctx.csrf ?? "none", "forged");
  }
  if (schema.format === "email") return fc.emailAddress();
  if (schema.format === "date-time") return dateString();
  if (schema.format === "uri" || schema.format === "url") return idPool(g, "url");
  if (typeof schema.pattern === "string" && /\\d\{1,18\}/.test(schema.pattern)) return idPool(g, "job");
  return plainText(schema.minLength ?? 1, schema.maxLength ?? 24).map((s) => (typeof schema.pattern === "string" ? s.replace(/[^A-Za-z0-9_.:-]/g, "x") : s));
}

// -------------------------------------------------------------------------------------------
// Mutations of a body value.
// -------------------------------------------------------------------------------------------

type Mutation =
  | { kind: "leaf"; pick: number; value: [string, unknown] }
  | { kind: "unknown"; pick: number; field: string; value: unknown }
  | { kind: "nest"; pick: number; deep: RawJson };

/** Every [container, key] inside the value (for leaf replacement), plus the path as text. */
function slots(value: unknown, path = ""): { parent: any; key: string | number; path: string; strictObject: boolean }[] {
  const out: { parent: any; key: string | number; path: string; strictObject: boolean }[] = [];
  if (Array.isArray(value)) value.forEach((v, i) => (out.push({ parent: value, key: i, path: `${path}${i}`, strictObject: false }), out.push(...slots(v, `${path}${i}.`))));
  else if (value && typeof value === "object" && !(value instanceof RawJson) && !(value instanceof RawBytes)) {
    for (const [k, v] of Object.entries(value)) {
      out.push({ parent: value, key: k, path: `${path}${k}`, strictObject: false });
      out.push(...slots(v, `${path}${k}.`));
    }
  }
  return out;
}

/** Objects of the value whose schema lists its properties (strict: unknown fields must be refused), with their paths. */
function strictObjects(value: unknown, schema: JsonSchema | undefined, path = ""): { obj: Record<string, unknown>; path: string }[] {
  if (!schema || !value || typeof value !== "object" || value instanceof RawJson || value instanceof RawBytes) return [];
  const alts = (schema.oneOf ?? schema.anyOf) as JsonSchema[] | undefined;
  if (alts) {
    // The alternative this value was made from: the one whose const/enum fields all match.
    const match = alts.find((s) =>
      Object.entries<JsonSchema>(s.properties ?? {}).every(([k, p]) => p.const === undefined || (value as Record<string, unknown>)[k] === p.const),
    );
    return match ? strictObjects(value, match, path) : [];
  }
  if (Array.isArray(value)) return value.flatMap((v, i) => strictObjects(v, schema.items, `${path}${i}.`));
  const props = schema.properties as Record<string, JsonSchema> | undefined;
  if (!props || typeof schema.additionalProperties === "object" || schema.additionalProperties === true) return [];
  const out = [{ obj: value as Record<string, unknown>, path }];
  for (const [k, v] of Object.entries(value)) out.push(...strictObjects(v, props[k], `${path}${k}.`));
  return out;
}

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant("leaf" as const), pick: fc.nat(), value: hostileValue }), weight: 6 },
  {
    arbitrary: fc.record({
      kind: fc.constant("unknown" as const),
      pick: fc.nat(),
      field: fc.constantFrom("tenantId", "is_admin", "admin", "__proto__x", "constructor_", "extra", "tenant", "id", "state"),
      value: fc.oneof(fc.constant<unknown>("zz"), fc.constant<unknown>(true), fc.constant<unknown>(1)),
    }),
    weight: 2,
  },
  { arbitrary: fc.record({ kind: fc.constant("nest" as const), pick: fc.nat(), deep: fc.constantFrom(deepArray, deepObject) }), weight: 1 },
);

// -------------------------------------------------------------------------------------------
// Whole requests.
// -------------------------------------------------------------------------------------------

const principalArb = (op: Operation): fc.Arbitrary<Principal> => {
  const usual: Principal = op.auth === "admin" || op.auth === "dashboard" ? "admin" : op.auth === "none" ? "none" : "attacker";
  return fc.oneof(
    { arbitrary: fc.constant(usual), weight: 14 },
    { arbitrary: fc.constantFrom<Principal>("attacker", "admin"), weight: 3 },
    { arbitrary: fc.constant<Principal>("none"), weight: 1 },
    { arbitrary: fc.constant<Principal>("wrong-key"), weight: 1 },
    { arbitrary: fc.constant<Principal>("malformed-auth"), weight: 1 },
  );
};

const contentTypeArb = (op: Operation): fc.Arbitrary<string | undefined> =>
  fc.oneof(
    { arbitrary: fc.constantFrom(...(op.body?.contentTypes ?? ["application/json"])), weight: 12 },
    {
      arbitrary: fc.constantFrom<string | undefined>(
        undefined,
        "text/plain",
        "application/json; charset=latin1",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/vnd.api+json",
        "APPLICATION/JSON",
        "application/json\u00ff",
        "text/csv",
        "",
      ),
      weight: 2,
    },
  );

/** Breaks the body's syntax instead of its values. */
const brokenBodyArb: fc.Arbitrary<[string, Buffer] | null> = sometimes(
  fc.constantFrom<[string, Buffer]>(
    ["truncated JSON", Buffer.from('{"type":"email.send","payload":{')],
    ["trailing garbage", Buffer.from('{"a":1} x')],
    ["empty body", Buffer.alloc(0)],
    ["whitespace body", Buffer.from("  \n ")],
    ["JSON null", Buffer.from("null")],
    ["JSON number", Buffer.from("12")],
    ["JSON string", Buffer.from('"text"')],
    ["JSON array", Buffer.from("[1,2]")],
    ["NaN literal", Buffer.from('{"limit":NaN}')],
    ["duplicate keys", Buffer.from('{"name":"a","name":"b"}')],
    ["__proto__", Buffer.from('{"__proto__":{"admin":true},"name":"x"}')],
    ["BOM then JSON", Buffer.from([0xef, 0xbb, 0xbf, ...Buffer.from('{"name":"x"}')])],
    ["UTF-16 body", Buffer.from('{"name":"x"}', "utf16le")],
    ["invalid UTF-8 body", Buffer.from([0x7b, 0x22, 0x6e, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d])],
    ["deep array body", Buffer.from(deepArray.text)],
    ["deep object body", Buffer.from(deepObject.text)],
    ["1.1 MB body", Buffer.from(`{"name":"${"x".repeat(1_100_000)}"}`)],
  ),
  8,
);

/** Substitutes path parameters; each is a real id, a hostile text, or missing. */
function pathArb(g: Gen, op: Operation): fc.Arbitrary<{ path: string; notes: string[] }> {
  const names = [...op.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);
  const values = names.map((n) => {
    const prm = op.params.find((x) => x.in === "path" && x.name === n);
    const real = prm?.kind ? idPool(g, prm.kind).map((v) => [null, safeEncodeURIComponent(v)] as [string | null, string]) : fc.constant<[string | null, string]>([null, "x"]);
    return fc.oneof({ arbitrary: real, weight: 5 }, { arbitrary: hostileUrlText.map(([l, v]) => [`path ${n}: ${l}`, v] as [string | null, string]), weight: 2 });
  });
  return fc.tuple(...values).map((vs) => {
    let path = op.path;
    const notes: string[] = [];
    names.forEach((n, i) => {
      const [note, v] = vs[i]!;
      path = path.replace(`{${n}}`, v);
      if (note) notes.push(note);
    });
    return { path, notes };
  });
}

function queryArb(g: Gen, op: Operation, principal: Principal): fc.Arbitrary<{ pairs: [string, string][]; notes: string[] }> {
  const qs = op.params.filter((x) => x.in === "query");
  const known = qs.map((prm) =>
    sometimes(
      fc.oneof(
        { arbitrary: fromSchema(g, prm.schema, prm.name, 0, []).map((v) => [null, safeEncodeURIComponent(typeof v === "string" ? v : JSON.stringify(v))] as [string | null, string]), weight: 4 },
        { arbitrary: hostileUrlText.map(([l, v]) => [`query ${prm.name}: ${l}`, v] as [string | null, string]), weight: 2 },
      ),
      50,
    ).map((v) => (v ? ([prm.name, v] as const) : null)),
  );
  // Admin keys act for a tenant named in the query: the attacker's mostly.
  const tenant = fc.constant(principal === "admin" && qs.some((x) => x.name === "tenant_id") ? g.ctx.a.tenantId : null);
  const extra = sometimes(fc.tuple(fc.constantFrom("tenant_id", "cursor", "limit", "unknown_param", "state", "tenant_id[]"), hostileUrlText), 10);
  return fc.tuple(fc.tuple(...known), tenant, extra).map(([ks, t, x]) => {
    const pairs: [string, string][] = [];
    const notes: string[] = [];
    if (t) pairs.push(["tenant_id", safeEncodeURIComponent(t)]);
    for (const k of ks) {
      if (!k) continue;
      const [name, [note, v]] = k;
      if (name === "tenant_id" && t) continue;
      pairs.push([name, v]);
      if (note) notes.push(note);
    }
    if (x) {
      pairs.push([x[0], x[1][1]]);
      notes.push(`extra query ${x[0]}: ${x[1][0]}`);
    }
    return { pairs, notes };
  });
}

/** Header values as latin1 bytes: what a client can put on the wire (no CR, LF or NUL: the HTTP parser refuses those itself). */
const headerText: fc.Arbitrary<[string, string]> = fc.constantFrom<[string, string]>(
  ["ascii", "fuzz-key-1"],
  ["obs-text bytes", "\u00ff\u00fe\u00c0\u0080"],
  ["encoded surrogate bytes", "\u00ed\u00a0\u0080"],
  ["4 KB", "k".repeat(4_096)],
  ["empty", ""],
  ["spaces", "   "],
  ["2^63", "9223372036854775808"],
  ["quotes", "\"'`;--"],
  ["tab", "a\tb"],
);

function signResend(secret: string, id: string, timestamp: string, body: Buffer): string {
  const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
  const mac = createHmac("sha256", key).update(`${id}.${timestamp}.`).update(body).digest("base64");
  return `v1,${mac}`;
}

function authHeaders(g: Gen, principal: Principal, op: Operation): [string, string][] {
  const { ctx } = g;
  switch (principal) {
    case "attacker":
      return [["authorization", `Bearer ${ctx.a.key}`]];
    case "admin":
      return [["authorization", `Bearer ${ctx.adminKey}`]];
    case "none":
      return [];
    case "wrong-key":
      // A key of the right shape whose secret is the marker: it must not show anywhere.
      return [["authorization", `Bearer ${ctx.a.key.slice(0, 17)}${ctx.marker}AAAAAAAA`]];
    case "malformed-auth":
      return [["authorization", op.path.startsWith("/dashboard") ? `Basic ${Buffer.from(`admin:${ctx.marker}`).toString("base64")}` : `Bearer ${ctx.marker} extra`]];
    case "victim-key-id":
      return [["authorization", `Bearer ${ctx.b.key.slice(0, 17)}${ctx.marker}`]];
  }
}

/** Form bodies for the dashboard: the same values, urlencoded. */
const formBytes = (value: unknown): Buffer => {
  if (!value || typeof value !== "object" || Array.isArray(value)) return Buffer.from(String(value));
  const parts = Object.entries(value).map(([k, v]) => {
    const text = v instanceof RawJson ? v.text : v instanceof RawBytes ? Buffer.from(v.bytes).toString("latin1") : typeof v === "string" ? v : JSON.stringify(v);
    return `${safeEncodeURIComponent(k)}=${v instanceof RawBytes ? v.bytes.map((b) => `%${b.toString(16).padStart(2, "0")}`).join("") : safeEncodeURIComponent(text ?? "")}`;
  });
  return Buffer.from(parts.join("&"));
};

/** encodeURIComponent, except that a lone surrogate (which it refuses) goes out as the bytes of an encoded surrogate. */
function safeEncodeURIComponent(s: string): string {
  try {
    return encodeURIComponent(s);
  } catch {
    return [...s].map((ch) => (/[\ud800-\udfff]/.test(ch) ? "%ed%a0%80" : encodeURIComponent(ch))).join("");
  }
}

/** One fuzz case for one operation. */
export function caseArb(ctx: FuzzContext, op: Operation): fc.Arbitrary<FuzzCase> {
  return principalArb(op).chain((principal) => {
    const g: Gen = { ctx, admin: principal === "admin" };
    const secrets: string[] = [];
    const bodyValue = op.body ? fromSchema(g, op.body.schema, "", 0, secrets) : fc.constant(undefined);
    return fc
      .record({
        path: pathArb(g, op),
        query: queryArb(g, op, principal),
        value: bodyValue,
        sendBody: op.body && !op.body.required ? fc.boolean() : fc.constant(op.body !== undefined),
        mutations: fc.oneof({ arbitrary: fc.constant<Mutation[]>([]), weight: 2 }, { arbitrary: fc.array(mutationArb, { minLength: 1, maxLength: 2 }), weight: 3 }),
        contentType: contentTypeArb(op),
        broken: brokenBodyArb,
        idempotency: sometimes(headerText, 20),
        otherHeader: sometimes(fc.tuple(fc.constantFrom("x-tenant-id", "x-forwarded-for", "cookie", "accept", "x-forwarded-host"), headerText), 10),
        resend: fc.constantFrom("valid", "valid", "valid", "unsigned", "bad-signature", "old", "bad-id"),
      })
      .map((r): FuzzCase => {
        const mutations = [...r.path.notes, ...r.query.notes];
        let unknownField: string | undefined;
        const secretAt = [...secrets];
        if (principal === "wrong-key" || principal === "malformed-auth" || principal === "victim-key-id") secretAt.push("authorization header");
        // Clone: fast-check may hand the same object to several cases.
        let value: unknown = r.value === undefined ? undefined : structuredCloneKeepingRaw(r.value);
        if (op.body && value !== undefined && op.body.schema) {
          if (JSON.stringify(value, rawReplacer).includes(ctx.marker)) secretAt.push("body");
          for (const m of r.mutations) {
            if (m.kind === "leaf") {
              // A copy: the hostile values are shared constants ("array of strings"), and a later
              // mutation of this case writing inside one would change it for every case after,
              // or put it inside itself (a cycle that encodeJson cannot end).
              const hostile = structuredCloneKeepingRaw(m.value[1]);
              const s = slots(value);
              if (s.length === 0) value = hostile;
              else {
                const slot = s[m.pick % s.length]!;
                slot.parent[slot.key] = hostile;
                mutations.push(`${slot.path || "body"} = ${m.value[0]}`);
                continue;
              }
              mutations.push(`body = ${m.value[0]}`);
            } else if (m.kind === "unknown") {
              const objs = strictObjects(value, op.body.schema);
              if (objs.length === 0 || op.form) continue;
              const target = objs[m.pick % objs.length]!;
              if (m.field in target.obj) continue;
              target.obj[m.field] = m.value;
              unknownField = `${target.path}${m.field}`;
              mutations.push(`unknown field ${unknownField}`);
            } else {
              const s = slots(value);
              if (s.length === 0) continue;
              const slot = s[m.pick % s.length]!;
              slot.parent[slot.key] = m.deep;
              mutations.push(`${slot.path} = ${m.deep.label}`);
            }
          }
        }
        const headers: [string, string][] = authHeaders(g, principal, op);
        let body: Buffer | undefined;
        if (op.body && r.sendBody) {
          body = op.form ? formBytes(value) : toJsonBytes(value);
          if (r.broken) {
            body = r.broken[1];
            mutations.push(`body: ${r.broken[0]}`);
            unknownField = undefined;
          }
          const ct = op.body.contentTypes.includes("text/csv") && r.contentType === "text/csv" ? "text/csv" : r.contentType;
          if (ct === "text/csv") {
            body = Buffer.from(`email,name\r\nfuzz-${r.path.path.length}@example.com,Fuzz\r\n`);
            unknownField = undefined;
            if (!r.query.pairs.some(([k]) => k === "mapping")) r.query.pairs.push(["mapping", safeEncodeURIComponent(JSON.stringify({ email: "email" }))]);
          }
          if (ct !== undefined) headers.push(["content-type", ct]);
          if (ct !== op.body.contentTypes[0]) mutations.push(`content-type: ${JSON.stringify(ct)}`);
        } else if (op.body && !r.sendBody) {
          unknownField = undefined;
        }
        if (r.idempotency && op.method === "POST") {
          headers.push(["idempotency-key", r.idempotency[1]]);
          mutations.push(`idempotency-key: ${r.idempotency[0]}`);
        }
        if (r.otherHeader) {
          headers.push([r.otherHeader[0], r.otherHeader[1][1]]);
          mutations.push(`header ${r.otherHeader[0]}: ${r.otherHeader[1][0]}`);
        }
        if (op.resendSigned) {
          const id = r.resend === "bad-id" ? "msg id with spaces" : `msg_fuzz${Math.abs(hash(body ?? Buffer.alloc(0)))}`;
          const ts = String(Math.floor(Date.now() / 1000) - (r.resend === "old" ? 3_600 : 0));
          if (r.resend !== "unsigned") {
            headers.push(["svix-id", id], ["svix-timestamp", ts]);
            headers.push(["svix-signature", r.resend === "bad-signature" ? "v1,AAAA" : signResend(ctx.resendSecret, id, ts, body ?? Buffer.alloc(0))]);
          }
          if (r.resend !== "valid") mutations.push(`resend signature: ${r.resend}`);
        }
        const query = r.query.pairs.map(([k, v]) => `${safeEncodeURIComponent(k)}=${v}`).join("&");
        return {
          op,
          principal,
          raw: { method: op.method, target: query ? `${r.path.path}?${query}` : r.path.path, headers, body },
          mutations,
          unknownField,
          secretAt,
        };
      });
  });
}

function hash(b: Buffer): number {
  let h = 0;
  for (const x of b.subarray(0, 4096)) h = (h * 31 + x) | 0;
  return h;
}

const rawReplacer = (_k: string, v: unknown) => (v instanceof RawJson ? v.text : v instanceof RawBytes ? `<bytes>` : v);

function structuredCloneKeepingRaw(v: unknown): unknown {
  if (v instanceof RawJson || v instanceof RawBytes) return v;
  if (Array.isArray(v)) return v.map(structuredCloneKeepingRaw);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, structuredCloneKeepingRaw(x)]));
  return v;
}

/**
 * A case for any operation of the catalogue. Routes that take a body get three times the share
 * of the others: their inputs are where the values reach Postgres, the store and the workers.
 */
export function anyCaseArb(ctx: FuzzContext, ops: Operation[]): fc.Arbitrary<FuzzCase> {
  return fc.oneof(...ops.map((op) => ({ arbitrary: caseArb(ctx, op), weight: op.body ? 3 : 1 })));
}
