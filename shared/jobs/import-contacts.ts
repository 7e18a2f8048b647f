import { z } from "zod";
import { defineJobType } from "./definition";
import { email, entityId, tenantId } from "./fields";

/** Whether a URL's authority carries `user@` or `user:password@` (the part before the first / ? #). */
function hasUserinfo(url: string): boolean {
  const afterScheme = url.indexOf("://");
  if (afterScheme < 0) return false;
  const authority = url.slice(afterScheme + 3).split(/[/?#\\]/, 1)[0] ?? "";
  return authority.includes("@");
}

/** Where a contact column goes: email, name, or attributes.<key>. */
const target = z.union([
  z.literal("email"),
  z.literal("name"),
  z.string().regex(/^attributes\.[A-Za-z0-9_]{1,64}$/, 'expected "email", "name" or "attributes.<key>"'),
]);

export const importContacts = defineJobType({
  type: "import.contacts",
  description: "Streams a CSV file, validates addresses and upserts contacts in batches.",
  payload: z.strictObject({
    file_url: z
      .string()
      .max(2048)
      // http:// passes here; the store reads it only from allow-listed hosts (self-hosters' servers).
      .regex(/^(s3|https?|file):\/\/.+/, "expected an s3://, https:// or file:// URL")
      // A password in the URL would be stored with the job and shown wherever the URL is (job
      // listings, errors, logs); refused here so neither POST /v1/imports nor POST /v1/jobs takes it.
      .refine((url) => !hasUserinfo(url), "credentials in the URL are not allowed; use a presigned https:// link or upload the file"),
    tenant_id: tenantId,
    /** Column to field: keys are col_N (0-based) or header names. */
    mapping: z.record(z.string().min(1).max(256), target).refine((m) => Object.values(m).includes("email"), {
      message: "the mapping must map one column to email",
    }),
    list_id: entityId.optional(),
    has_header: z.boolean().default(true),
    /** Who hears when the import finishes (an email with the counts, through email.send). */
    notify_email: email.optional(),
  }),
  pool: "import",
  priority: () => "low",
  maxAttempts: 3,
  backoff: { baseMs: 30_000, maxMs: 30 * 60_000 },
  timeoutMs: 60 * 60_000,
});
