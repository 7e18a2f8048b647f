import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildWorker, type EdgeHarness, startEdge } from "../tools/edge-harness";
import { createTestDatabase } from "./support/services";

/** Imports and exports on the real Worker in workerd, with files in an R2 bucket binding. */
describe("files on the edge through an R2 binding", () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let edge: EdgeHarness;

  beforeAll(async () => {
    db = await createTestDatabase("edge_files");
    edge = await startEdge({
      script: buildWorker("workers/edge.ts"),
      databaseUrl: db.url,
      r2Buckets: ["FILES"],
      vars: { STORAGE_URL: "s3://pm-files/edge", PUBLIC_URL: "http://edge.test", DRAIN_MAX_JOBS: "1000" },
    });
  });
  afterAll(async () => {
    await edge?.close();
    await db?.drop();
  });

  const call = (path: string, init: RequestInit = {}) =>
    edge.mf.dispatchFetch(`http://edge.test${path}${path.includes("?") ? "&" : "?"}tenant_id=acme`, {
      ...init,
      headers: { authorization: `Bearer ${edge.adminKey}`, "content-type": "application/json", ...(init.headers as Record<string, string>) },
    } as never) as unknown as Promise<Response>;
  /** The bucket as the test reads it (Miniflare's types for it need workers-types, which this project leaves out). */
  type Bucket = {
    get(key: string): Promise<{ size: number; text(): Promise<string>; arrayBuffer(): Promise<ArrayBuffer> } | null>;
    head(key: string): Promise<unknown>;
  };
  const files = async () => (await edge.mf.getR2Bucket("FILES")) as unknown as Bucket;
  const cron = async () => {
    const worker = (await edge.mf.getWorker()) as unknown as { scheduled(o: { cron: string }): Promise<unknown> };
    await worker.scheduled({ cron: "* * * * *" });
  };

  it("uploads into the bucket, imports on a cron drain, exports back to the bucket and serves the signed link", async () => {
    const list = (await (await call("/v1/lists", { method: "POST", body: JSON.stringify({ name: "edge import" }) })).json()) as { id: string };
    const csv = ["email;name", ...Array.from({ length: 500 }, (_, i) => `edge${i}@example.com;Edge ${i}`), "broken;Nope"].join("\r\n");
    const upload = await call(`/v1/imports?list_id=${list.id}&mapping=${encodeURIComponent(JSON.stringify({ email: "email", name: "name" }))}`, {
      method: "POST",
      headers: { "content-type": "text/csv" },
      body: csv,
    });
    expect(upload.status).toBe(202);
    const { id } = (await upload.json()) as { id: string };

    let status: Record<string, unknown> = {};
    for (let i = 0; i < 10 && status.status !== "completed"; i++) {
      await cron();
      status = (await (await call(`/v1/imports/${id}`)).json()) as Record<string, unknown>;
    }
    expect(status).toMatchObject({ status: "completed", rows_read: 501, created: 500, invalid: 1, list_added: 500 });
    const [row] = await db.sql.query<{ file_url: string; report_url: string }>("select file_url, report_url from imports where id = $1", [id]);
    expect(row!.file_url).toMatch(/^s3:\/\/pm-files\/edge\/acme\/imports\/upload-/);
    const bucket = await files();
    const uploaded = await bucket.get(row!.file_url.slice("s3://pm-files/".length));
    expect(await uploaded!.text()).toBe(csv);
    expect((await (await call(`/v1/imports/${id}/report`)).text()).trim().split("\n")).toEqual(["row,reason,email", "502,invalid email,broken"]);

    const started = await call("/v1/exports", { method: "POST", body: JSON.stringify({ source: "list", list_id: list.id }) });
    expect(started.status).toBe(202);
    const exportId = ((await started.json()) as { id: string }).id;
    let exp: { status?: string; rows?: number; download_url?: string } = {};
    for (let i = 0; i < 10 && exp.status !== "ready"; i++) {
      await cron();
      exp = (await (await call(`/v1/exports/${exportId}`)).json()) as typeof exp;
    }
    expect(exp).toMatchObject({ status: "ready", rows: 500 });
    expect(exp.download_url).toMatch(/^http:\/\/edge\.test\/files\//);
    const download = (await edge.mf.dispatchFetch(exp.download_url!)) as unknown as Response;
    expect(download.status).toBe(200);
    const lines = (await download.text()).trim().split(/\r?\n/);
    expect(lines).toHaveLength(501);
    expect(lines.filter((l) => l.includes(",edge499@example.com,Edge 499,"))).toHaveLength(1);
    expect(await bucket.head(`edge/acme/exports/${exportId}.csv`)).not.toBeNull();
  });

  it("puts a large upload into R2 as a multipart upload, byte for byte", async () => {
    const list = (await (await call("/v1/lists", { method: "POST", body: JSON.stringify({ name: "big" }) })).json()) as { id: string };
    // ~19 MiB: three 8 MiB parts, the last shorter. Made in chunks; the Worker never holds it whole.
    const rows = 400_000;
    const line = (i: number) => `big${String(i).padStart(7, "0")}@example.com,Someone with a long name ${i}\n`;
    const hash = createHash("sha256");
    let i = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (i >= rows) return controller.close();
        let chunk = "";
        for (const end = Math.min(rows, i + 5_000); i < end; i++) chunk += line(i);
        const bytes = new TextEncoder().encode(chunk);
        hash.update(bytes);
        controller.enqueue(bytes);
      },
    });
    const upload = await call(`/v1/imports?list_id=${list.id}&has_header=false&mapping=${encodeURIComponent(JSON.stringify({ col_0: "email" }))}`, {
      method: "POST",
      headers: { "content-type": "text/csv" },
      body,
      duplex: "half",
    } as RequestInit);
    expect(upload.status).toBe(202);
    const { id } = (await upload.json()) as { id: string };
    const [row] = await db.sql.query<{ file_url: string }>("select payload->>'file_url' as file_url from jobs where id = $1", [id]);
    const object = await (await files()).get(row!.file_url.slice("s3://pm-files/".length));
    const stored = createHash("sha256").update(new Uint8Array(await object!.arrayBuffer())).digest("hex");
    expect(object!.size).toBeGreaterThan(16 * 1024 * 1024);
    expect(stored).toBe(hash.digest("hex"));
    // Not imported here: that is the import tests' job. Cancel it so nothing runs after the test.
    expect((await call(`/v1/jobs/${id}/cancel`, { method: "POST" })).status).toBeLessThan(300);
  });
});
