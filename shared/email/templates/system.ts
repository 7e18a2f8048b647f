import type { SystemTemplate } from "./define";
import { TemplateError, issuesOf } from "./errors";
import { exportReady } from "./export-ready";
import { importFinished } from "./import-finished";
import type { LayoutOptions } from "./layout";
import { type RenderedEmail, renderEmail } from "./render";
import { transactional } from "./transactional";
import { webhookDisabled } from "./webhook-disabled";

/** PenguinMails' own templates, by id. Each has its variables schema (zod), subject and component. */
export const systemTemplates = {
  sys_transactional: transactional,
  sys_import_finished: importFinished,
  sys_export_ready: exportReady,
  sys_webhook_disabled: webhookDisabled,
} as const;

export type SystemTemplateId = keyof typeof systemTemplates;

export function isSystemTemplateId(id: string): id is SystemTemplateId {
  return Object.hasOwn(systemTemplates, id);
}

/**
 * Renders a system template: parses the variables with its schema (TemplateError
 * "invalid_variables" naming the paths when they do not fit), then subject, HTML and text.
 */
export async function renderSystemTemplate(
  id: string,
  variables: unknown,
  layout: LayoutOptions = {},
): Promise<RenderedEmail> {
  if (!isSystemTemplateId(id)) throw new TemplateError("unknown_template", `no system template "${id}"`);
  const template = systemTemplates[id] as SystemTemplate;
  const parsed = template.variables.safeParse(variables);
  if (!parsed.success) {
    throw new TemplateError("invalid_variables", `variables do not fit ${id}`, issuesOf(parsed.error), { cause: parsed.error });
  }
  const { html, text } = await renderEmail(template.element(parsed.data, layout));
  return { subject: template.subject(parsed.data), html, text };
}
