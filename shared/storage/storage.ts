/**
 * The Storage port: where import files are read from and export files written to. Objects are
 * named by URL; the scheme says which store holds them (s3:// for any S3-compatible store, R2
 * included; https:// read-only; file:// the local folder of the embedded default). Bodies are
 * Web streams end to end, so no file is ever held whole in memory.
 */
export interface StoredObject {
  url: string;
  bytes: number;
}

export interface Storage {
  /** The schemes this store answers for, e.g. ["s3"]. */
  readonly schemes: readonly string[];
  /** Streams an object's bytes. Throws StorageNotFound when it does not exist. */
  read(url: string, signal?: AbortSignal): Promise<ReadableStream<Uint8Array>>;
  /** Stores a stream under `key` (a relative path such as "acme/exports/exp_1.csv"). */
  write(key: string, body: ReadableStream<Uint8Array>, options?: { contentType?: string; signal?: AbortSignal }): Promise<StoredObject>;
  delete(url: string): Promise<void>;
  /**
   * The key (as passed to write) of a URL inside the area this system writes to, or null for a
   * URL elsewhere (another bucket, a web server). Tenant checks use it: see tenantFileProblem.
   */
  keyOf(url: string): string | null;
}

export class StorageNotFound extends Error {
  override name = "StorageNotFound";
}

/** Routes each URL to the store for its scheme; writes go to the one default store. */
export class StorageRouter implements Storage {
  readonly schemes: readonly string[];
  private readonly byScheme = new Map<string, Storage>();

  constructor(
    stores: readonly Storage[],
    private readonly writeTo: Storage,
  ) {
    for (const s of stores) for (const scheme of s.schemes) this.byScheme.set(scheme, s);
    this.schemes = [...this.byScheme.keys()];
  }

  private storeFor(url: string): Storage {
    const scheme = schemeOf(url);
    const store = this.byScheme.get(scheme);
    if (!store) throw new Error(`no storage is configured for ${scheme || "this"}:// URLs`);
    return store;
  }

  read(url: string, signal?: AbortSignal) {
    return this.storeFor(url).read(url, signal);
  }

  write(key: string, body: ReadableStream<Uint8Array>, options?: { contentType?: string; signal?: AbortSignal }) {
    return this.writeTo.write(key, body, options);
  }

  delete(url: string) {
    return this.storeFor(url).delete(url);
  }

  /** Only the store written to counts as "ours": a file in the local folder is not, once a bucket is. */
  keyOf(url: string): string | null {
    return this.writeTo.schemes.includes(schemeOf(url)) ? this.writeTo.keyOf(url) : null;
  }
}

const schemeOf = (url: string): string => url.slice(0, Math.max(0, url.indexOf(":"))).toLowerCase();

/** Where a tenant's files live in the system's own store: every key this system writes for a tenant starts so. */
export const tenantKeyPrefix = (tenantId: string): string => `${tenantId}/`;

/**
 * Why a tenant may not read this URL, or null when it may. Files in the system's own store
 * (the local folder, the configured bucket) are readable only under the tenant's own prefix:
 * uploads, exports and reports of other tenants sit in the same place. Other buckets are refused
 * outright (the system's credentials may reach them; a tenant's should not through us). Web URLs
 * are the tenant's own business, behind the SSRF guard of the https store.
 */
export function tenantFileProblem(storage: Storage, url: string, tenantId: string): string | null {
  const scheme = schemeOf(url);
  if (!storage.schemes.includes(scheme)) {
    return `no store here reads ${scheme ? `${scheme}://` : "such"} URLs; use ${storage.schemes.map((s) => `${s}://`).join(" or ")}`;
  }
  if (scheme === "https" || scheme === "http") return null;
  const key = storage.keyOf(url);
  if (key === null) return "the file must be one this API stored for you (an upload or an export), or an https:// URL";
  if (!key.startsWith(tenantKeyPrefix(tenantId))) return "that file belongs to another tenant";
  return null;
}
