/**
 * Generates a contacts CSV with known answers (import.contacts tests and bench): duplicates in
 * another case, invalid and missing addresses, quoted names with delimiters, quotes and newlines,
 * an optional BOM, `,` `;` or tab delimiters, LF or CRLF. Written in chunks, never held whole.
 */
import { createWriteStream } from "node:fs";
import { once } from "node:events";

export interface Expected {
  rows: number;
  valid: number;
  invalid: number;
  duplicate: number;
  /** data rows rejected: file row number (header = 1) → reason kind */
  rejected: Map<number, "invalid" | "duplicate">;
  /** lowercase addresses kept, in first-seen order, when collected */
  unique: number;
}

export const fixtureEmail = (i: number) => `user${i}@example.com`;

export async function writeContactsCsv(
  path: string,
  rows: number,
  opts: { delimiter?: string; crlf?: boolean; bom?: boolean; collectRejected?: boolean } = {},
): Promise<Expected> {
  const d = opts.delimiter ?? ",";
  const nl = opts.crlf ? "\r\n" : "\n";
  const out = createWriteStream(path);
  const rejected = new Map<number, "invalid" | "duplicate">();
  let valid = 0;
  let invalid = 0;
  let duplicate = 0;
  let buf = (opts.bom ? "\uFEFF" : "") + ["email", "name", "plan"].join(d) + nl;
  for (let i = 0; i < rows; i++) {
    const row = i + 2;
    let email: string;
    if (i % 50 === 7) {
      email = i % 100 === 7 ? `not-an-email-${i}` : ` `; // invalid, or missing
      invalid++;
      if (opts.collectRejected !== false) rejected.set(row, "invalid");
    } else if (i % 40 === 3 && i >= 3) {
      email = fixtureEmail(i - 3).toUpperCase(); // the same address, another case
      duplicate++;
      if (opts.collectRejected !== false) rejected.set(row, "duplicate");
    } else {
      email = fixtureEmail(i);
      valid++;
    }
    let name: string;
    if (i % 10 === 1) name = `"Doe${d} John ""J"" ${i}${nl}second line"`;
    else if (i % 10 === 2) name = `"Plain ${i}"`;
    else name = `Name ${i}`;
    const plan = i % 3 === 0 ? "pro" : "free";
    buf += `${email}${d}${name}${d}${plan}${nl}`;
    if (buf.length > 256 * 1024) {
      if (!out.write(buf)) await once(out, "drain");
      buf = "";
    }
  }
  out.end(buf);
  await once(out, "finish");
  return { rows, valid, invalid, duplicate, rejected, unique: valid };
}
