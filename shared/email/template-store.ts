import type { Clock, SqlClient } from "../ports";
import { type Rendered, type TemplateRenderer, TemplateNotFound } from "./renderer";
import {
  type CompiledTemplate,
  compileTemplate,
  isSystemTemplateId,
  type LayoutOptions,
  renderSystemTemplate,
  type TemplateBlock,
} from "./templates";

interface Cached {
  compiled: Promise<CompiledTemplate>;
  loadedAt: number;
}

/**
 * Renders system templates (React components in the code) and tenants' stored templates. A
 * stored template is compiled once (one react-email render with placeholders) and then filled
 * per recipient by string concatenation, so rendering does not limit a large campaign. Compiled
 * templates are kept for a short while, so an edited template is picked up within `ttlMs`.
 */
export class TemplateStore implements TemplateRenderer {
  private readonly cache = new Map<string, Cached>();

  constructor(
    private readonly sql: SqlClient,
    private readonly clock: Clock,
    private readonly layout: LayoutOptions = {},
    private readonly ttlMs = 60_000,
    private readonly maxCached = 500,
  ) {}

  async render(tenantId: string, templateId: string, variables: Record<string, unknown>): Promise<Rendered> {
    if (isSystemTemplateId(templateId)) return renderSystemTemplate(templateId, variables, this.layout);
    return (await this.compiled(tenantId, templateId)).fill(variables);
  }

  private compiled(tenantId: string, templateId: string): Promise<CompiledTemplate> {
    const key = `${tenantId}\u0000${templateId}`;
    const now = this.clock.now().getTime();
    const hit = this.cache.get(key);
    if (hit && now - hit.loadedAt < this.ttlMs) return hit.compiled;
    const compiled = this.load(tenantId, templateId);
    this.cache.delete(key); // re-insert at the end: the Map's order is the eviction order
    this.cache.set(key, { compiled, loadedAt: now });
    compiled.catch(() => this.cache.delete(key));
    while (this.cache.size > this.maxCached) this.cache.delete(this.cache.keys().next().value!);
    return compiled;
  }

  private async load(tenantId: string, templateId: string): Promise<CompiledTemplate> {
    const [row] = await this.sql.query<{ subject: string; blocks: TemplateBlock[] }>(
      "select subject, blocks from templates where id = $1 and tenant_id = $2",
      [templateId, tenantId],
    );
    if (!row) throw new TemplateNotFound(`tenant ${tenantId} has no template ${templateId}`);
    return compileTemplate({ subject: row.subject, blocks: row.blocks }, this.layout);
  }
}
