/** @jsxImportSource react */
import { Heading } from "@react-email/heading";
import { Text } from "@react-email/text";
import { z } from "zod";
import { defineSystemTemplate, formatTime, layoutVariables } from "./define";
import { blockStyles, EmailLayout, type LayoutOptions } from "./layout";

export const webhookDisabledVariables = z.object({
  endpoint_id: z.string().min(1).max(128),
  /** Shown as text, not as a link: it is the customer's receiver, not a page to visit. */
  endpoint_url: z.string().min(1).max(2_000),
  /** Why it was disabled, in words ("the receiver answered 410 Gone"). */
  reason: z.string().min(1).max(500),
  disabled_at: z.iso.datetime({ offset: true }),
  ...layoutVariables,
});
export type WebhookDisabledVariables = z.output<typeof webhookDisabledVariables>;

export const webhookDisabledSubject = (v: WebhookDisabledVariables): string => `Webhook endpoint disabled: ${v.endpoint_url}`.slice(0, 998);

/** The notice sent to an endpoint's owner when the platform stops delivering to it. */
export function WebhookDisabledEmail({ vars, layout }: { vars: WebhookDisabledVariables; layout?: LayoutOptions }) {
  return (
    <EmailLayout
      {...layout}
      preview={`We stopped sending events to ${vars.endpoint_url}`.slice(0, 150)}
      postalAddress={layout?.postalAddress ?? vars.sender_address ?? undefined}
      unsubscribeUrl={vars.unsubscribe_url ?? undefined}
    >
      <Heading as="h1" style={blockStyles.heading}>
        A webhook endpoint was disabled
      </Heading>
      <Text style={blockStyles.text}>{`We stopped sending events to ${vars.endpoint_url} on ${formatTime(vars.disabled_at)}: ${vars.reason}.`}</Text>
      <Text style={blockStyles.text}>
        Events published from now on are not delivered to it; your other endpoints still receive theirs. When the receiver
        works again, register it as a new endpoint.
      </Text>
      <Text style={blockStyles.muted}>{`Endpoint ${vars.endpoint_id}. Its delivery log shows every attempt and the answers it got.`}</Text>
    </EmailLayout>
  );
}

export const webhookDisabled = defineSystemTemplate({
  id: "sys_webhook_disabled",
  description: "Sent to an endpoint's notify_email when the platform disables it (410 Gone, or failing for days): URL, reason, time.",
  variables: webhookDisabledVariables,
  subject: webhookDisabledSubject,
  element: (v, layout) => <WebhookDisabledEmail vars={v} layout={layout} />,
});
