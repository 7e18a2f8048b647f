/** @jsxImportSource react */
import { Button } from "@react-email/button";
import { Heading } from "@react-email/heading";
import { Section } from "@react-email/section";
import { Text } from "@react-email/text";
import { z } from "zod";
import { defineSystemTemplate, formatCount, formatTime, httpUrl, layoutVariables } from "./define";
import { blockStyles, EmailLayout, type LayoutOptions } from "./layout";

export const exportReadyVariables = z.object({
  source: z.enum(["list", "segment", "campaign", "campaign_engagement"]),
  rows: z.coerce.number().int().min(0).max(1_000_000_000),
  bytes: z.coerce.number().int().min(0),
  /** The signed link: it is the capability, so this email is the only place it is sent. */
  download_url: httpUrl,
  expires_at: z.iso.datetime({ offset: true }),
  ...layoutVariables,
});
export type ExportReadyVariables = z.output<typeof exportReadyVariables>;

const WHAT = { list: "list", segment: "segment", campaign: "campaign's sends and events", campaign_engagement: "campaign's opens and clicks" } as const;

const size = (bytes: number): string =>
  bytes < 1024 ? `${bytes} bytes` : bytes < 1024 * 1024 ? `${(bytes / 1024).toFixed(1)} KB` : `${(bytes / 1024 / 1024).toFixed(1)} MB`;

export const exportReadySubject = (v: ExportReadyVariables): string => `Your export is ready: ${formatCount(v.rows)} rows`;

/** The notice sent when an export finishes: how big it is, the download link and until when it works. */
export function ExportReadyEmail({ vars, layout }: { vars: ExportReadyVariables; layout?: LayoutOptions }) {
  return (
    <EmailLayout
      {...layout}
      preview={`${formatCount(vars.rows)} rows, ready to download until ${formatTime(vars.expires_at)}`}
      postalAddress={layout?.postalAddress ?? vars.sender_address ?? undefined}
      unsubscribeUrl={vars.unsubscribe_url ?? undefined}
    >
      <Heading as="h1" style={blockStyles.heading}>
        Your export is ready
      </Heading>
      <Text style={blockStyles.text}>{`The ${WHAT[vars.source]} export has ${formatCount(vars.rows)} rows (${size(vars.bytes)}, CSV).`}</Text>
      <Section style={blockStyles.buttonSection}>
        <Button href={vars.download_url} style={blockStyles.button}>
          Download the CSV
        </Button>
      </Section>
      <Text style={blockStyles.text}>
        {`The link works until ${formatTime(vars.expires_at)}; after that the file is deleted. Anyone with the link can download the file, so forward it with care.`}
      </Text>
    </EmailLayout>
  );
}

export const exportReady = defineSystemTemplate({
  id: "sys_export_ready",
  description: "Sent when an export finishes: rows, size, the signed download link and its expiry.",
  variables: exportReadyVariables,
  subject: exportReadySubject,
  element: (v, layout) => <ExportReadyEmail vars={v} layout={layout} />,
});
