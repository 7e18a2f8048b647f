import { render, toPlainText } from "@react-email/render";
import type { ReactElement } from "react";
import { normalizeText } from "./variables";

/** What a template renders to: the three parts a Mailer's OutgoingMessage carries. */
export interface RenderedEmail {
  subject: string;
  html: string;
  text: string;
}

const blockBreaks = { leadingLineBreaks: 2, trailingLineBreaks: 2 } as const;

/**
 * html-to-text options for the plain-text part, on top of react-email's own selectors (which skip
 * images and `data-skip-in-text` elements and print a link as "label url"). Every block is
 * separated by one blank line (react-email lays emails out in nested tables: its default of one
 * line break for cells is overridden), headings keep their case, and a link's URL is always shown.
 * These choices also keep the text a pure function of its words, which the compiled fast path
 * relies on (see compile.ts).
 */
export const htmlToTextOptions = {
  wordwrap: false as const,
  selectors: [
    ...(["h1", "h2", "h3", "h4", "h5", "h6"] as const).map((selector) => ({
      selector,
      format: "heading",
      options: { ...blockBreaks, uppercase: false },
    })),
    ...(["td", "th", "div", "p"] as const).map((selector) => ({ selector, format: "block", options: blockBreaks })),
    { selector: "a", options: { linkBrackets: false as const, hideLinkHrefIfSameAsText: false } },
  ],
};

/** The plain-text part for a rendered HTML document. */
export function htmlToText(html: string): string {
  return normalizeText(toPlainText(html, htmlToTextOptions));
}

/**
 * Renders a react-email element once into HTML (XHTML doctype, as react-email emits it) and the
 * plain-text part derived from that same HTML, as `render(element, { plainText: true })` would,
 * without rendering the tree twice.
 */
export async function renderEmail(element: ReactElement): Promise<{ html: string; text: string }> {
  const html = await render(element);
  return { html, text: htmlToText(html) };
}
