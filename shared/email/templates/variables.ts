/**
 * `{{variables}}` in templates: parsing, per-recipient lookup, and the escaping/normalising rules
 * every rendering path shares. The direct render (React per recipient) and the compiled fast path
 * (static chunks + slots) both go through these functions, which is what makes their outputs equal
 * byte for byte.
 */

/** A recipient's values. Primitives are used; objects are walked by dotted names; anything else is missing. */
export type TemplateVariables = Readonly<Record<string, unknown>>;

/** One `{{name}}` or `{{name | default}}` occurrence. */
export interface VariableRef {
  readonly name: string;
  readonly fallback?: string;
}

/** A parsed template string: static text and variable references, in order. */
export type TemplatePart = string | VariableRef;

/**
 * `{{ name }}` or `{{ name | default text }}`; names are letters, digits, `_`, `-` and `.` (a dot
 * walks into nested objects: `{{attributes.plan}}`). The default may be quoted: `{{name | "there"}}`.
 */
const VARIABLE = /\{\{\s*([A-Za-z_][\w.-]*)\s*(?:\|\s*([^}]*?)\s*)?\}\}/g;

const parseCache = new Map<string, readonly TemplatePart[]>();

export function parseTemplate(source: string): readonly TemplatePart[] {
  const cached = parseCache.get(source);
  if (cached) return cached;
  const parts: TemplatePart[] = [];
  let last = 0;
  for (const m of source.matchAll(VARIABLE)) {
    if (m.index > last) parts.push(source.slice(last, m.index));
    const name = m[1]!;
    const raw = m[2];
    parts.push(raw === undefined ? { name } : { name, fallback: unquote(raw) });
    last = m.index + m[0].length;
  }
  if (last < source.length) parts.push(source.slice(last));
  if (parseCache.size > 1000) parseCache.clear();
  parseCache.set(source, parts);
  return parts;
}

function unquote(s: string): string {
  if (s.length >= 2 && (s[0] === '"' || s[0] === "'") && s[s.length - 1] === s[0]) return s.slice(1, -1);
  return s;
}

/** The names a template string refers to. */
export function templateVariables(source: string): string[] {
  return parseTemplate(source).flatMap((p) => (typeof p === "string" ? [] : [p.name]));
}

// Control characters other than tab, line feed, form feed and carriage return.
const CONTROL = /[\u0000-\u0008\u000B\u000E-\u001F\u007F]/g;
const NON_SPACE = /\S/;
const HAS_CONTROL = /[\u0000-\u0008\u000B\u000E-\u001F\u007F]/;

function primitive(value: unknown): string | undefined {
  switch (typeof value) {
    case "string":
      return value;
    case "number":
    case "bigint":
    case "boolean":
      return String(value);
    default:
      return undefined;
  }
}

/**
 * A variable's value for one recipient: the given value (primitives only; control characters
 * removed), else the default when the value is missing, empty or blank, else "".
 */
export function lookup(variables: TemplateVariables, ref: VariableRef): string {
  const { name } = ref;
  let value: unknown = Object.hasOwn(variables, name) ? variables[name] : undefined;
  if (value === undefined && name.includes(".")) {
    value = variables;
    for (const key of name.split(".")) {
      if (value === null || typeof value !== "object" || !Object.hasOwn(value, key)) {
        value = undefined;
        break;
      }
      value = (value as Record<string, unknown>)[key];
    }
  }
  let s = primitive(value);
  if (s !== undefined && HAS_CONTROL.test(s)) s = s.replace(CONTROL, "");
  return s === undefined || s === "" || !NON_SPACE.test(s) ? (ref.fallback ?? "") : s;
}

/** Fills a parsed template with plain (unescaped) values. */
export function interpolate(parts: readonly TemplatePart[], variables: TemplateVariables): string {
  let out = "";
  for (const part of parts) out += typeof part === "string" ? part : lookup(variables, part);
  return out;
}

const HTML_SPECIAL = /["'&<>]/;

/**
 * HTML escaping for text and attribute values, exactly as React's server renderer does it
 * (escapeTextForBrowser), so a slot filled with this equals React rendering the value.
 */
export function escapeHtml(value: string): string {
  if (!HTML_SPECIAL.test(value)) return value;
  let out = "";
  let last = 0;
  for (let i = 0; i < value.length; i++) {
    let rep: string;
    switch (value.charCodeAt(i)) {
      case 34:
        rep = "&quot;";
        break;
      case 38:
        rep = "&amp;";
        break;
      case 39:
        rep = "&#x27;";
        break;
      case 60:
        rep = "&lt;";
        break;
      case 62:
        rep = "&gt;";
        break;
      default:
        continue;
    }
    if (last !== i) out += value.slice(last, i);
    out += rep;
    last = i + 1;
  }
  return last === 0 ? out : out + value.slice(last);
}

const ALLOWED_SCHEMES = new Set(["http", "https", "mailto", "tel"]);
const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):/;
const URL_CONTROL = /[\u0000-\u001F\u007F\u200B]/g;

/**
 * A link target that is safe to put in an href: control characters (tab and newlines included,
 * as the URL parser does) and zero-width spaces removed, trimmed, inner spaces as %20, and only http(s), mailto and
 * tel schemes (or a relative URL). Anything else (javascript:, data:, vbscript:) becomes "".
 */
export function safeHref(url: string): string {
  let s = url.replace(URL_CONTROL, "").trim();
  const scheme = SCHEME.exec(s);
  if (scheme && !ALLOWED_SCHEMES.has(scheme[1]!.toLowerCase())) return "";
  if (s.includes(" ")) s = s.replace(/ +/g, "%20");
  return s;
}

/** The whitespace html-to-text collapses (its default `whitespaceCharacters`). */
const TEXT_WHITESPACE = /[ \t\r\n\f\u200b]+/g;

/** A value as html-to-text shows it inside a line: whitespace runs become one space. */
export function collapseWhitespace(value: string): string {
  return value.replace(TEXT_WHITESPACE, " ");
}

/** An href as html-to-text shows it after a link's label (`mailto:` dropped, `#anchors` hidden). */
export function hrefForText(href: string): string {
  const h = href.startsWith("mailto:") ? href.slice(7) : href;
  return h.startsWith("#") ? "" : h;
}

/** Subjects are one header line: each line break or tab becomes a space (char by char, so filling parts equals filling the whole). */
export function subjectValue(value: string): string {
  return value.replace(/[\r\n\t]/g, " ");
}

/**
 * The plain-text part's canonical form, applied to every rendered text part: no spaces at line
 * ends, single spaces inside lines, at most one blank line between blocks, no blank lines at the
 * edges. html-to-text's output already has this shape; applying it again after a compiled fill
 * removes the marks an empty or space-padded value leaves.
 */
export function normalizeText(text: string): string {
  return text
    .replace(/ {2,}/g, " ")
    .replace(/ *\n */g, "\n")
    .replace(/\n{3,}/g, "\n\n")
    .replace(/^[ \n]+|[ \n]+$/g, "");
}
