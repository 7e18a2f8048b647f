import { createElement } from "react";
import type { LayoutOptions } from "./layout";
import { type RenderedEmail, renderEmail } from "./render";
import {
  type Resolver,
  SENDER_ADDRESS_VARIABLE,
  TenantEmail,
  type TenantTemplate,
  parseTenantTemplate,
  UNSUBSCRIBE_VARIABLE,
} from "./tenant";
import {
  collapseWhitespace,
  escapeHtml,
  hrefForText,
  interpolate,
  lookup,
  normalizeText,
  parseTemplate,
  safeHref,
  subjectValue,
  type TemplatePart,
  type TemplateVariables,
  type VariableRef,
} from "./variables";

/**
 * The campaign fast path. A template is rendered ONCE with react-email, with a unique placeholder
 * token where each variable goes; the HTML, the plain text and the subject are then split at the
 * tokens into static chunks and slots. Filling a recipient is string concatenation: each slot's
 * value is looked up, escaped for its context (HTML text and attributes alike, as React escapes;
 * whitespace-collapsed in the text part; one line in the subject), and joined with the chunks.
 * No React per recipient.
 *
 * The fill equals renderTenantTemplate for the same variables, byte for byte:
 * - a variable in text content is one slot whose value React would escape with the same rules;
 * - a link target that holds variables is ONE slot computed as a whole (filled, then safeHref), so
 *   scheme checks see the final URL, exactly as the direct path computes it before React sees it;
 * - the plain text is html-to-text's output, a function of the words only (wordwrap off, headings
 *   keep their case, every block separated by a blank line); filled values are collapsed as
 *   html-to-text collapses whitespace, and normalizeText (applied on both paths) removes what an
 *   empty or space-padded value leaves behind; link URLs in the text follow html-to-text's rules
 *   (mailto: dropped, #anchors hidden);
 * - the footer's unsubscribe link exists only when the recipient has an unsubscribe_url: both
 *   shapes are compiled, and fill picks one per recipient.
 */

type Slot = { readonly kind: "var"; readonly ref: VariableRef } | { readonly kind: "href"; readonly parts: readonly TemplatePart[] };

/** A string split at the tokens: statics.length === slots.length + 1. */
interface Chunks {
  readonly statics: readonly string[];
  readonly slots: readonly number[];
}

interface Shape {
  readonly html: Chunks;
  readonly text: Chunks;
}

export interface CompiledTemplate {
  /** The variable names the template uses (the layout's unsubscribe_url and sender_address included). */
  readonly variables: readonly string[];
  /** How many distinct slots a fill computes. */
  readonly slotCount: number;
  /** One recipient's message: no React, no parsing. */
  fill(variables: TemplateVariables): RenderedEmail;
}

const TOKEN_PREFIX = "zzpm";

function randomNonce(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  let s = "";
  for (const b of bytes) s += (b % 36).toString(36);
  return s;
}

/** Hands out placeholder tokens, one per distinct variable reference or link target. */
class Tokenizer implements Resolver {
  readonly slots: Slot[] = [];
  private readonly byKey = new Map<string, string>();

  constructor(readonly nonce: string) {}

  private token(key: string, slot: () => Slot): string {
    let token = this.byKey.get(key);
    if (token === undefined) {
      token = `${TOKEN_PREFIX}${this.nonce}_${this.slots.length}_zz`;
      this.slots.push(slot());
      this.byKey.set(key, token);
    }
    return token;
  }

  private varToken(ref: VariableRef): string {
    return this.token(`v\0${ref.name}\0${ref.fallback ?? ""}`, () => ({ kind: "var", ref }));
  }

  text(template: string): string {
    let out = "";
    for (const part of parseTemplate(template)) out += typeof part === "string" ? part : this.varToken(part);
    return out;
  }

  href(template: string): string {
    const parts = parseTemplate(template);
    // A static link is the same for everyone: render it as the direct path does.
    if (parts.every((p) => typeof p === "string")) return safeHref(template);
    return this.token(`h\0${template}`, () => ({ kind: "href", parts }));
  }

