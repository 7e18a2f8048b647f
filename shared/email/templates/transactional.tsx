/** @jsxImportSource react */
import { Button } from "@react-email/button";
import { Heading } from "@react-email/heading";
import { Section } from "@react-email/section";
import { Text } from "@react-email/text";
import { z } from "zod";
import { defineSystemTemplate, httpUrl, layoutVariables } from "./define";
import { blockStyles, EmailLayout, type LayoutOptions } from "./layout";

export const transactionalVariables = z
  .object({
    title: z.string().trim().min(1).max(200),
    /** Paragraphs separated by blank lines. */
    body: z.string().max(20_000).default(""),
    button_label: z.string().trim().min(1).max(100).nullish(),
    button_url: httpUrl.nullish(),
    /** Defaults to the title. */
    subject: z.string().trim().min(1).max(998).nullish(),
    /** The inbox preview line. */
    preview: z.string().max(150).nullish(),
    /** A small print line under the body. */
    footnote: z.string().max(1_000).nullish(),
    ...layoutVariables,
  })
  .refine((v) => !v.button_label === !v.button_url, {
    message: "button_label and button_url go together",
    path: ["button_url"],
  });
export type TransactionalVariables = z.output<typeof transactionalVariables>;

export const paragraphs = (body: string): string[] =>
  body
    .split(/\r?\n[ \t]*\r?\n/)
    .map((p) => p.trim())
    .filter((p) => p !== "");

/** A generic notification: a title, paragraphs, an optional button. */
export function TransactionalEmail({ vars, layout }: { vars: TransactionalVariables; layout?: LayoutOptions }) {
  return (
    <EmailLayout
      {...layout}
      preview={vars.preview ?? undefined}
      postalAddress={layout?.postalAddress ?? vars.sender_address ?? undefined}
      unsubscribeUrl={vars.unsubscribe_url ?? undefined}
    >
      <Heading as="h1" style={blockStyles.heading}>
        {vars.title}
      </Heading>
      {paragraphs(vars.body).map((p, i) => (
        <Text key={i} style={blockStyles.text}>
          {p}
        </Text>
      ))}
      {vars.button_label && vars.button_url ? (
        <Section style={blockStyles.buttonSection}>
          <Button href={vars.button_url} style={blockStyles.button}>
            {vars.button_label}
          </Button>
        </Section>
      ) : null}
      {vars.footnote ? <Text style={blockStyles.muted}>{vars.footnote}</Text> : null}
    </EmailLayout>
  );
}

export const transactional = defineSystemTemplate({
  id: "sys_transactional",
  description: "A generic notification: title, paragraphs, optional button.",
  variables: transactionalVariables,
  subject: (v) => v.subject ?? v.title,
  element: (v, layout) => <TransactionalEmail vars={v} layout={layout} />,
});
