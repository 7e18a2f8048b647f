/**
 * The schemas of the email pipeline's routes (shared/api/email-routes.ts): the bodies and
 * queries they parse, and the answers they give. The routes validate with these and declare them
 * (email-routes.ts), so the OpenAPI document cannot drift; `.meta({ id })` names a component.
 */
import { z } from "zod";
import { ENGAGEMENT_FIELDS } from "../email/segment-filters";
import { email as emailField, entityId, timestamp } from "../jobs/fields";
import { idCursor } from "./cursor";
import { tenantQuerySchema } from "./schemas";

const isoTime = z.iso.datetime({ offset: true });

const block = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("heading"), text: z.string().min(1).max(500) }),
  z.strictObject({ type: z.literal("text"), text: z.string().min(1).max(20_000) }),
  z.strictObject({ type: z.literal("button"), text: z.string().min(1).max(200), href: z.string().min(1).max(2_000) }),
  z.strictObject({ type: z.literal("divider") }),
]);

const attributeValue = z.union([z.string().max(1_000), z.number(), z.boolean(), z.null()]);
const engagementField = z.enum(ENGAGEMENT_FIELDS).describe("The contact's latest human open or click (machine hits never count)");
/** On an attribute, or on the contact's latest human engagement (shared/email/segment-filters.ts); told apart by op. */
const segmentFilter = z.discriminatedUnion("op", [
  z.strictObject({
    attribute: z.string().min(1).max(64),
    op: z.enum(["eq", "neq", "exists"]),
    value: z.string().max(1_000).optional(),
  }),
  z.strictObject({
    field: engagementField,
    op: z.literal("within_days"),
    value: z.number().int().min(1).max(3_650).describe("Opened (or clicked) within this many days, counted back from now"),
  }),
  z.strictObject({ field: engagementField, op: z.literal("never").describe("Never opened (or clicked) by a person") }),
]);
const suppressionReason = z.enum(["unsubscribe", "hard_bounce", "complaint", "manual"]);
/** Per campaign: null (or absent) takes the tenant's setting. */
const campaignTracking = z.strictObject({
  opens: z.boolean().nullable().optional().describe("A 1x1 pixel per message (off by default: privacy)"),
  clicks: z.boolean().nullable().optional().describe("Links rewritten to /c/<token> redirects (on by default); never the unsubscribe link, mailto: or tel:"),
});

const campaignStatus = z.enum(["draft", "scheduled", "sending", "paused", "sent", "cancelled"]);

/** Request bodies. */
export const emailSchemas = {
  contacts: z.strictObject({
    contacts: z
      .array(
        z.strictObject({
          email: emailField,
          name: z.string().max(200).optional(),
          attributes: z.record(z.string().max(64), attributeValue).optional(),
        }),
      )
      .min(1)
      .max(1_000),
    list_id: entityId.optional().describe("Also add every contact to this list"),
  }),
  list: z.strictObject({ name: z.string().min(1).max(200) }),
  segment: z.strictObject({
    name: z.string().min(1).max(200),
    list_id: entityId,
    filters: z.array(segmentFilter).max(20).default([]),
  }),
  template: z.strictObject({
    name: z.string().min(1).max(200),
    subject: z.string().min(1).max(500).describe("May hold {{variables}}"),
    blocks: z.array(block).min(1).max(100),
  }),
  campaign: z
    .strictObject({
      name: z.string().min(1).max(200),
      template_id: entityId,
      list_id: entityId.optional().describe("Give exactly one of list_id and segment_id"),
      segment_id: entityId.optional(),
      tracking: campaignTracking.optional().describe("Open and click tracking of this campaign's mail; unset: the tenant's (settings.tracking), whose defaults are opens off, clicks on"),
    })
    .refine((c) => (c.list_id === undefined) !== (c.segment_id === undefined), {
      message: "give exactly one of list_id and segment_id",
      path: ["list_id"],
    }),
  campaignUpdate: z
    .strictObject({ name: z.string().min(1).max(200).optional(), tracking: campaignTracking.optional() })
    .refine((u) => u.name !== undefined || u.tracking !== undefined, { message: "give name or tracking", path: ["tracking"] }),
  start: z.strictObject({ at: timestamp.optional().describe("Start at this time instead of now") }),
  suppression: z.strictObject({ email: emailField, reason: suppressionReason.default("manual") }),
};

/** Pages of the newest-first listings (lists, campaigns). */
export const MAX_PAGE = 100;
const newestFirst = {
  limit: z.coerce.number().int().min(1).max(MAX_PAGE).default(50),
  cursor: z.string().min(1).max(200).optional().describe("next_cursor of the previous page"),
};

/** Query strings (all strict: an unknown parameter is a 422 naming it). */
export const emailQueries = {
  plain: tenantQuerySchema,
  /** Contacts and the outbox page by id. */
  byId: tenantQuerySchema.extend({ cursor: idCursor.optional() }),
  /** Suppressions page by address. */
  byEmail: tenantQuerySchema.extend({ cursor: z.string().min(1).max(320).optional().describe("next_cursor of the previous page") }),
  lists: tenantQuerySchema.extend(newestFirst),
  campaigns: tenantQuerySchema.extend({ ...newestFirst, status: campaignStatus.optional().describe("Only campaigns in this status") }),
};

const nextCursor = z.string().nullable().describe("Pass as `cursor` for the next page; null on the last page");

