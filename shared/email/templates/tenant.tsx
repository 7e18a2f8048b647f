/** @jsxImportSource react */
import { Button } from "@react-email/button";
import { Heading } from "@react-email/heading";
import { Hr } from "@react-email/hr";
import { Section } from "@react-email/section";
import { Text } from "@react-email/text";
import { z } from "zod";
import { issuesOf, TemplateError } from "./errors";
import { blockStyles, EmailLayout, type LayoutOptions } from "./layout";
import { type RenderedEmail, renderEmail } from "./render";
import { interpolate, parseTemplate, safeHref, subjectValue, type TemplateVariables } from "./variables";

/** One block of a tenant template (`templates.blocks`); strings may hold `{{variables}}`. */
export const templateBlockSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("heading"), text: z.string().max(1_000) }),
  z.object({ type: z.literal("text"), text: z.string().max(20_000) }),
  z.object({ type: z.literal("button"), text: z.string().max(200), href: z.string().max(2_048) }),
  z.object({ type: z.literal("divider") }),
]);
export type TemplateBlock = z.infer<typeof templateBlockSchema>;

/** A tenant template as stored in the `templates` table. */
export const tenantTemplateSchema = z.object({
  subject: z.string().max(998),
  blocks: z.array(templateBlockSchema).max(200),
});
export type TenantTemplate = z.infer<typeof tenantTemplateSchema>;

/** Checks a stored template against the block schema (TemplateError "invalid_template" naming the paths). */
export function parseTenantTemplate(template: unknown): TenantTemplate {
  const parsed = tenantTemplateSchema.safeParse(template);
  if (!parsed.success) {
    throw new TemplateError("invalid_template", "the template does not fit the block schema", issuesOf(parsed.error), {
      cause: parsed.error,
    });
  }
  return parsed.data;
}

/** The variable the layout's footer link is filled from, per recipient. */
export const UNSUBSCRIBE_VARIABLE = "unsubscribe_url";
/** The variable the footer's postal address comes from when the options give none. */
export const SENDER_ADDRESS_VARIABLE = "sender_address";

/**
 * How a template's strings become what React renders: the direct path fills in a recipient's
 * values; the compiler puts placeholder tokens in their place.
 */
export interface Resolver {
  /** A text string (heading, paragraph, label, footer): plain text, React escapes it. */
  text(template: string): string;
  /** A link target: filled as a whole, then made safe (see safeHref). */
  href(template: string): string;
}

export function valueResolver(variables: TemplateVariables): Resolver {
  return {
    text: (template) => interpolate(parseTemplate(template), variables),
    href: (template) => safeHref(interpolate(parseTemplate(template), variables)),
  };
}

export interface TenantEmailProps {
  blocks: readonly TemplateBlock[];
  resolve: Resolver;
  layout?: LayoutOptions;
  /** Resolved already: the footer shows the link when it is non-empty. */
  unsubscribeUrl?: string;
}

/** A tenant's blocks inside the shared layout. */
export function TenantEmail({ blocks, resolve, layout, unsubscribeUrl }: TenantEmailProps) {
  const postalAddress = layout?.postalAddress ?? resolve.text(`{{${SENDER_ADDRESS_VARIABLE}}}`);
  return (
    <EmailLayout brandName={layout?.brandName} postalAddress={postalAddress} unsubscribeUrl={unsubscribeUrl}>
      {blocks.map((block, i) => {
        switch (block.type) {
          case "heading":
            return (
              <Heading key={i} as="h1" style={blockStyles.heading}>
                {resolve.text(block.text)}
              </Heading>
            );
          case "text":
            return (
              <Text key={i} style={blockStyles.text}>
                {resolve.text(block.text)}
              </Text>
            );
          case "button":
            return (
              <Section key={i} style={blockStyles.buttonSection}>
                <Button href={resolve.href(block.href)} style={blockStyles.button}>
                  {resolve.text(block.text)}
                </Button>
              </Section>
            );
          case "divider":
            return <Hr key={i} style={blockStyles.divider} />;
        }
      })}
    </EmailLayout>
  );
}

/**
 * Renders a tenant template for one recipient: `{{name}}` / `{{name | default}}` filled from the
 * variables (unknown ones render as the default or ""), HTML-escaped by React in the HTML part,
 * plain in the text part and the subject. `unsubscribe_url` puts the unsubscribe link in the
 * footer; `sender_address` fills the footer's postal address unless `layout.postalAddress` is set.
 * For many recipients of one template, compileTemplate (compile.ts) gives the same output faster.
 */
export async function renderTenantTemplate(
  template: TenantTemplate,
  variables: TemplateVariables = {},
  layout?: LayoutOptions,
): Promise<RenderedEmail> {
  const { subject, blocks } = parseTenantTemplate(template);
  const resolve = valueResolver(variables);
  const unsubscribeUrl = resolve.href(`{{${UNSUBSCRIBE_VARIABLE}}}`);
  const { html, text } = await renderEmail(
    <TenantEmail blocks={blocks} resolve={resolve} layout={layout} unsubscribeUrl={unsubscribeUrl || undefined} />,
  );
  return { subject: subjectValue(interpolate(parseTemplate(subject), variables)), html, text };
}
