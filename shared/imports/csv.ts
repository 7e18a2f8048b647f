/**
 * A streaming CSV reader over Web streams (RFC 4180): quoted fields with delimiters, CR/LF and
 * "" escapes inside, CRLF or LF line ends, a UTF-8 BOM, and `,` `;` or tab delimiters (sniffed
 * from the first line when not given). It holds at most one incomplete record between chunks,
 * so memory stays flat whatever the file's size. Runtime-agnostic: Workers and Node alike.
 *
 * Hostile or broken input stops it with a CsvError naming the row and line, as csv-parse does:
 * a quote still open at the end of the file (CSV_QUOTE_NOT_CLOSED; taking the rest of the file
 * as one field would silently swallow every later row) and a record over `maxRecordChars`
 * (CSV_RECORD_TOO_LONG), which bounds memory whatever the file holds.
 */

import { PermanentError } from "../queue/errors";

const QUOTE = 34;
const LF = 10;
const CR = 13;

export type Delimiter = "," | ";" | "\t";

export interface CsvOptions {
  /** Sniffed from the first line when omitted. */
  delimiter?: Delimiter;
  /**
   * A record longer than this (characters) is an error, so a hostile or broken file cannot make
   * the reader hold an unbounded field. Defaults to 1 MiB (1,048,576 characters).
   */
  maxRecordChars?: number;
}

/** What csv-parse calls the same failures, so the message can be looked up. */
export type CsvErrorCode = "CSV_QUOTE_NOT_CLOSED" | "CSV_RECORD_TOO_LONG";

/**
 * A file that is not CSV where it says. A PermanentError: the same bytes fail the same way on
 * every attempt, so an import stops at once and says which row. `row` counts records as the
 * import does (the header is row 1, blank lines are not rows); `line` is the 1-based line of the
 * file (LF-counted) where the trouble starts.
 */
export class CsvError extends PermanentError {
  constructor(
    readonly code: CsvErrorCode,
    readonly row: number,
    readonly line: number,
    what: string,
  ) {
    super(`CSV row ${row} (line ${line}): ${what} (${code})`);
    this.name = "CsvError";
  }
}

const DEFAULT_MAX_RECORD_CHARS = 1 << 20;

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

/** Where the parser stands in the file: what it has consumed, for error messages. */
interface Position {
  /** Records completed so far (blank lines are not records). */
  rows: number;
  /** Line feeds consumed so far. */
  lines: number;
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
  private readonly pos: Position = { rows: 0, lines: 0 };
  /**
   * The buffer length at which to parse again. An incomplete record is parsed from its start on
   * every attempt, so parsing on every push would be quadratic in a long record fed a few bytes
   * a chunk (a hostile server can send 1-byte chunks): waiting until the buffer has doubled
   * keeps the work linear. With ordinary 64 KiB chunks it changes nothing. Capped at the
   * record limit, so an over-long record is refused as soon as it is seen whatever the chunks.
   */
  private resumeAt = 0;
  delimiterUsed: Delimiter | undefined;

  constructor(options: CsvOptions = {}) {
    if (options.delimiter) this.setDelimiter(options.delimiter);
    this.maxRecordChars = options.maxRecordChars ?? DEFAULT_MAX_RECORD_CHARS;
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
    if (!final && this.buf.length < this.resumeAt) return [];
    if (!this.started) {
      if (this.buf.length === 0 && !final) return [];
      if (this.buf.charCodeAt(0) === 0xfeff) this.buf = this.buf.slice(1);
      if (this.delimiter === undefined) {
        const nl = this.buf.search(/[\r\n]/);
        if (nl < 0 && !final) {
          if (this.buf.length > this.maxRecordChars) throw this.tooLong();
          this.resumeAt = 2 * this.buf.length;
          return [];
        }
        this.setDelimiter(sniffDelimiter(nl < 0 ? this.buf : this.buf.slice(0, nl)));
      }
      this.started = true;
    }
    const out: string[][] = [];
    const consumed = parseRecords(this.buf, this.delimiter!, final, this.maxRecordChars, out, this.pos);
    this.buf = consumed === this.buf.length ? "" : this.buf.slice(consumed);
    // What is left is one incomplete record.
    if (this.buf.length > this.maxRecordChars) throw this.tooLong();
    this.resumeAt = Math.min(2 * this.buf.length, this.maxRecordChars + 1);
    return out;
  }

