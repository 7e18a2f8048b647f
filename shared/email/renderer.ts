/** What the send path needs from templates: one rendered message per recipient. */
export interface Rendered {
  subject: string;
  html: string;
  text: string;
}

export interface TemplateRenderer {
  /**
   * Renders a template (a system template `sys_*`, or a tenant's stored template) for one
   * recipient. Implementations compile a template once and fill each recipient cheaply.
   * Throws TemplateNotFound when the tenant has no such template.
   */
  render(tenantId: string, templateId: string, variables: Record<string, unknown>): Promise<Rendered>;
}

export class TemplateNotFound extends Error {
  override name = "TemplateNotFound";
}
