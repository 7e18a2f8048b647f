import { redactUrl } from "../redact";
import { allowedByList, checkUrl, type UrlCheck, type UrlGuard } from "../webhooks/ssrf";
import { type Storage, StorageNotFound } from "./storage";

/**
 * Files on the web, read-only: an import can name an https:// URL (a presigned link to the
 * customer's own bucket, say). The URL is the customer's, so it passes the same SSRF guard as
 * webhooks, and so does every redirect it answers with (followed by hand, at most a few).
 */
export interface HttpsStorageOptions extends UrlGuard {
  /** Time to the response headers; the body then streams for as long as the import reads it. */
  headersTimeoutMs?: number;
  maxRedirects?: number;
  fetch?: typeof fetch;
}

export function createHttpsStorage(options: HttpsStorageOptions): Storage {
  const doFetch = options.fetch ?? fetch;
  const headersTimeoutMs = options.headersTimeoutMs ?? 30_000;
  const maxRedirects = options.maxRedirects ?? 3;
  const readOnly = () => Promise.reject(new Error("https:// files are read-only"));

  return {
    // Plain http:// is read only from allow-listed hosts (self-hosters' private servers, tests).
    schemes: ["https", "http"],
    async read(url, signal) {
      let current = url;
      for (let hop = 0; ; hop++) {
        const check = await checkWebFileUrl(current, options);
        if (!check.ok) throw new StorageNotFound(`${shown(current)}: ${check.reason}`);
        // Aborts only while waiting for the headers: the body may take as long as the file is big.
        const waiting = new AbortController();
        const timer = setTimeout(() => waiting.abort(new Error(`no answer within ${headersTimeoutMs} ms`)), headersTimeoutMs);
        let res: Response;
        try {
          res = await doFetch(check.url, { redirect: "manual", signal: signal ? AbortSignal.any([signal, waiting.signal]) : waiting.signal });
        } catch (err) {
          const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : "";
          const why = waiting.signal.aborted ? String((waiting.signal.reason as Error).message) : `${err instanceof Error ? err.message : String(err)}${cause}`;
          throw new Error(`${shown(current)}: ${why}`);
        } finally {
          clearTimeout(timer);
        }
        if (res.status >= 300 && res.status < 400 && res.headers.get("location")) {
          await res.body?.cancel();
          if (hop >= maxRedirects) throw new Error(`${shown(url)}: more than ${maxRedirects} redirects`);
          current = new URL(res.headers.get("location")!, check.url).toString();
          continue;
        }
        if (res.status === 404 || res.status === 410) {
          await res.body?.cancel();
          throw new StorageNotFound(`${shown(current)}: the server answered ${res.status}`);
        }
        if (!res.ok || !res.body) {
          await res.body?.cancel();
          throw new Error(`${shown(current)}: the server answered ${res.status}`);
        }
        return res.body as ReadableStream<Uint8Array>;
      }
    },
    write: readOnly,
    delete: readOnly,
    keyOf: () => null,
  };
}

/**
 * Whether a web file URL may be read: the SSRF guard (http or https, no credentials, every
 * address of the host public unless allow-listed) and plain http:// only from allow-listed
 * hosts. The same check runs at the API when an import names the URL and here before every
 * request and redirect, so a URL the API accepted is refused later only if DNS changed.
 */
export async function checkWebFileUrl(url: string, guard: UrlGuard): Promise<UrlCheck> {
  const check = await checkUrl(url, guard);
  if (check.ok && check.url.protocol === "http:" && !allowListed(check.url.hostname, guard)) {
    return { ok: false, reason: "only https:// URLs can be read (http:// only from allow-listed hosts)", retryable: false };
  }
  return check;
}

function allowListed(hostname: string, guard: UrlGuard): boolean {
  const host = hostname.toLowerCase().replace(/^\[(.*)\]$/, "$1");
  return !!guard.allow && (guard.allow.hosts.has(host) || allowedByList(host, guard.allow));
}

/**
 * A URL as errors show it: credentials and the query string dropped (a presigned URL's
 * signature is a credential as much as a password is).
 */
export function shown(url: string): string {
  const q = url.search(/[?#]/);
  const bare = q < 0 ? url : `${url.slice(0, q)}?…`;
  return redactUrl(bare);
}
