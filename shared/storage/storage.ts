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
    const scheme = url.slice(0, Math.max(0, url.indexOf(":"))).toLowerCase();
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
}
