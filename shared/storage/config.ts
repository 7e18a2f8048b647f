import { z } from "zod";
import type { UrlGuard } from "../webhooks/ssrf";
import { createHttpsStorage } from "./https";
import { createR2Storage, type R2BucketBinding } from "./r2";
import { createS3Storage } from "./s3";
import { type Storage, StorageRouter } from "./storage";

/**
 * Storage settings, the same on both runtimes (each config spreads this shape, so the names,
 * checks and messages agree):
 *   STORAGE_URL            where this system writes files: s3://bucket/optional/prefix
 *                          (Node without it: the local folder DATA_DIR/files)
 *   S3_ENDPOINT            the S3 API's base URL (R2: https://<account>.r2.cloudflarestorage.com)
 *   S3_REGION              "auto" for R2
 *   S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY   secrets
 * On the edge an R2 binding named FILES serves STORAGE_URL's bucket instead, without keys.
 */
export const storageEnvShape = {
  STORAGE_URL: z
    .string()
    .regex(/^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/[^?#]*)?$/, "expected s3://bucket or s3://bucket/prefix")
    .optional(),
  S3_ENDPOINT: z.url({ protocol: /^https?$/, error: "expected the http(s) base URL of an S3-compatible API" }).optional(),
  S3_REGION: z.string().min(1).default("auto"),
  S3_ACCESS_KEY_ID: z.string().min(1).optional(),
  S3_SECRET_ACCESS_KEY: z.string().min(1).optional(),
};

export type StorageSettings = {
  STORAGE_URL?: string;
  S3_ENDPOINT?: string;
  S3_REGION: string;
  S3_ACCESS_KEY_ID?: string;
  S3_SECRET_ACCESS_KEY?: string;
};

/** What is wrong with the settings, naming the variables; null when they make sense. */
export function storageSettingsProblem(s: StorageSettings, options: { hasR2Binding?: boolean } = {}): string | null {
  const keys = [s.S3_ENDPOINT, s.S3_ACCESS_KEY_ID, s.S3_SECRET_ACCESS_KEY];
  if (keys.some(Boolean) && !keys.every(Boolean)) return "S3_ENDPOINT, S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY: set all three or none";
  if (keys.every(Boolean) && !s.STORAGE_URL) return "STORAGE_URL: required with S3_ENDPOINT (s3://bucket/prefix, where files are written)";
  if (s.STORAGE_URL && !keys.every(Boolean) && !options.hasR2Binding) {
    return `STORAGE_URL: ${s.STORAGE_URL} needs S3_ENDPOINT, S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY${options.hasR2Binding === false ? " (or an R2 binding named FILES on the edge)" : ""}`;
  }
  return null;
}

const bucketAndPrefix = (url: string) => {
  const [bucket, ...rest] = url.slice("s3://".length).split("/");
  return { bucket: bucket!, prefix: rest.filter(Boolean).join("/") };
};

/**
 * The Storage port from the settings: https:// always (read-only, behind the SSRF guard), s3://
 * through the R2 binding or the S3 API, and the local folder when the runtime has one. Writes go
 * to STORAGE_URL's bucket, else the local folder. Undefined when nothing can be written (an edge
 * deployment without a bucket): imports and exports are then off.
 */
export function createStorage(
  settings: StorageSettings,
  options: { guard: UrlGuard; local?: Storage; r2?: R2BucketBinding; partSize?: number; fetch?: typeof fetch },
): StorageRouter | undefined {
  const web = createHttpsStorage({ ...options.guard, fetch: options.fetch });
  let bucketStore: Storage | undefined;
  if (settings.STORAGE_URL) {
    const { bucket, prefix } = bucketAndPrefix(settings.STORAGE_URL);
    if (options.r2) {
      bucketStore = createR2Storage(options.r2, { bucket, prefix, partSize: options.partSize });
    } else if (settings.S3_ENDPOINT && settings.S3_ACCESS_KEY_ID && settings.S3_SECRET_ACCESS_KEY) {
      bucketStore = createS3Storage({
        endpoint: settings.S3_ENDPOINT,
        region: settings.S3_REGION,
        accessKeyId: settings.S3_ACCESS_KEY_ID,
        secretAccessKey: settings.S3_SECRET_ACCESS_KEY,
        bucket,
        prefix,
        partSize: options.partSize,
      });
    }
  }
  const writeTo = bucketStore ?? options.local;
  if (!writeTo) return undefined;
  return new StorageRouter([web, ...(options.local ? [options.local] : []), ...(bucketStore ? [bucketStore] : [])], writeTo);
}
