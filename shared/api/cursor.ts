/**
 * List cursors. Opaque to clients (base64url of a tagged id), so the keyset behind them can
 * change without breaking anyone who stored a next_cursor. Ids follow the one id rule
 * (fields.ts): a cursor beyond 2^63-1 is not one of ours, never a Postgres range error.
 */
import { bigintId, isBigintId } from "../jobs/fields";

const TAG = "before:";

const toBase64url = (s: string) => btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

/** The cursor of the page after the job with this id (lists are newest first, by id). */
export function encodeCursor(lastId: string): string {
  return toBase64url(`${TAG}${lastId}`);
}

/** The id to continue below, or null when the cursor is not one of ours. */
export function decodeCursor(cursor: string): string | null {
  if (!/^[A-Za-z0-9_-]{1,200}$/.test(cursor)) return null;
  let text: string;
  try {
    text = atob(cursor.replace(/-/g, "+").replace(/_/g, "/"));
  } catch {
    return null;
  }
  if (!text.startsWith(TAG)) return null;
  const id = text.slice(TAG.length);
  return isBigintId(id) ? id : null;
}

/** The plain keyset cursors (contacts, outbox, deliveries): the last id seen, a bigint. */
export const idCursor = bigintId.describe("next_cursor of the previous page");
