/**
 * GET /v1/outbox pages newest first by numeric id: ids once sorted as text (99, 98, ..., 942,
 * 941), so the second page repeated the first one's messages.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { ApiKeys } from "../shared/api/api-keys";
import { createApp } from "../shared/api/app";
import { createEngine } from "../shared/queue/engine";
import { jsonApi } from "./support/api";
import { createTestDatabase } from "./support/services";

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let api: ReturnType<typeof jsonApi>;

beforeAll(async () => {
  db = await createTestDatabase("outbox_paging");
  const engine = createEngine({ sql: db.sql });
  const apiKeys = new ApiKeys(db.sql, { pepper: "outbox-paging-test-pepper" });
  const key = await apiKeys.create({ tenantId: "acme", admin: false, name: "acme" });
  const app = createApp({ queue: engine.queue, sql: db.sql, apiKeys, version: "test" });
  api = jsonApi((path, init) => app.request(path, init), key.key);
  // 120 messages: ids 1..120, so one- two- and three-digit ids sort differently as text.
  await db.sql.query(
    `insert into outbox_messages (tenant_id, idempotency_key, from_address, to_address, subject, html, text)
     select 'acme', 'k' || n, 'a@example.com', 'user' || n || '@example.com', 'hello ' || n, '<p>hi</p>', 'hi'
     from generate_series(1, 120) as n`,
  );
});

afterAll(async () => {
  await db?.drop();
});

it("pages every message once, newest (highest id) first", async () => {
  const seen: number[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 5; page++) {
    const body: { messages: { id: string }[]; next_cursor: string | null } = await api.ok("GET", `/v1/outbox${cursor ? `?cursor=${cursor}` : ""}`);
    seen.push(...body.messages.map((m) => Number(m.id)));
    cursor = body.next_cursor;
    if (!cursor) break;
  }
  expect(seen).toEqual(Array.from({ length: 120 }, (_, i) => 120 - i));
});
