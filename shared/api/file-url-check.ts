/**
 * Import file URLs checked at the API, before anything is stored: a web URL (http, https) must
 * pass the SSRF guard that webhook registration uses, with the same WEBHOOK_ALLOW allow-list
 * and the same http-only-from-allow-listed rule the https store applies when it reads. Without
 * this a URL at 127.0.0.1 or 169.254.169.254 was accepted (202) and failed only when the job ran.
 *
 * The store checks again before every request and redirect (DNS answers change); this check
 * is what lets the client hear "no" at once and keeps the refused job out of the ledger.
 */
import { importContacts } from "../jobs/import-contacts";
import { checkWebFileUrl } from "../storage/https";
import type { UrlGuard } from "../webhooks/ssrf";
import { ApiError, type FieldError, joinPath } from "./problem";

type Path = (string | number)[];

/** Why a web file URL may not be read, or null when it may (or is not a web URL: stores check those). */
export async function webFileUrlProblem(url: string, guard: UrlGuard): Promise<string | null> {
  if (!/^https?:/i.test(url)) return null;
  const check = await checkWebFileUrl(url, guard);
  return check.ok ? null : check.reason;
}

/**
 * For jobs about to be enqueued (validated rows, in request order): a 422 naming
 * `<at>.payload.file_url` for every import whose web file URL the guard refuses.
 * `pathOf(i)` is where row i sits in the request ([] for a single job, ["jobs", i] in a batch).
 */
export async function assertImportFileUrls(
  rows: readonly { type: string; payload: unknown }[],
  guard: UrlGuard,
  pathOf: (index: number) => Path = () => [],
): Promise<void> {
  const errors: FieldError[] = [];
  await Promise.all(
    rows.map(async (row, i) => {
      if (row.type !== importContacts.type) return;
      const url = (row.payload as { file_url?: unknown } | null)?.file_url;
      if (typeof url !== "string") return;
      const problem = await webFileUrlProblem(url, guard);
      if (problem) errors.push({ path: joinPath([...pathOf(i), "payload", "file_url"]), message: problem });
    }),
  );
  if (errors.length > 0) {
    errors.sort((a, b) => a.path.localeCompare(b.path, "en", { numeric: true }));
    throw new ApiError(422, "invalid file_url: the URL is not allowed", errors);
  }
}
