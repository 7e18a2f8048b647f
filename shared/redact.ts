/**
 * Secret scrubbing for strings we are about to log or show. Runs on Node and on the edge, so
 * it sticks to plain string handling (no node: imports, no environment access).
 */

/** What a redacted value is replaced with; short and obviously not a real credential. */
const MASK = "***";

/**
 * Query-parameter names whose values are treated as secrets. Deliberately broad: masking a
 * harmless value (e.g. `sslkey=/path`) costs nothing, leaking an access token costs a rotation.
 */
const SECRET_PARAM = /pass|pwd|token|key|secret|signature|credential|auth/i;

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
  if (colon < 0) return url;
  const masked = `${userinfo.slice(0, colon)}:${MASK}${authority.slice(at)}`;
  return url.slice(0, authorityStart) + masked + rest.slice(authority.length);
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