  subject(template: string): string {
    let out = "";
    for (const part of parseTemplate(template)) out += typeof part === "string" ? subjectValue(part) : this.varToken(part);
    return out;
  }

  split(rendered: string): Chunks {
    const pattern = new RegExp(`${TOKEN_PREFIX}${this.nonce}_(\\d+)_zz`, "g");
    const statics: string[] = [];
    const slots: number[] = [];
    let last = 0;
    for (const m of rendered.matchAll(pattern)) {
      const slot = Number(m[1]);
      if (!(slot < this.slots.length)) throw new Error(`compileTemplate: unknown slot ${slot}`);
      statics.push(rendered.slice(last, m.index));
      slots.push(slot);
      last = m.index + m[0].length;
    }
    statics.push(rendered.slice(last));
    // A token the renderer altered (escaped, cased, wrapped) would leave a fragment behind.
    if (statics.some((s) => s.includes(this.nonce))) throw new Error("compileTemplate: a placeholder was altered in rendering");
    return { statics, slots };
  }
}

function join(chunks: Chunks, values: readonly string[]): string {
  const { statics, slots } = chunks;
  let out = statics[0]!;
  for (let i = 0; i < slots.length; i++) out += values[slots[i]!]! + statics[i + 1]!;
  return out;
}

/**
 * Compiles a tenant template (`{ subject, blocks }`, as stored) for many recipients. Rendering
 * happens here, twice in parallel (with and without the footer's unsubscribe link); `fill` is
 * then pure string work.
 */
export async function compileTemplate(source: TenantTemplate, layout?: LayoutOptions): Promise<CompiledTemplate> {
  const { subject, blocks } = parseTenantTemplate(source);

  // A nonce that appears nowhere in the inputs, so every token found afterwards is ours.
  const inputs = JSON.stringify([source, layout ?? null]);
  let nonce = randomNonce();
  while (inputs.includes(nonce)) nonce = randomNonce();
  const tokens = new Tokenizer(nonce);

  const subjectChunks = tokens.split(tokens.subject(subject));
  const unsubscribeToken = tokens.href(`{{${UNSUBSCRIBE_VARIABLE}}}`);
  const unsubscribeSlot = tokens.slots.length - 1;
  const shape = async (unsubscribeUrl: string | undefined): Promise<Shape> => {
    const { html, text } = await renderEmail(createElement(TenantEmail, { blocks, resolve: tokens, layout, unsubscribeUrl }));
    return { html: tokens.split(html), text: tokens.split(text) };
  };
  const [withLink, withoutLink] = await Promise.all([shape(unsubscribeToken), shape(undefined)]);

  const slots = tokens.slots;
  const n = slots.length;
  const textFor = slots.map((s) => (s.kind === "var" ? collapseWhitespace : hrefForText));
  const variables = [
    ...new Set(
      slots.flatMap((s) =>
        s.kind === "var" ? [s.ref.name] : s.parts.flatMap((p) => (typeof p === "string" ? [] : [p.name])),
      ),
    ),
  ];
  if (layout?.postalAddress === undefined && !variables.includes(SENDER_ADDRESS_VARIABLE)) variables.push(SENDER_ADDRESS_VARIABLE);

  return {
    variables,
    slotCount: n,
    fill(vars: TemplateVariables): RenderedEmail {
      const raw = new Array<string>(n);
      const html = new Array<string>(n);
      const text = new Array<string>(n);
      const subj = new Array<string>(n);
      for (let i = 0; i < n; i++) {
        const slot = slots[i]!;
        const value = slot.kind === "var" ? lookup(vars, slot.ref) : safeHref(interpolate(slot.parts, vars));
        raw[i] = value;
        html[i] = escapeHtml(value);
        text[i] = textFor[i]!(value);
        subj[i] = slot.kind === "var" ? subjectValue(value) : value;
      }
      const shape = raw[unsubscribeSlot] !== "" ? withLink : withoutLink;
      return {
        subject: join(subjectChunks, subj),
        html: join(shape.html, html),
        text: normalizeText(join(shape.text, text)),
      };
    },
  };
}
