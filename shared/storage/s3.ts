import { AwsClient } from "aws4fetch";
import { decodeKey, encodeKey, joinKey, partsWithLast } from "./parts";
import { type Storage, StorageNotFound } from "./storage";

/**
 * Any S3-compatible store (AWS S3, Cloudflare R2's S3 API, MinIO, ...) over fetch, signed with
 * SigV4 by aws4fetch: the same code on Node and in Workers. Objects are named s3://bucket/key.
 * Writes stream: a small object is one PUT, a larger one a multipart upload of `partSize` parts,
 * so at most one part is held in memory (S3 wants at least 5 MiB for every part but the last).
 * Requests are path-style (endpoint/bucket/key), which R2, MinIO and S3 all answer.
 */
export interface S3Settings {
  /** e.g. https://<account>.r2.cloudflarestorage.com, https://s3.eu-west-1.amazonaws.com */
  endpoint: string;
  /** "auto" for R2. */
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Where this system writes (export files, uploads, error reports). */
  bucket: string;
  /** Key prefix of everything this system writes, e.g. "penguinmails/". */
  prefix?: string;
  /** Bytes a multipart part; default 8 MiB (S3's minimum is 5 MiB). */
  partSize?: number;
}

const MIN_PART = 5 * 1024 * 1024;

export class S3Error extends Error {
  override name = "S3Error";
  constructor(
    message: string,
    readonly status: number,
    readonly code?: string,
  ) {
    super(message);
  }
}

/** s3://bucket/key → { bucket, key }; null for anything else. */
export function parseS3Url(url: string): { bucket: string; key: string } | null {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])\/(.+)$/i.exec(url);
  if (!m) return null;
  const key = decodeKey(m[2]!);
  return key === null || key.split("/").some((s) => s === "..") ? null : { bucket: m[1]!.toLowerCase(), key };
}

export const s3Url = (bucket: string, key: string): string => `s3://${bucket}/${encodeKey(key)}`;

/** The <Code> of an S3 error document, when the answer has one. */
const errorCode = (xml: string): string | undefined => /<Code>([^<]{1,100})<\/Code>/.exec(xml)?.[1];

export function createS3Storage(settings: S3Settings): Storage {
  const partSize = settings.partSize ?? 8 * 1024 * 1024;
  if (partSize < MIN_PART) throw new Error(`S3 part size must be at least ${MIN_PART} bytes`);
  const endpoint = settings.endpoint.replace(/\/+$/, "");
  const prefix = settings.prefix ?? "";
  const client = new AwsClient({
    accessKeyId: settings.accessKeyId,
    secretAccessKey: settings.secretAccessKey,
    service: "s3",
    region: settings.region,
    // aws4fetch retries 5xx and 429 with backoff; bodies sent are byte arrays, so a retry can resend.
    retries: 3,
  });
  const objectUrl = (bucket: string, key: string, query = "") => `${endpoint}/${bucket}/${encodeKey(key)}${query}`;

  /** A signed request; a non-2xx answer becomes an S3Error naming the operation (never the credentials). */
  const call = async (what: string, url: string, init: RequestInit = {}): Promise<Response> => {
    const res = await client.fetch(url, init);
    if (res.ok) return res;
    const text = await res.text().catch(() => "");
    const code = errorCode(text);
    if (res.status === 404 && (code === undefined || code === "NoSuchKey")) throw new StorageNotFound(`${what}: no such object`);
    throw new S3Error(`${what}: the store answered ${res.status}${code ? ` ${code}` : ""}`, res.status, code);
  };

  const writeKey = async (key: string, body: ReadableStream<Uint8Array>, contentType: string, signal?: AbortSignal) => {
    const what = `writing ${s3Url(settings.bucket, key)}`;
    let bytes = 0;
    let uploadId: string | undefined;
    const etags: string[] = [];
    try {
      for await (const part of partsWithLast(body, partSize)) {
        signal?.throwIfAborted();
        bytes += part.bytes.byteLength;
        if (uploadId === undefined && part.last) {
          // Small enough for one request.
          await call(what, objectUrl(settings.bucket, key), { method: "PUT", body: part.bytes, headers: { "content-type": contentType }, signal });
          return bytes;
        }
        if (uploadId === undefined) {
          const res = await call(what, objectUrl(settings.bucket, key, "?uploads"), { method: "POST", headers: { "content-type": contentType }, signal });
          uploadId = /<UploadId>([^<]+)<\/UploadId>/.exec(await res.text())?.[1];
          if (!uploadId) throw new S3Error(`${what}: the store did not start a multipart upload`, 502);
        }
        const n = etags.length + 1;
        const res = await call(what, objectUrl(settings.bucket, key, `?partNumber=${n}&uploadId=${encodeURIComponent(uploadId)}`), {
          method: "PUT",
          body: part.bytes,
          signal,
        });
        await res.body?.cancel();
        etags.push(res.headers.get("etag") ?? "");
      }
      const xml = `<CompleteMultipartUpload>${etags.map((e, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${escapeXml(e)}</ETag></Part>`).join("")}</CompleteMultipartUpload>`;
      const res = await call(what, objectUrl(settings.bucket, key, `?uploadId=${encodeURIComponent(uploadId!)}`), { method: "POST", body: xml, signal });
      // S3 may answer 200 and report the failure in the body.
      const text = await res.text();
      if (text.includes("<Error>")) throw new S3Error(`${what}: completing the upload failed${errorCode(text) ? ` (${errorCode(text)})` : ""}`, 500, errorCode(text));
      return bytes;
    } catch (err) {
      // Parts of an unfinished upload cost storage until aborted.
      if (uploadId) await call(what, objectUrl(settings.bucket, key, `?uploadId=${encodeURIComponent(uploadId)}`), { method: "DELETE" }).catch(() => {});
      throw err;
    }
  };

  const located = (url: string) => {
    const at = parseS3Url(url);
    if (!at) throw new StorageNotFound(`${url} is not an s3://bucket/key URL`);
    return at;
  };

  return {
    schemes: ["s3"],
    async read(url, signal) {
      const { bucket, key } = located(url);
      const res = await call(`reading ${url}`, objectUrl(bucket, key), { signal });
      if (!res.body) throw new S3Error(`reading ${url}: the store sent no body`, 502);
      return res.body as ReadableStream<Uint8Array>;
    },
    async write(key, body, options) {
      const full = joinKey(prefix, key);
      const bytes = await writeKey(full, body, options?.contentType ?? "application/octet-stream", options?.signal);
      return { url: s3Url(settings.bucket, full), bytes };
    },
    async delete(url) {
      const { bucket, key } = located(url);
      await call(`deleting ${url}`, objectUrl(bucket, key), { method: "DELETE" }).catch((err: unknown) => {
        if (!(err instanceof StorageNotFound)) throw err;
      });
    },
    keyOf(url) {
      const at = parseS3Url(url);
      if (!at || at.bucket !== settings.bucket.toLowerCase()) return null;
      if (!prefix) return at.key;
      const p = prefix.replace(/\/+$/, "") + "/";
      return at.key.startsWith(p) ? at.key.slice(p.length) : null;
    },
  };
}

const escapeXml = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
