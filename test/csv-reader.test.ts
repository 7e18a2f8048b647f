/**
 * The CSV reader under hostile or broken input: an unclosed quote stops it with an error naming
 * the row and line (it used to swallow the rest of the file as one field), a quote inside an
 * unquoted field opens nothing, a record over the limit is refused wherever it lies, and a long
 * record fed a byte at a time costs linear, not quadratic, time.
 */
import { describe, expect, it } from "vitest";
import { CsvError, CsvParser, csvRecords } from "../shared/imports/csv";
import { PermanentError } from "../shared/queue/errors";

function parseAll(text: string, chunk: number, maxRecordChars?: number): string[][] {
  const p = new CsvParser({ maxRecordChars });
  const out: string[][] = [];
  for (let i = 0; i < text.length; i += chunk) out.push(...p.push(text.slice(i, i + chunk)));
  out.push(...p.finish());
  return out;
}

function caught(fn: () => unknown): CsvError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(CsvError);
    return err as CsvError;
  }
  throw new Error("expected a CsvError");
}

/** A header and `rows` plain data rows, row `broken` (file row number, header = 1) replaced. */
function file(rows: number, broken: number, brokenRow: string): string {
  let s = "email,name\n";
  for (let r = 2; r <= rows + 1; r++) s += r === broken ? `${brokenRow}\n` : `user${r}@example.com,Name ${r}\n`;
  return s;
}

describe("CSV reader: an unclosed quote", () => {
  it("stops with CSV_QUOTE_NOT_CLOSED naming the row and line, at every chunk size, instead of swallowing the rest", () => {
    // The reported case: 1,001 rows came back as 2 records, the second a 15,792-character field.
    const text = file(1000, 2, 'bob@example.com,"Bob');
    for (const chunk of [1, 7, 64, 4096, text.length]) {
      const err = caught(() => parseAll(text, chunk));
      expect(err.code).toBe("CSV_QUOTE_NOT_CLOSED");
      expect([err.row, err.line]).toEqual([2, 2]);
      expect(err.message).toMatch(/^CSV row 2 \(line 2\): .*never closed/);
    }
  });

  it("counts lines inside quoted fields and leaves blank lines out of the row number", () => {
    const text = 'email,name\na@x.io,"two\nlines"\n\nb@x.io,"Bee"\nc@x.io,"open\nd@x.io,D\n';
    for (const chunk of [1, 3, 1000]) {
      const err = caught(() => parseAll(text, chunk));
      // Rows: header 1, a 2, b 3, c 4. Lines: header 1, a 2-3, blank 4, b 5, c 6.
      expect([err.code, err.row, err.line]).toEqual(["CSV_QUOTE_NOT_CLOSED", 4, 6]);
    }
  });

  it("is a PermanentError, and csvRecords throws it from the stream", async () => {
    const bytes = new TextEncoder().encode(file(50, 30, '"x@y.z,Unclosed'));
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < bytes.length; i += 100) c.enqueue(bytes.slice(i, i + 100));
        c.close();
      },
    });
    const read = async () => {
      for await (const _ of csvRecords(stream));
    };
    const err = await read().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PermanentError);
    expect(err).toMatchObject({ code: "CSV_QUOTE_NOT_CLOSED", row: 30, line: 30 });
  });

  it("still reads quotes closed on a later line, and text after a closing quote", () => {
    expect(parseAll('a,"b\nc"\n"ab"cd,e\n', 2)).toEqual([["a", "b\nc"], ["abcd", "e"]]);
  });
});

describe("CSV reader: a quote inside an unquoted field", () => {
  it("is a literal character that opens nothing: the record ends at its line break", () => {
    const text = 'email,name\nx@y.z,5" floppy\nw@y.z,Dr. "Who\nlast@y.z,end\n';
    for (const chunk of [1, 4, 1000]) {
      expect(parseAll(text, chunk)).toEqual([
        ["email", "name"],
        ["x@y.z", '5" floppy'],
        ["w@y.z", 'Dr. "Who'],
        ["last@y.z", "end"],
      ]);
    }
  });
});

describe("CSV reader: the record size limit", () => {
  it("defaults to 1 MiB and names the row of a longer record, quoted or not, complete or not", () => {
    const long = "x".repeat((1 << 20) + 1);
    for (const text of [`a,b\nc,d\n${long},e\nf,g\n`, `a,b\nc,d\n"${long}",e\n`, `a,b\nc,d\n"${long}`]) {
      for (const chunk of [65536, text.length]) {
        const err = caught(() => parseAll(text, chunk));
        expect([err.code, err.row, err.line]).toEqual(["CSV_RECORD_TOO_LONG", 3, 3]);
        expect(err.message).toMatch(/^CSV row 3 \(line 3\): the record is longer than 1048576 characters/);
      }
    }
    // Just under the limit is fine.
    const under = "y".repeat((1 << 20) - 10);
    expect(parseAll(`a\n${under}\n`, 65536)).toEqual([["a"], [under]]);
  });

  it("refuses an over-long first line before the delimiter is known", () => {
    const p = new CsvParser({ maxRecordChars: 100 });
    const err = caught(() => {
      for (let i = 0; i < 300; i++) p.push("x");
    });
    expect([err.code, err.row, err.line]).toEqual(["CSV_RECORD_TOO_LONG", 1, 1]);
  });

  it("stays linear for a long record fed one character a chunk (a slow or hostile server)", () => {
    // Re-parsing the pending record on every push took time quadratic in its length.
    const field = "z".repeat(300_000);
    const text = `h\n${field}\nend\n`;
    const started = performance.now();
    expect(parseAll(text, 1)).toEqual([["h"], [field], ["end"]]);
    expect(performance.now() - started).toBeLessThan(3000);
  });
});
