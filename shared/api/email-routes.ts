/**
 * The email pipeline without SQL: contacts, lists, segments, templates, campaigns and
 * suppressions, each scoped to the caller's tenant (admin keys name one with ?tenant_id=).
 * Bodies and queries are checked by the strict schemas of email-schemas.ts; every problem names
 * its field. Lists and campaigns are listed newest first by (created_at, id).
 */
import { type Context, Hono } from "hono";
import { streamSSE } from "hono/streaming";
import { z } from "zod";
import { newId } from "../email/ids";
import { type Campaign, Campaigns } from "../email/campaigns";
import { campaignStats } from "../email/campaign-stats";
import { Suppressions } from "../email/suppressions";
import { entityId } from "../jobs/fields";
import type { SqlClient } from "../ports";
import type { Queue } from "../queue/queue";
import { type ApiEnv, tenantOf } from "./auth";
import { streamCampaignEvents } from "./campaign-progress";
import { CursorTime, decodeTimeCursor, encodeTimeCursor } from "./cursor";
import {
  campaignPageSchema,
  campaignSchema,
  campaignStatsSchema,
  contactListSchema,
  contactsUpsertedSchema,
  emailQueries,
  emailSchemas,
  listPageSchema,
  listSchema,
  outboxSchema,
  segmentSchema,
  suppressionListSchema,
  suppressionSchema,
  templateSchema,
} from "./email-schemas";
import { describeRoute, json, jsonBody, type Parameter, pathParam, problems, queryParameters, type RouteDeclaration, text } from "./openapi-route";
import { ApiError } from "./problem";
import { parseBody, parseParam, parseQuery } from "./request-input";

const schemas = emailSchemas;
const queries = emailQueries;

/** The tenant a request acts for (the key's own, or an admin's ?tenant_id=), once the query is checked. */
function tenant(c: Context<ApiEnv>): string {
  parseQuery(c, queries.plain);
  return tenantOf(c);
}

const LIST_COLUMNS = "id, tenant_id, name, contact_count, created_at";
const TEMPLATE_COLUMNS = "id, tenant_id, name, subject, blocks, created_at, updated_at";
const CAMPAIGN_COLUMNS = `id, tenant_id, name, template_id, list_id, segment_id, status, scheduled_at, fanout_cursor::text,
  fanout_upper::text, fanout_done, recipients, sent, skipped, failed, track_opens, track_clicks, created_at, started_at, finished_at`;

/**
 * One newest-first page of a tenant's rows of `table`: (created_at, id) below the cursor, one
 * row more than the page to tell whether there is a next one. $1 tenant, $2/$3 the cursor's
 * time and id (null: the first page), $4 the limit, then `extra`'s parameters.
 */
async function newestFirst<R extends { id: string }>(
  sql: SqlClient,
  q: { table: "lists" | "campaigns"; columns: string; tenantId: string; cursor?: string; limit: number; where?: string; params?: unknown[] },
): Promise<{ rows: R[]; nextCursor: string | null }> {
  const after = q.cursor === undefined ? undefined : decodeTimeCursor(q.cursor);
  if (after === null) throw new ApiError(422, "invalid query", [{ path: "cursor", message: "not a cursor from this API" }]);
  const rows = await sql.query<R & { cursor_at: string }>(
    `select ${q.columns}, ${CursorTime} as cursor_at from ${q.table}
     where tenant_id = $1 and ($2::timestamptz is null or (created_at, id) < ($2::timestamptz, $3::text))${q.where ?? ""}
     order by created_at desc, id desc limit $4`,
    [q.tenantId, after?.at ?? null, after?.id ?? null, q.limit + 1, ...(q.params ?? [])],
  );
  const page = rows.slice(0, q.limit);
  const last = page.at(-1);
  return {
    rows: page.map(({ cursor_at: _c, ...row }) => row as unknown as R),
    nextCursor: rows.length > q.limit && last ? encodeTimeCursor(last.cursor_at, last.id) : null,
  };
}

const body = <S extends z.ZodType>(c: Context, schema: S) => parseBody(c, schema);

/** A row's :id: one of our ids, or that row does not exist. */
const rowId = (c: Context, what: string) => parseParam(c, "id", entityId, (id) => `no ${what} ${id}`);