  private tooLong(): CsvError {
    return recordTooLong(this.pos, this.maxRecordChars);
  }
}

function recordTooLong(pos: Position, max: number): CsvError {
  return new CsvError(
    "CSV_RECORD_TOO_LONG",
    pos.rows + 1,
    pos.lines + 1,
    `the record is longer than ${max} characters; most likely a quote opened there is never closed`,
  );
}

/** The line the quote at `quote` opened on: the record's first line plus the line feeds before it. */
function quoteNotClosed(s: string, recordStart: number, quote: number, pos: Position): CsvError {
  let line = pos.lines + 1;
  for (let k = s.indexOf("\n", recordStart); k >= 0 && k < quote; k = s.indexOf("\n", k + 1)) line++;
  return new CsvError(
    "CSV_QUOTE_NOT_CLOSED",
    pos.rows + 1,
    line,
    'a quoted field opens here and is never closed, so the rest of the file would be one field; close it, or write a quote inside a quoted field as ""',
  );
}

/**
 * Parses the complete records of s into out; returns how many characters they took. Throws
 * CsvError for a quote still open at the end of the file and for a record over `max`.
 */
function parseRecords(s: string, d: number, final: boolean, max: number, out: string[][], pos: Position): number {
  const n = s.length;
  let i = 0;
  let consumed = 0;
  // The next line feed at or after the quoted field being read (n: none), so that line feeds
  // inside quoted fields are counted with one native scan per record that has quoted fields,
  // never per character; stale (behind the field) once passed.
  let nextLf = -1;
  outer: while (i < n) {
    const start = i;
    let inner = 0; // line feeds inside this record's quoted fields
    const rec: string[] = [];
    for (;;) {
      let field: string;
      if (i < n && s.charCodeAt(i) === QUOTE) {
        const open = i;
        let j = i + 1;
        let value = "";
        for (;;) {
          const q = s.indexOf('"', j);
          if (q < 0) {
            if (!final) break outer;
            // Taking the rest of the file as the field would turn every later row into one value.
            throw quoteNotClosed(s, start, open, pos);
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
        if (nextLf < open) {
          nextLf = s.indexOf("\n", open);
          if (nextLf < 0) nextLf = n;
        }
        while (nextLf < i) {
          inner++;
          nextLf = s.indexOf("\n", nextLf + 1);
          if (nextLf < 0) nextLf = n;
        }
        // Lenient: characters after the closing quote belong to the field.
        const k = fieldEnd(s, i, n, d);
        if (k >= n && !final) break outer;
        if (k > i) value += s.slice(i, k);
        i = k;
        field = value;
      } else {
        // A quote inside an unquoted field is a literal character (csv-parse's relax_quotes): it
        // opens nothing, so the record still ends at the line break.
        const k = fieldEnd(s, i, n, d);
        if (k >= n && !final) break outer;
        field = s.slice(i, k);
        i = k;
      }
      rec.push(field);
      if (i >= n) {
        endRecord(out, rec, pos, inner, i - start, max);
        consumed = n;
        break outer;
      }
      const c = s.charCodeAt(i);
      if (c === d) {
        i++;
        if (i >= n) {
          if (!final) break outer;
          rec.push("");
          endRecord(out, rec, pos, inner, i - start, max);
          consumed = n;
          break outer;
        }
        continue;
      }
      const length = i - start;
      if (c === CR) {
        if (i + 1 >= n && !final) break outer;
        i += s.charCodeAt(i + 1) === LF ? 2 : 1;
      } else i++;
      endRecord(out, rec, pos, inner + 1, length, max);
      consumed = i;
      break;
    }
  }
  return consumed;
}

/** Emits a record (unless it is a blank line) and moves the position past it. */
function endRecord(out: string[][], rec: string[], pos: Position, lines: number, length: number, max: number) {
  if (length > max) throw recordTooLong(pos, max);
  pos.lines += lines;
  if (rec.length === 1 && rec[0] === "") return; // blank line
  pos.rows += 1;
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
