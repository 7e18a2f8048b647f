/**
 * A streaming CSV reader over Web streams (RFC 4180): quoted fields with delimiters, CR/LF and
 * "" escapes inside, CRLF or LF line ends, a UTF-8 BOM, and `,` `;` or tab delimiters (sniffed
 * from the first line when not given). It holds at most one incomplete record between chunks,
 * so memory stays flat whatever the file's size. Runtime-agnostic: Workers and Node alike.
 */

const QUOTE = 34;
const LF = 10;
const CR = 13;

export type Delimiter = "," | ";" | "\t";

export interface CsvOptions {
  /** Sniffed from the first line when omitted. */
  delimiter?: Delimiter;
  /** A record longer than this (characters) is an error: a missing closing quote, most likely. */
  maxRecordChars?: number;
}

export class CsvError extends Error {
  override name = "CsvError";
}

/** Counts the candidate delimiters outside quotes in the first line; the most frequent wins (`,` on a tie or none). */
export function sniffDelimiter(firstLine: string): Delimiter {
  const counts = { ",": 0, ";": 0, "\t": 0 };
  let quoted = false;
  for (let i = 0; i < firstLine.length; i++) {
    const ch = firstLine[i]!;
    if (ch === '"') quoted = !quoted;
    else if (!quoted && (ch === "," || ch === ";" || ch === "\t")) counts[ch] += 1;
  }
  let best: Delimiter = ",";
  for (const d of [";", "\t"] as const) if (counts[d] > counts[best]) best = d;
  return best;
}

/**
 * Push-style parser: feed decoded text with push(), get the records completed so far; finish()
 * returns the last one. A record that is one empty field (a blank line) is dropped.
 */
export class CsvParser {
  private buf = "";
  private delimiter: number | undefined;
  private started = false;
  private readonly maxRecordChars: number;
  delimiterUsed: Delimiter | undefined;

  constructor(options: CsvOptions = {}) {
    if (options.delimiter) this.setDelimiter(options.delimiter);
    this.maxRecordChars = options.maxRecordChars ?? 1_000_000;
  }

  private setDelimiter(d: Delimiter) {
    this.delimiterUsed = d;
    this.delimiter = d.charCodeAt(0);
  }

  push(text: string): string[][] {
    return this.run(text, false);
  }

  finish(): string[][] {
    return this.run("", true);
  }

  private run(text: string, final: boolean): string[][] {
    this.buf += text;
    if (!this.started) {
      if (this.buf.length === 0 && !final) return [];
      if (this.buf.charCodeAt(0) === 0xfeff) this.buf = this.buf.slice(1);
      if (this.delimiter === undefined) {
        const nl = this.buf.search(/[\r\n]/);
        if (nl < 0 && !final) {
          if (this.buf.length > this.maxRecordChars) throw new CsvError("the first line is too long");
          return [];
        }
        this.setDelimiter(sniffDelimiter(nl < 0 ? this.buf : this.buf.slice(0, nl)));
      }
      this.started = true;
    }
    const out: string[][] = [];
    const consumed = parseRecords(this.buf, this.delimiter!, final, out);
    this.buf = consumed === this.buf.length ? "" : this.buf.slice(consumed);
    if (this.buf.length > this.maxRecordChars) throw new CsvError(`a record is longer than ${this.maxRecordChars} characters (unclosed quote?)`);
    return out;
  }
}

/** Parses the complete records of s into out; returns how many characters they took. */
function parseRecords(s: string, d: number, final: boolean, out: string[][]): number {
  const n = s.length;
  let i = 0;
  let consumed = 0;
  outer: while (i < n) {
    const rec: string[] = [];
    for (;;) {
      let field: string;
      if (i < n && s.charCodeAt(i) === QUOTE) {
        let j = i + 1;
        let value = "";
        for (;;) {
          const q = s.indexOf('"', j);
          if (q < 0) {
            if (!final) break outer;
            value += s.slice(j); // unterminated quote at the end of the file: take the rest
            i = n;
            break;
          }
          if (q + 1 >= n && !final) break outer; // a "" escape may be split across chunks
          if (q + 1 < n && s.charCodeAt(q + 1) === QUOTE) {
            value += s.slice(j, q + 1);
            j = q + 2;
            continue;
          }
          value += s.slice(j, q);
          i = q + 1;
          break;
        }
        // Lenient: characters after the closing quote belong to the field.
        const k = fieldEnd(s, i, n, d);
        if (k >= n && !final) break outer;
        if (k > i) value += s.slice(i, k);
        i = k;
        field = value;
      } else {
        const k = fieldEnd(s, i, n, d);
        if (k >= n && !final) break outer;
        field = s.slice(i, k);
        i = k;
      }
      rec.push(field);
      if (i >= n) {
        pushRecord(out, rec);
        consumed = n;
        break outer;
      }
      const c = s.charCodeAt(i);
      if (c === d) {
        i++;
        if (i >= n) {
          if (!final) break outer;
          rec.push("");
          pushRecord(out, rec);
          consumed = n;
          break outer;
        }
        continue;
      }
      if (c === CR) {
        if (i + 1 >= n && !final) break outer;
        i += s.charCodeAt(i + 1) === LF ? 2 : 1;
      } else i++;
      pushRecord(out, rec);
      consumed = i;
      break;
    }
  }
  return consumed;
}

function pushRecord(out: string[][], rec: string[]) {
  if (rec.length === 1 && rec[0] === "") return; // blank line
  out.push(rec);
}

/**
 * Reads a byte stream as CSV records, yielded in groups (one group a decoded chunk). The reader
 * is cancelled when the consumer stops early.
 */
export async function* csvRecords(stream: ReadableStream<Uint8Array>, options: CsvOptions = {}): AsyncGenerator<string[][]> {
  const reader = stream.pipeThrough(new TextDecoderStream("utf-8") as unknown as TransformStream<Uint8Array, string>).getReader();
  const parser = new CsvParser(options);
  let done = false;
  try {
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      const recs = parser.push(r.value);
      if (recs.length > 0) yield recs;
    }
    done = true;
    const last = parser.finish();
    if (last.length > 0) yield last;
  } finally {
    if (!done) await reader.cancel().catch(() => {});
    else reader.releaseLock();
  }
}

/** Where an unquoted run of a field ends: at the delimiter, a line break, or n. */
function fieldEnd(s: string, i: number, n: number, d: number): number {
  let k = i;
  while (k < n) {
    const c = s.charCodeAt(k);
    if (c === d || c === LF || c === CR) break;
    k++;
  }
  return k;
}