/** 404 unless the row exists for this tenant (a tenant never learns of another's ids). */
async function owned(sql: SqlClient, table: "lists" | "templates" | "segments", id: string, tenantId: string): Promise<void> {
  const rows = await sql.query(`select 1 from ${table} where id = $1 and tenant_id = $2`, [id, tenantId]);
  if (rows.length === 0) throw new ApiError(404, `no ${table.slice(0, -1)} ${id}`);
}

/**
 * One email operation's declaration: its tag, its query (the schema the route parses), and the
 * problems every one of them can give on top of the app's (Forbidden: a tenant_id of another
 * tenant; NotFound: a row this tenant does not have).
 */
function emailOp(
  tag: string,
  operationId: string,
  summary: string,
  query: z.ZodType,
  rest: () => Omit<RouteDeclaration, "tags" | "operationId" | "summary"> & { path?: Parameter[] },
) {
  return describeRoute(() => {
    const { path = [], responses, ...more } = rest();
    return {
      operationId,
      tags: [tag],
      summary,
      ...more,
      parameters: [...path, ...queryParameters(query)],
      responses: { ...responses, ...problems("Forbidden", "NotFound"), ...(more.requestBody ? problems("PayloadTooLarge", "UnsupportedMediaType") : {}) },
    };
  });
}

const plain = queries.plain;
const idParam = (what: string) => [pathParam("id", what)];
const campaignId = idParam("Campaign id (camp_…)");

const CAMPAIGN_ACTIONS = {
  pause: "Pause a sending campaign: the fan-out stops before its next batch, waiting sends wait",
  resume: "Resume a paused campaign",
  cancel: "Cancel a campaign: sends not yet made are skipped",
} as const;

