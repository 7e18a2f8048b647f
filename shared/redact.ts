/**
 * Secret scrubbing for everything we log, store as an error or show: the one redaction module
 * (loggers on both runtimes, `last_error`, job and import views, the dashboard). Two rules:
 *
 * - by name: a field whose name says credential (`password`, `pwd`, `authorization`,
 *   `private_key`, `cookie`, …) is replaced whole with `[redacted]`;
 * - by value: inside any string, URL userinfo, secret-looking query values, bearer/basic
 *   credentials, PEM private keys and our own secret formats (`pmk_…` API keys, `whsec_…` webhook secrets) are
 *   masked with `***`, whatever the field is called (an error message, a `detail`, a CSV cell).
 *
 * Runs on Node and on the edge, so it sticks to plain string handling (no node: imports, no
 * environment access).
 */

/** What a secret inside a string is replaced with; short and obviously not a real credential. */
const MASK = "***";

/** What a field with a secret-looking name is replaced with. */
export const REDACTED = "[redacted]";

/**
 * Query-parameter names whose values are treated as secrets. Deliberately broad (a substring
 * match): masking a harmless value (`sslkey=/path`) costs nothing, leaking a presigned link's
 * `X-Amz-Signature` or a `token=` costs a rotation.
 */
const SECRET_PARAM = /pass|pwd|token|key|secret|sig|credential|auth|session|cookie|bearer|jwt/i;

/**
 * Words of a field name that make it a credential. Matched by word (`userPassword`,
 * `reset_token`, `X-Amz-Signature`), not by substring, so `author`, `passed` or `keyword` stay
 * readable in logs and payload views.
 */
const SECRET_WORDS = new Set([
  "password",
  "passwords",
  "passwd",
  "pwd",
  "pass",
  "passphrase",
  "secret",
  "secrets",
  "token",
  "authorization",
  "auth",
  "credential",
  "credentials",
  "creds",
  "cookie",
  "cookies",
  "session",
  "bearer",
  "signature",
  "pepper",
  "apikey",
]);

/** Names that are secrets only as a whole (`api_key`, `privateKey`, `databaseUrl`): checked with separators removed. */
const SECRET_COMPOUNDS = ["apikey", "privatekey", "secretkey", "accesskey", "signingkey", "databaseurl", "redisurl", "smtpurl", "connectionstring"];

/** Whether a field name reads as a credential (see SECRET_WORDS and SECRET_COMPOUNDS). */
export function isSecretName(name: string): boolean {
  const words = name
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter(Boolean);
  if (words.some((w) => SECRET_WORDS.has(w))) return true;
  const joined = words.join("");
  return SECRET_COMPOUNDS.some((c) => joined.includes(c));
}

/**
 * Returns `url` with its password and secret-looking query values replaced by `***`, e.g.
 * `postgres://user:secret@host/db` becomes `postgres://user:***@host/db`.
 *
 * Works on the raw text rather than through `new URL()`: the WHATWG parser rejects perfectly
 * usable connection strings (multi-host Postgres URLs, unencoded `@` in passwords) and
 * re-encodes the rest of the URL, and a redactor must neither throw nor reshape what it leaves.
 */
export function redactUrl(url: string): string {
  return redactQuery(redactUserinfo(url));
}

/** Schemes where a user name without a password is itself a credential (`https://<token>@host`). */
const TOKEN_USER_SCHEMES = /^(https?|wss?|ftp|s3)$/i;

function redactUserinfo(url: string): string {
  const schemeEnd = url.indexOf("://");
  if (schemeEnd < 0) return url;
  const authorityStart = schemeEnd + 3;
  const rest = url.slice(authorityStart);
  const authorityEnd = rest.search(/[/?#]/);
  const authority = authorityEnd < 0 ? rest : rest.slice(0, authorityEnd);
  // The last "@" ends the userinfo, so a password containing a raw "@" is still masked whole.
  const at = authority.lastIndexOf("@");
  if (at < 0) return url;
  const userinfo = authority.slice(0, at);
  const colon = userinfo.indexOf(":");
  let masked: string;
  if (colon >= 0) masked = `${userinfo.slice(0, colon)}:${MASK}`;
  // A database role name is not a secret and helps whoever reads the log; on the web it is a token.
  else if (TOKEN_USER_SCHEMES.test(url.slice(0, schemeEnd))) masked = MASK;
  else return url;
  return url.slice(0, authorityStart) + masked + authority.slice(at) + rest.slice(authority.length);
}

function redactQuery(url: string): string {
  const q = url.indexOf("?");
  if (q < 0) return url;
  const hash = url.indexOf("#", q);
  const query = hash < 0 ? url.slice(q + 1) : url.slice(q + 1, hash);
  const tail = hash < 0 ? "" : url.slice(hash);
  const pairs = query.split("&").map((pair) => {
    const eq = pair.indexOf("=");
    if (eq < 0) return pair;
    return SECRET_PARAM.test(safeDecode(pair.slice(0, eq))) ? `${pair.slice(0, eq)}=${MASK}` : pair;
  });
  return `${url.slice(0, q + 1)}${pairs.join("&")}${tail}`;
}

/** Malformed percent-escapes must not make redaction throw; fall back to the raw name. */
function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, " "));
  } catch {
    return s;
  }
}

