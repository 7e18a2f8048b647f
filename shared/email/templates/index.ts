/**
 * Email templates (react-email): the shared layout, PenguinMails' system templates, tenants'
 * block templates from the database, and the compiled fast path for campaigns. Runtime-agnostic:
 * runs on Node and in Cloudflare Workers.
 */
export { compileTemplate, type CompiledTemplate } from "./compile";
export { defineSystemTemplate, formatCount, httpUrl, layoutVariables, type SystemTemplate } from "./define";
export { TemplateError } from "./errors";
export { ImportFinishedEmail, importFinished, importFinishedVariables, type ImportFinishedVariables } from "./import-finished";
export { DEFAULT_BRAND_NAME, EmailLayout, type EmailLayoutProps, type LayoutOptions } from "./layout";
export { htmlToText, htmlToTextOptions, type RenderedEmail, renderEmail } from "./render";
export { isSystemTemplateId, renderSystemTemplate, type SystemTemplateId, systemTemplates } from "./system";
export {
  parseTenantTemplate,
  renderTenantTemplate,
  SENDER_ADDRESS_VARIABLE,
  type TemplateBlock,
  TenantEmail,
  type TenantTemplate,
  templateBlockSchema,
  tenantTemplateSchema,
  UNSUBSCRIBE_VARIABLE,
  valueResolver,
  type Resolver,
} from "./tenant";
export { TransactionalEmail, transactional, transactionalVariables, type TransactionalVariables } from "./transactional";
export { WebhookDisabledEmail, webhookDisabled, webhookDisabledVariables, type WebhookDisabledVariables } from "./webhook-disabled";
export {
  escapeHtml,
  interpolate,
  normalizeText,
  parseTemplate,
  safeHref,
  type TemplatePart,
  type TemplateVariables,
  templateVariables,
  type VariableRef,
} from "./variables";
