/**
 * CSV writing for exports: RFC 4180 (CRLF line ends; a field holding a comma, a double quote,
 * CR or LF is quoted, its quotes doubled) with formula-injection protection per OWASP: a cell
 * beginning with =, +, -, @, a tab or a carriage return gets a leading single quote, so a
 * spreadsheet shows it as text instead of evaluating it.
 */
export type CsvValue = string | number | boolean | bigint | Date | null | undefined | Record<string, unknown> | unknown[];

const FORMULA_START = /^[=+\-@\t\r]/;
const NEEDS_QUOTES = /[",\r\n]/;

/** One cell's text: null/undefined → empty, dates → ISO 8601, objects → JSON. */
export function csvCell(value: CsvValue): string {
  let text: string;
  if (value === null || value === undefined) return "";
  if (typeof value === "string") text = value;
  else if (value instanceof Date) text = value.toISOString();
  else if (typeof value === "object") text = JSON.stringify(value);
  else text = String(value);
  // Numbers are written by us (ids, counts): a negative number is data, not a formula.
  if (typeof value !== "number" && typeof value !== "bigint" && FORMULA_START.test(text)) text = `'${text}`;
  return NEEDS_QUOTES.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** One record, CRLF-terminated. */
export function csvRow(values: readonly CsvValue[]): string {
  let line = "";
  for (let i = 0; i < values.length; i++) {
    if (i > 0) line += ",";
    line += csvCell(values[i]);
  }
  return `${line}\r\n`;
}