/** Answers. */
export const contactSchema = z.object({
  id: z.string(),
  email: z.string(),
  name: z.string().nullable(),
  attributes: z.record(z.string(), attributeValue),
  status: z.enum(["active", "unsubscribed", "bounced", "complained"]),
  created_at: isoTime,
}).meta({ id: "Contact" });

export const contactsUpsertedSchema = z.object({
  contacts: z.array(z.object({ id: z.string(), email: z.string(), created: z.boolean() })),
  created: z.number().int(),
  updated: z.number().int(),
});

export const contactListSchema = z.object({ contacts: z.array(contactSchema).describe("By id"), next_cursor: nextCursor });

export const listSchema = z.object({
  id: z.string().describe("lst_…"),
  tenant_id: z.string(),
  name: z.string(),
  contact_count: z.number().int(),
  created_at: isoTime,
}).meta({ id: "List" });

export const listPageSchema = z.object({ lists: z.array(listSchema).describe("Newest first"), next_cursor: nextCursor });

export const segmentSchema = z.object({
  id: z.string().describe("seg_…"),
  tenant_id: z.string(),
  name: z.string(),
  list_id: z.string(),
  filters: z.array(
    z.union([
      z.object({ attribute: z.string(), op: z.enum(["eq", "neq", "exists"]), value: z.string().optional() }),
      z.object({ field: z.enum(ENGAGEMENT_FIELDS), op: z.literal("within_days"), value: z.number().int() }),
      z.object({ field: z.enum(ENGAGEMENT_FIELDS), op: z.literal("never") }),
    ]),
  ),
  created_at: isoTime,
}).meta({ id: "Segment" });

export const templateSchema = z.object({
  id: z.string().describe("tpl_…"),
  tenant_id: z.string(),
  name: z.string(),
  subject: z.string(),
  blocks: z.array(
    z.discriminatedUnion("type", [
      z.object({ type: z.literal("heading"), text: z.string() }),
      z.object({ type: z.literal("text"), text: z.string() }),
      z.object({ type: z.literal("button"), text: z.string(), href: z.string() }),
      z.object({ type: z.literal("divider") }),
    ]),
  ),
  created_at: isoTime,
  updated_at: isoTime,
}).meta({ id: "Template" });

export const campaignSchema = z.object({
  id: z.string().describe("camp_…"),
  name: z.string(),
  template_id: z.string(),
  list_id: z.string().nullable(),
  segment_id: z.string().nullable(),
  status: campaignStatus,
  scheduled_at: isoTime.nullable(),
  counters: z.object({ recipients: z.number().int(), sent: z.number().int(), skipped: z.number().int(), failed: z.number().int() }),
  tracking: z
    .object({ opens: z.boolean().nullable(), clicks: z.boolean().nullable() })
    .describe("This campaign's choice; null: the tenant's setting (defaults: opens off, clicks on)"),
  progress: z
    .object({ cursor: z.string(), upper: z.string().nullable(), done: z.boolean() })
    .describe("The fan-out's checkpoint: contacts with id up to cursor have their sends; upper is fixed at start"),
  created_at: isoTime,
  started_at: isoTime.nullable(),
  finished_at: isoTime.nullable(),
}).meta({ id: "Campaign" });

export const campaignPageSchema = z.object({ campaigns: z.array(campaignSchema).describe("Newest first"), next_cursor: nextCursor });

export const suppressionSchema = z.object({ email: z.string().describe("Lower case"), reason: suppressionReason }).meta({ id: "Suppression" });

export const suppressionListSchema = z.object({
  suppressions: z.array(suppressionSchema.extend({ created_at: isoTime })).describe("By address"),
  next_cursor: nextCursor,
});

export const outboxSchema = z.object({
  messages: z
    .array(
      z.object({
        id: z.string(),
        from: z.string(),
        to: z.string(),
        subject: z.string(),
        text: z.string(),
        html: z.string(),
        headers: z.record(z.string(), z.string()),
        created_at: isoTime,
      }),
    )
    .describe("Newest first"),
  next_cursor: nextCursor,
});

const engagementCounts = z.object({
  unique: z.number().int().describe("Messages opened (clicked) by a person at least once"),
  total: z.number().int().describe("Every human hit"),
  machine: z.object({ unique: z.number().int(), total: z.number().int() }).describe("Scanners and prefetching proxies, counted apart"),
});

export const campaignStatsSchema = z.object({
  campaign_id: z.string(),
  sent: z.number().int(),
  delivered: z.number().int().describe("Messages a provider reported delivered (Resend's email.delivered, once a message); always 0 over SMTP and the outbox, which report no deliveries"),
  bounced: z.number().int(),
  complained: z.number().int(),
  unsubscribed: z.number().int(),
  opens: engagementCounts,
  clicks: engagementCounts,
  links: z.array(z.object({ index: z.number().int(), url: z.string(), unique: z.number().int(), total: z.number().int(), machine_total: z.number().int() })).describe("Each clicked link, by its place in the message"),
  timeline: z
    .array(z.object({ minute: z.string(), opens: z.number().int(), clicks: z.number().int(), machine_opens: z.number().int(), machine_clicks: z.number().int() }))
    .describe("Per-minute buckets with activity, oldest first (the newest 1,440 at most)"),
}).meta({ id: "CampaignStats" });
