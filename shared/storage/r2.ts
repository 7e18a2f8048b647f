import { partsWithLast } from "./parts";
import { s3Url, parseS3Url } from "./s3";
import { type Storage, StorageNotFound } from "./storage";

/**
 * The parts of a Cloudflare R2 bucket binding this store uses (workers-types' R2Bucket has
 * more); declared here so shared/ needs no Workers types.
 */
export interface R2BucketBinding {
  get(key: string): Promise<{ body: ReadableStream } | null>;
  put(key: string, value: Uint8Array, options?: { httpMetadata?: { contentType?: string } }): Promise<unknown>;
  delete(key: string): Promise<void>;
  createMultipartUpload(key: string, options?: { httpMetadata?: { contentType?: string } }): Promise<{
    uploadPart(partNumber: number, value: Uint8Array): Promise<{ partNumber: number; etag: string }>;
    complete(parts: { partNumber: number; etag: string }[]): Promise<unknown>;
    abort(): Promise<void>;
  }>;
}

/**
 * An R2 bucket through its Worker binding: no credentials, no signing. Objects keep the same
 * s3://bucket/key names as through R2's S3 API, so a file written on the edge reads on Node.
 * A stream of unknown length cannot be put whole, so larger files go up as a multipart upload
 * of equal parts (R2 wants every part but the last the same size, at least 5 MiB).
 */
export function createR2Storage(binding: R2BucketBinding, options: { bucket: string; prefix?: string; partSize?: number }): Storage {
  const bucket = options.bucket.toLowerCase();
  const prefix = options.prefix ? options.prefix.replace(/\/+$/, "") + "/" : "";
  const partSize = options.partSize ?? 8 * 1024 * 1024;
  const keyIn = (url: string): string => {
    const at = parseS3Url(url);
    if (!at || at.bucket !== bucket) throw new StorageNotFound(`${url} is not in the bucket ${bucket}`);
    return at.key;
  };
  return {
    schemes: ["s3"],
    async read(url) {
      const object = await binding.get(keyIn(url));
      if (!object) throw new StorageNotFound(`no object ${url}`);
      return object.body as ReadableStream<Uint8Array>;
    },
    async write(key, body, writeOptions) {
      const full = prefix + key.replace(/^\/+/, "");
      const httpMetadata = { contentType: writeOptions?.contentType ?? "application/octet-stream" };
      let bytes = 0;
      let upload: Awaited<ReturnType<R2BucketBinding["createMultipartUpload"]>> | undefined;
      const parts: { partNumber: number; etag: string }[] = [];
      try {
        for await (const part of partsWithLast(body, partSize)) {
          writeOptions?.signal?.throwIfAborted();
          bytes += part.bytes.byteLength;
          if (!upload && part.last) {
            await binding.put(full, part.bytes, { httpMetadata });
            break;
          }
          upload ??= await binding.createMultipartUpload(full, { httpMetadata });
          parts.push(await upload.uploadPart(parts.length + 1, part.bytes));
        }
        if (upload) await upload.complete(parts);
      } catch (err) {
        await upload?.abort().catch(() => {});
        throw err;
      }
      return { url: s3Url(bucket, full), bytes };
    },
    async delete(url) {
      await binding.delete(keyIn(url));
    },
    keyOf(url) {
      const at = parseS3Url(url);
      if (!at || at.bucket !== bucket || !at.key.startsWith(prefix)) return null;
      return at.key.slice(prefix.length);
    },
  };
}
