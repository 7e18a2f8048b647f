/** @jsxImportSource react */
import { Button } from "@react-email/button";
import { Heading } from "@react-email/heading";
import { Section } from "@react-email/section";
import { Text } from "@react-email/text";
import { z } from "zod";
import { defineSystemTemplate, formatCount, httpUrl, layoutVariables } from "./define";
import { blockStyles, colors, EmailLayout, type LayoutOptions } from "./layout";

const count = z.coerce.number().int().min(0).max(1_000_000_000);

export const importFinishedVariables = z.object({
  rows_read: count,
  created: count,
  updated: count,
  invalid: count,
  duplicate: count,
  file_name: z.string().max(500).nullish(),
  list_name: z.string().max(200).nullish(),
  /** Where the CSV of rejected rows can be downloaded. */
  error_report_url: httpUrl.nullish(),
  ...layoutVariables,
});
export type ImportFinishedVariables = z.output<typeof importFinishedVariables>;

export function importFinishedSubject(v: ImportFinishedVariables): string {
  const skipped = v.invalid + v.duplicate;
  return (
    `Contact import finished: ${formatCount(v.created)} created, ${formatCount(v.updated)} updated` +
    (skipped > 0 ? `, ${formatCount(skipped)} skipped` : "")
  );
}

const cell = { padding: "6px 0", fontSize: "15px", lineHeight: "22px", borderBottom: `1px solid ${colors.rule}` };

/** The notice sent when a contact import finishes: what was read, created, updated and rejected. */
export function ImportFinishedEmail({ vars, layout }: { vars: ImportFinishedVariables; layout?: LayoutOptions }) {
  const rows: [string, number][] = [
    ["Rows read", vars.rows_read],
    ["Contacts created", vars.created],
    ["Contacts updated", vars.updated],
    ["Invalid rows", vars.invalid],
    ["Duplicate rows", vars.duplicate],
  ];
  const source = vars.file_name ? ` from ${vars.file_name}` : "";
  const target = vars.list_name ? ` into the list ${vars.list_name}` : "";
  const skipped = vars.invalid + vars.duplicate;
  return (
    <EmailLayout
      {...layout}
      preview={`${formatCount(vars.created)} created, ${formatCount(vars.updated)} updated, ${formatCount(skipped)} skipped`}
      postalAddress={layout?.postalAddress ?? vars.sender_address ?? undefined}
      unsubscribeUrl={vars.unsubscribe_url ?? undefined}
    >
      <Heading as="h1" style={blockStyles.heading}>
        Your contact import has finished
      </Heading>
      <Text style={blockStyles.text}>{`We read ${formatCount(vars.rows_read)} rows${source}${target}.`}</Text>
      <table
        role="presentation"
        width="100%"
        cellPadding={0}
        cellSpacing={0}
        data-text-format="dataTable"
        style={{ borderCollapse: "collapse", color: colors.text, margin: "8px 0 16px" }}
      >
        <tbody>
          {rows.map(([label, value]) => (
            <tr key={label}>
              <td style={cell}>{label}</td>
              <td style={{ ...cell, textAlign: "right", fontWeight: 600 }}>{formatCount(value)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {skipped > 0 ? (
        <Text style={blockStyles.text}>
          {`${formatCount(skipped)} rows were skipped: invalid rows have a missing or malformed address; duplicates repeat an address seen earlier in the file.`}
        </Text>
      ) : null}
      {vars.error_report_url ? (
        <Section style={blockStyles.buttonSection}>
          <Button href={vars.error_report_url} style={blockStyles.button}>
            Download the error report
          </Button>
        </Section>
      ) : null}
    </EmailLayout>
  );
}

export const importFinished = defineSystemTemplate({
  id: "sys_import_finished",
  description: "Sent when a contact import finishes: rows read, created, updated, invalid, duplicate; link to the error report.",
  variables: importFinishedVariables,
  subject: importFinishedSubject,
  element: (v, layout) => <ImportFinishedEmail vars={v} layout={layout} />,
});