export function emailRoutes(queue: Queue, sql: SqlClient): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  const campaigns = new Campaigns(sql, queue);
  const suppressions = new Suppressions(sql);

  // Contacts: upsert by address (case-insensitive), optionally into a list, in one statement.
  app.post(
    "/contacts",
    emailOp("contacts", "upsertContacts", "Add or update up to 1,000 contacts by address (case-insensitive), optionally into a list", plain, () => ({
      requestBody: jsonBody(schemas.contacts),
      responses: { 200: json(contactsUpsertedSchema, "Each contact's id, and how many were created or updated") },
    })),
    async (c) => {
      const tenantId = tenant(c);
      const req = await body(c, schemas.contacts);
      if (req.list_id) await owned(sql, "lists", req.list_id, tenantId);
      const rows = await sql.query<{ id: string; email: string; created: boolean }>(
        `with input as (
           select distinct on (lower(email)) email, name, attributes
           from unnest($2::text[], $3::text[], $4::text[]::jsonb[]) as u(email, name, attributes)
         ),
         up as (
           insert into contacts (tenant_id, email, name, attributes)
           select $1, email, name, coalesce(attributes, '{}') from input
           on conflict (tenant_id, lower(email)) do update
             set name = coalesce(excluded.name, contacts.name),
                 attributes = contacts.attributes || excluded.attributes, updated_at = now()
           returning id, email, (xmax = 0) as created
         ),
         joined as (
           insert into list_members (list_id, contact_id) select $5, id from up where $5::text is not null
           on conflict do nothing returning 1
         ),
         counted as (update lists set contact_count = contact_count + (select count(*) from joined) where id = $5 and tenant_id = $1)
         select id::text, email, created from up`,
        [
          tenantId,
          req.contacts.map((x) => x.email),
          req.contacts.map((x) => x.name ?? null),
          req.contacts.map((x) => (x.attributes ? JSON.stringify(x.attributes) : null)),
          req.list_id ?? null,
        ],
      );
      return c.json({ contacts: rows, created: rows.filter((r) => r.created).length, updated: rows.filter((r) => !r.created).length });
    },
  );

  app.get(
    "/contacts",
    emailOp("contacts", "listContacts", "List contacts, by id, 100 a page", queries.byId, () => ({
      responses: { 200: json(contactListSchema, "A page of contacts") },
    })),
    async (c) => {
      const { cursor: after } = parseQuery(c, queries.byId);
      const tenantId = tenantOf(c);
      const rows = await sql.query(
        `select id::text, email, name, attributes, status, created_at from contacts
         where tenant_id = $1 and ($2::bigint is null or id > $2::bigint) order by id limit 100`,
        [tenantId, after ?? null],
      );
      const last = rows[rows.length - 1] as { id: string } | undefined;
      return c.json({ contacts: rows, next_cursor: rows.length === 100 ? last!.id : null });
    },
  );

  app.post(
    "/lists",
    emailOp("lists", "createList", "Create a list", plain, () => ({ requestBody: jsonBody(schemas.list), responses: { 201: json(listSchema, "The list") } })),
    async (c) => {
      const tenantId = tenant(c);
      const req = await body(c, schemas.list);
      const [row] = await sql.query(`insert into lists (id, tenant_id, name) values ($1, $2, $3) returning ${LIST_COLUMNS}`, [newId("lst"), tenantId, req.name]);
      return c.json(row, 201);
    },
  );

  app.get(
    "/lists",
    emailOp("lists", "listLists", "List lists, newest first", queries.lists, () => ({ responses: { 200: json(listPageSchema, "A page of lists") } })),
    async (c) => {
      const { cursor, limit } = parseQuery(c, queries.lists);
      const { rows, nextCursor } = await newestFirst(sql, { table: "lists", columns: LIST_COLUMNS, tenantId: tenantOf(c), cursor, limit });
      return c.json({ lists: rows, next_cursor: nextCursor });
    },
  );

  app.get(
    "/lists/:id",
    emailOp("lists", "getList", "Get a list and its contact count", plain, () => ({ path: idParam("List id (lst_…)"), responses: { 200: json(listSchema, "The list") } })),
    async (c) => {
      const tenantId = tenant(c);
      const id = rowId(c, "list");
      const [row] = await sql.query(`select ${LIST_COLUMNS} from lists where id = $1 and tenant_id = $2`, [id, tenantId]);
      if (!row) throw new ApiError(404, `no list ${id}`);
      return c.json(row);
    },
  );

  app.post(
    "/segments",
    emailOp("segments", "createSegment", "Create a segment: a list filtered on contact attributes", plain, () => ({
      requestBody: jsonBody(schemas.segment),
      responses: { 201: json(segmentSchema, "The segment") },
    })),
    async (c) => {
      const tenantId = tenant(c);
      const req = await body(c, schemas.segment);
      await owned(sql, "lists", req.list_id, tenantId);
      const [row] = await sql.query(
        "insert into segments (id, tenant_id, name, list_id, filters) values ($1, $2, $3, $4, $5::jsonb) returning id, tenant_id, name, list_id, filters, created_at",
        [newId("seg"), tenantId, req.name, req.list_id, JSON.stringify(req.filters)],
      );
      return c.json(row, 201);
    },
  );

  app.post(
    "/templates",
    emailOp("templates", "createTemplate", "Create a template from blocks with {{variables}}", plain, () => ({
      requestBody: jsonBody(schemas.template),
      responses: { 201: json(templateSchema, "The template") },
    })),
    async (c) => {
      const tenantId = tenant(c);
      const req = await body(c, schemas.template);
      const [row] = await sql.query(
        `insert into templates (id, tenant_id, name, subject, blocks) values ($1, $2, $3, $4, $5::jsonb) returning ${TEMPLATE_COLUMNS}`,
        [newId("tpl"), tenantId, req.name, req.subject, JSON.stringify(req.blocks)],
      );
      return c.json(row, 201);
    },
  );

  app.get(
    "/templates/:id",
    emailOp("templates", "getTemplate", "Get a template", plain, () => ({ path: idParam("Template id (tpl_…)"), responses: { 200: json(templateSchema, "The template") } })),
    async (c) => {
      const tenantId = tenant(c);
      const id = rowId(c, "template");
      const [row] = await sql.query(`select ${TEMPLATE_COLUMNS} from templates where id = $1 and tenant_id = $2`, [id, tenantId]);
      if (!row) throw new ApiError(404, `no template ${id}`);
      return c.json(row);
    },
  );

  app.post(
    "/campaigns",
    emailOp("campaigns", "createCampaign", "Create a campaign (a draft) of a template to a list or a segment", plain, () => ({
      requestBody: jsonBody(schemas.campaign),
      responses: { 201: json(campaignSchema, "The campaign") },
    })),
    async (c) => {
      const tenantId = tenant(c);
      const req = await body(c, schemas.campaign);
      await owned(sql, "templates", req.template_id, tenantId);
      if (req.list_id) await owned(sql, "lists", req.list_id, tenantId);
      if (req.segment_id) await owned(sql, "segments", req.segment_id, tenantId);
      const id = newId("camp");
      await sql.query(
        "insert into campaigns (id, tenant_id, name, template_id, list_id, segment_id, track_opens, track_clicks) values ($1, $2, $3, $4, $5, $6, $7, $8)",
        [id, tenantId, req.name, req.template_id, req.list_id ?? null, req.segment_id ?? null, req.tracking?.opens ?? null, req.tracking?.clicks ?? null],
      );
      return c.json(campaignView(await campaigns.get(tenantId, id)), 201);
    },
  );

  app.get(
    "/campaigns",
    emailOp("campaigns", "listCampaigns", "List campaigns, newest first", queries.campaigns, () => ({
      responses: { 200: json(campaignPageSchema, "A page of campaigns") },
    })),
    async (c) => {
      const { cursor, limit, status } = parseQuery(c, queries.campaigns);
      const { rows, nextCursor } = await newestFirst<Campaign>(sql, {
        table: "campaigns",
        columns: CAMPAIGN_COLUMNS,
        tenantId: tenantOf(c),
        cursor,
        limit,
        where: status === undefined ? "" : " and status = $5",
        params: status === undefined ? [] : [status],
      });
      return c.json({ campaigns: rows.map(campaignView), next_cursor: nextCursor });
    },
  );

  app.get(
    "/campaigns/:id",
    emailOp("campaigns", "getCampaign", "Get a campaign: status, counters and fan-out progress", plain, () => ({
      path: campaignId,
      responses: { 200: json(campaignSchema, "The campaign") },
    })),
    async (c) => c.json(campaignView(await campaigns.get(tenant(c), rowId(c, "campaign")))),
  );

  // Name and tracking may change in any status: a change of tracking applies to mail rendered after it.
  app.patch(
    "/campaigns/:id",
    emailOp("campaigns", "updateCampaign", "Rename a campaign or change its open and click tracking (applies to mail rendered from then on)", plain, () => ({
      path: campaignId,
      requestBody: jsonBody(schemas.campaignUpdate),
      responses: { 200: json(campaignSchema, "The campaign") },
    })),
    async (c) => {
      const tenantId = tenant(c);
      const id = rowId(c, "campaign");
      const req = await body(c, schemas.campaignUpdate);
      const t = req.tracking;
      const rows = await sql.query(
        `update campaigns set name = coalesce($3, name),
           track_opens = case when $4::boolean then $5::boolean else track_opens end,
           track_clicks = case when $6::boolean then $7::boolean else track_clicks end
         where tenant_id = $1 and id = $2 returning id`,
        [tenantId, id, req.name ?? null, t !== undefined && t.opens !== undefined, t?.opens ?? null, t !== undefined && t.clicks !== undefined, t?.clicks ?? null],
      );
      if (rows.length === 0) throw new ApiError(404, `no campaign ${id}`);
      return c.json(campaignView(await campaigns.get(tenantId, id)));
    },
  );

  app.get(
    "/campaigns/:id/stats",
    emailOp("campaigns", "getCampaignStats", "A campaign's report: sent, delivered, bounced, complained, unsubscribed, opens and clicks (people and machines apart), per link and per minute", plain, () => ({
      path: campaignId,
      responses: { 200: json(campaignStatsSchema, "The report") },
    })),
    async (c) => c.json(await campaignStats(sql, tenant(c), rowId(c, "campaign"))),
  );

  // The campaign's progress as Server-Sent Events until it is sent or cancelled (campaign-progress.ts).
  // The first read comes before the stream opens, so an unknown or foreign campaign is a plain 404 problem.
  app.get(
    "/campaigns/:id/events",
    emailOp("campaigns", "streamCampaignEvents", "Follow a campaign's progress as Server-Sent Events until it is sent or cancelled", plain, () => ({
      description:
        "A `text/event-stream`. `event: campaign` carries the campaign (as `GET /v1/campaigns/{id}` answers it): first at once, then at each " +
        "change of its status, its counters (recipients; sends sent, skipped and failed) or its fan-out's progress. `event: end` (data " +
        "`{id, status}`) follows when it is sent or cancelled, and the stream closes. The server reads the campaign with a short backoff " +
        "(100 ms to 1 s) and closes a stream after 10 minutes; EventSource reconnects by itself.",
      path: campaignId,
      responses: { 200: text("text/event-stream", "The campaign's events") },
    })),
    async (c) => {
      const tenantId = tenant(c);
      const id = rowId(c, "campaign");
      const read = () => campaigns.get(tenantId, id);
      const first = await read();
      return streamSSE(c, (stream) => streamCampaignEvents(stream, first, { read, view: campaignView, signal: c.req.raw.signal }));
    },
  );

  app.post(
    "/campaigns/:id/start",
    emailOp("campaigns", "startCampaign", 'Start a campaign now, or at a time ({"at": …})', plain, () => ({
      path: campaignId,
      requestBody: jsonBody(schemas.start, { required: false }),
      responses: { 200: json(campaignSchema, "The campaign, sending or scheduled"), ...problems("Conflict") },
    })),
    async (c) => {
      const tenantId = tenant(c);
      const id = rowId(c, "campaign");
      // The body is optional: none starts now, {"at": "..."} schedules.
      const { at } = await parseBody(c, schemas.start, { optional: true });
      return c.json(campaignView(await campaigns.start(tenantId, id, at ? new Date(at) : undefined)));
    },
  );
  for (const action of ["pause", "resume", "cancel"] as const) {
    app.post(
      `/campaigns/:id/${action}`,
      emailOp("campaigns", `${action}Campaign`, CAMPAIGN_ACTIONS[action], plain, () => ({
        path: campaignId,
        responses: { 200: json(campaignSchema, "The campaign"), ...problems("Conflict") },
      })),
      async (c) => c.json(campaignView(await campaigns[action](tenant(c), rowId(c, "campaign")))),
    );
  }

  app.post(
    "/suppressions",
    emailOp("suppressions", "addSuppression", "Never send to an address again (this tenant)", plain, () => ({
      requestBody: jsonBody(schemas.suppression),
      responses: { 201: json(suppressionSchema, "The suppression") },
    })),
    async (c) => {
      const tenantId = tenant(c);
      const req = await body(c, schemas.suppression);
      await suppressions.add(tenantId, req.email, req.reason);
      return c.json({ email: req.email.toLowerCase(), reason: req.reason }, 201);
    },
  );
  app.get(
    "/suppressions",
    emailOp("suppressions", "listSuppressions", "List suppressions, by address, 100 a page", queries.byEmail, () => ({
      responses: { 200: json(suppressionListSchema, "A page of suppressions") },
    })),
    async (c) => {
      const { cursor } = parseQuery(c, queries.byEmail);
      const rows = await suppressions.list(tenantOf(c), { after: cursor, limit: 100 });
      return c.json({ suppressions: rows, next_cursor: rows.length === 100 ? rows[rows.length - 1]!.email : null });
    },
  );
  app.delete(
    "/suppressions/:email",
    emailOp("suppressions", "removeSuppression", "Remove a suppression", plain, () => ({
      path: [pathParam("email", "The suppressed address")],
      responses: { 204: { description: "Removed" } },
    })),
    async (c) => {
      const tenantId = tenant(c);
      const address = parseParam(c, "email", z.string().min(1).max(320), () => "no such suppression");
      if (!(await suppressions.remove(tenantId, address))) throw new ApiError(404, "no such suppression");
      return c.body(null, 204);
    },
  );

  // The outbox provider's messages (the embedded default): what would have been sent, newest first.
  app.get(
    "/outbox",
    emailOp("outbox", "listOutbox", "What the outbox provider (the embedded default) would have sent, newest first, 50 a page", queries.byId, () => ({
      responses: { 200: json(outboxSchema, "A page of messages") },
    })),
    async (c) => {
      const { cursor: before } = parseQuery(c, queries.byId);
      const tenantId = tenantOf(c);
      const rows = await sql.query<{ id: string }>(
        `select id::text, from_address as "from", to_address as "to", subject, text, html, headers, created_at
         from outbox_messages where tenant_id = $1 and ($2::bigint is null or id < $2::bigint) order by outbox_messages.id desc limit 50`,
        [tenantId, before ?? null],
      );
      return c.json({ messages: rows, next_cursor: rows.length === 50 ? rows[rows.length - 1]!.id : null });
    },
  );

  return app;
}

function campaignView(c: Campaign) {
  return {
    id: c.id,
    name: c.name,
    template_id: c.template_id,
    list_id: c.list_id,
    segment_id: c.segment_id,
    status: c.status,
    scheduled_at: c.scheduled_at,
    counters: { recipients: c.recipients, sent: c.sent, skipped: c.skipped, failed: c.failed },
    tracking: { opens: c.track_opens, clicks: c.track_clicks },
    progress: { cursor: c.fanout_cursor, upper: c.fanout_upper, done: c.fanout_done },
    created_at: c.created_at,
    started_at: c.started_at,
    finished_at: c.finished_at,
  };
}
