/**
 * List cursors. Opaque to clients (base64url of a tagged id), so the keyset behind them can
 * change without breaking anyone who stored a next_cursor. Ids follow the one id rule
 * (fields.ts): a cursor beyond 2^63-1 is not one of ours, never a Postgres range error.
 */
import { bigintId, isBigintId } from "../jobs/fields";

const TAG = "before:";

const toBase64url = (s: string) => btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

/** A cursor's text, or null when it is not base64url of a bounded length. */
function cursorText(cursor: string): string | null {
  if (!/^[A-Za-z0-9_-]{1,200}$/.test(cursor)) return null;
  try {
    return atob(cursor.replace(/-/g, "+").replace(/_/g, "/"));
  } catch {
    return null;
  }
}

/** The cursor of the page after the job with this id (lists are newest first, by id). */
export function encodeCursor(lastId: string): string {
  return toBase64url(`${TAG}${lastId}`);
}

/** The id to continue below, or null when the cursor is not one of ours. */
export function decodeCursor(cursor: string): string | null {
  const text = cursorText(cursor);
  if (text === null) return null;
  if (!text.startsWith(TAG)) return null;
  const id = text.slice(TAG.length);
  return isBigintId(id) ? id : null;
}

/** The plain keyset cursors (contacts, outbox, deliveries): the last id seen, a bigint. */
export const idCursor = bigintId.describe("next_cursor of the previous page");

const AT_TAG = "at:";
const MICROS_ISO = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\.\d{6}Z$/;

/**
 * The cursor of a newest-first listing keyed by (created_at, id): rows with text ids (lists,
 * campaigns) are ordered by time first. `at` is Postgres' microsecond time (see `CursorTime`),
 * not a JavaScript Date, which would drop the microseconds and skip or repeat rows.
 */
export function encodeTimeCursor(at: string, id: string): string {
  return toBase64url(`${AT_TAG}${at}|${id}`);
}

/** { at, id } to continue below, or null when the cursor is not one of ours. */
export function decodeTimeCursor(cursor: string): { at: string; id: string } | null {
  const text = cursorText(cursor);
  if (text === null) return null;
  if (!text.startsWith(AT_TAG)) return null;
  const [at, id, ...rest] = text.slice(AT_TAG.length).split("|");
  if (at === undefined || id === undefined || rest.length > 0 || !/^[A-Za-z0-9_.:-]{1,128}$/.test(id)) return null;
  const m = MICROS_ISO.exec(at);
  // A real calendar time in years 1-9999 (what timestamptz and the date rule hold).
  if (!m || Number.isNaN(Date.parse(`${m[1]}Z`)) || new Date(`${m[1]}Z`).toISOString().slice(0, 19) !== m[1] || at.startsWith("0000")) return null;
  return { at, id };
}

/** The SQL expression of `created_at` as `encodeTimeCursor` takes it: UTC, microseconds. */
export const CursorTime = `to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;