/** An absolute URL inside free text: up to whitespace, a quote or an angle bracket. */
const URL_IN_TEXT = /[a-z][a-z0-9+.-]*:\/\/[^\s"'<>`]+/gi;
/** A `name=value` pair inside free text: of a query string (a relative URL, a form body) or a message (`token=…`). */
const PARAM_IN_TEXT = /(^|[?&;\s])([^=&#\s"'<>?;]+)=([^&#\s"'<>]*)/g;
/** `Authorization: Bearer …` / `Basic …` credentials quoted in a message. */
const SCHEME_CREDENTIAL = /\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]{8,}/gi;
/** Our API keys, `pmk_<12-char id>_<base64url secret>`: the id stays (it names the key), the secret goes. */
const API_KEY_VALUE = /\b(pmk_[A-Za-z0-9]{12}_)[A-Za-z0-9_-]{8,}/g;
/** Our (and Standard Webhooks') signing secrets, `whsec_<base64>`. */
const WEBHOOK_SECRET_VALUE = /\bwhsec_[A-Za-z0-9+/=_-]{4,}/g;
/**
 * A PEM private key (DKIM keys are PKCS#8; RSA and EC forms too), with or without its END line:
 * an error or a log line quoting one, even cut short, keeps only the BEGIN line.
 */
const PRIVATE_KEY_PEM = /(-----BEGIN ((?:RSA |EC |ENCRYPTED )?PRIVATE KEY)-----)[\s\S]*?(?:-----END \2-----|$)/g;

/**
 * Masks every secret a string carries by its shape: URL userinfo and secret query values (in
 * whole URLs and in stray query strings), bearer/basic credentials, `pmk_` keys, `whsec_` secrets.
 * Leaves everything else as it was.
 */
export function redactText(text: string): string {
  if (text.length === 0) return text;
  return text
    // First: a key's base64 could otherwise be read as a URL or a name=value pair and cut apart.
    .replace(PRIVATE_KEY_PEM, (_whole, begin: string) => `${begin}${MASK}`)
    .replace(URL_IN_TEXT, (url) => redactUrl(url))
    .replace(PARAM_IN_TEXT, (whole, sep: string, name: string) => (SECRET_PARAM.test(safeDecode(name)) ? `${sep}${name}=${MASK}` : whole))
    .replace(SCHEME_CREDENTIAL, (_whole, scheme: string) => `${scheme} ${MASK}`)
    .replace(API_KEY_VALUE, (_whole, prefix: string) => `${prefix}${MASK}`)
    .replace(WEBHOOK_SECRET_VALUE, `whsec_${MASK}`);
}

export interface RedactOptions {
  /** More field names to mask whole (a job type's `secretFields`). */
  names?: ReadonlySet<string>;
  /** Levels below which to stop and write `[…]`; guards against huge or hostile nesting. Default 12. */
  maxDepth?: number;
}

/**
 * A copy of `value` safe to log or show: fields with secret names become `[redacted]`, every
 * string is passed through redactText, Errors become `{ type, message, stack, cause }` (so the
 * message is redacted too), cycles become `[circular]`. The input is left untouched.
 */
export function redact(value: unknown, options: RedactOptions = {}): unknown {
  return walk(value, options.names, options.maxDepth ?? 12, 0, new WeakSet());
}

/**
 * Bare `key` is masked only below the top level: at the top it is a Redis key or a job key (what
 * one greps logs for), nested under a credential object (`provider.key`, `s3.key`) it is a secret.
 */
function secretField(key: string, names: ReadonlySet<string> | undefined, depth: number): boolean {
  return (names?.has(key) ?? false) || isSecretName(key) || (depth > 0 && key.toLowerCase() === "key");
}

function walk(value: unknown, names: ReadonlySet<string> | undefined, maxDepth: number, depth: number, seen: WeakSet<object>): unknown {
  if (typeof value === "string") return redactText(value);
  if (value === null || typeof value !== "object") return value;
  if (seen.has(value)) return "[circular]";
  if (depth >= maxDepth) return "[…]";
  seen.add(value);
  try {
    if (Array.isArray(value)) return value.map((v) => walk(v, names, maxDepth, depth + 1, seen));
    if (value instanceof Date) return value;
    if (value instanceof Error) return errorObject(value, names, maxDepth, depth, seen);
    const out: Record<string, unknown> = {};
    for (const [key, v] of Object.entries(value)) {
      out[key] = secretField(key, names, depth) ? REDACTED : walk(v, names, maxDepth, depth + 1, seen);
    }
    return out;
  } finally {
    // Only the current path counts as a cycle: the same object twice side by side is shown twice.
    seen.delete(value);
  }
}

function errorObject(err: Error, names: ReadonlySet<string> | undefined, maxDepth: number, depth: number, seen: WeakSet<object>) {
  const out: Record<string, unknown> = { type: err.name, message: redactText(err.message) };
  if (err.stack) out.stack = redactText(err.stack);
  // Own fields (a provider's status, a Postgres error's code and detail) with the same rules.
  for (const [key, v] of Object.entries(err)) {
    if (key in out) continue;
    out[key] = secretField(key, names, depth + 1) ? REDACTED : walk(v, names, maxDepth, depth + 1, seen);
  }
  if (err.cause !== undefined) out.cause = walk(err.cause, names, maxDepth, depth + 1, seen);
  return out;
}
