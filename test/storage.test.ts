import { createHash } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiKeys } from "../shared/api/api-keys";
import { createHttpsStorage } from "../shared/storage/https";
import { createS3Storage, S3Error } from "../shared/storage/s3";
import { type Storage, StorageNotFound } from "../shared/storage/storage";
import { parseAllowList, type Resolver } from "../shared/webhooks/ssrf";
import { createGuardedFetch } from "../workers/node/guarded-fetch";
import { cleanupProcesses, startWorker } from "./support/processes";
import { S3_KEYS, S3_REGION, startS3Server, type S3Server } from "./support/s3-server";
import { createTestDatabase, waitFor } from "./support/services";

const MiB = 1024 * 1024;

/** `bytes` of deterministic noise, made chunk by chunk: a file the test never holds whole. */
function noise(bytes: number, chunk = 256 * 1024): ReadableStream<Uint8Array> {
  let sent = 0;
  let seed = 7;
  return new ReadableStream({
    pull(controller) {
      if (sent >= bytes) return controller.close();
      const n = Math.min(chunk, bytes - sent);
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) out[i] = (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
      sent += n;
      controller.enqueue(out);
    },
  });
}

async function digest(stream: ReadableStream<Uint8Array>): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash("sha256");
  let bytes = 0;
  for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) {
    hash.update(chunk);
    bytes += chunk.byteLength;
  }
  return { sha256: hash.digest("hex"), bytes };
}

const text = (s: string) => new Blob([s]).stream() as ReadableStream<Uint8Array>;
const readText = async (storage: Storage, url: string) => new Response(await storage.read(url)).text();

describe("the S3 store against an S3-compatible server (signatures checked by AWS's signer)", () => {
  let s3: S3Server;
  let store: Storage;

  beforeAll(async () => {
    s3 = await startS3Server(["files"]);
    store = createS3Storage({ endpoint: s3.endpoint, region: S3_REGION, ...S3_KEYS, bucket: "files", prefix: "pm/", partSize: 5 * MiB });
  });
  afterAll(async () => {
    await s3.close();
  });

  it("writes a small file in one PUT and reads it back; keys with spaces and non-ASCII keep their names", async () => {
    s3.stats.methods.length = 0;
    const stored = await store.write("acme/exports/Ünï code, 1.csv", text("email,name\na@example.com,Ann\n"), { contentType: "text/csv" });
    expect(stored).toEqual({ url: "s3://files/pm/acme/exports/%C3%9Cn%C3%AF%20code%2C%201.csv", bytes: 29 });
    expect(s3.stats.methods).toEqual(["PUT -"]);
    expect(await readText(store, stored.url)).toBe("email,name\na@example.com,Ann\n");
    expect(store.keyOf(stored.url)).toBe("acme/exports/Ünï code, 1.csv");
    expect(store.keyOf("s3://files/elsewhere/acme/x.csv")).toBeNull();
    expect(store.keyOf("s3://other-bucket/pm/acme/x.csv")).toBeNull();
  });

  it("streams a 13 MiB file up as a multipart upload of 5 MiB parts and back, byte for byte", async () => {
    s3.stats.methods.length = 0;
    const size = 13 * MiB + 123;
    const stored = await store.write("acme/exports/big.bin", noise(size));
    expect(stored.bytes).toBe(size);
    expect(s3.stats.methods).toEqual(["POST ?uploads", "PUT ?partNumber=N&uploadId=…", "PUT ?partNumber=N&uploadId=…", "PUT ?partNumber=N&uploadId=…", "POST ?uploadId=…"]);
    expect(await digest(await store.read(stored.url))).toEqual(await digest(noise(size)));
  });

  it("aborts the multipart upload when the source fails halfway, and reports the source's error", async () => {
    s3.stats.methods.length = 0;
    let sent = 0;
    const failing = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= 11 * MiB) return controller.error(new Error("the source broke"));
        sent += MiB;
        controller.enqueue(new Uint8Array(MiB));
      },
    });
    await expect(store.write("acme/exports/broken.bin", failing)).rejects.toThrow("the source broke");
    expect(s3.stats.methods.at(-1)).toBe("DELETE ?uploadId=…");
    await expect(store.read("s3://files/pm/acme/exports/broken.bin")).rejects.toBeInstanceOf(StorageNotFound);
  });

  it("deletes (twice is fine) and says not found after", async () => {
    const stored = await store.write("acme/tmp.csv", text("x"));
    await store.delete(stored.url);
    await store.delete(stored.url);
    await expect(store.read(stored.url)).rejects.toBeInstanceOf(StorageNotFound);
    await expect(store.read("not-an-s3-url")).rejects.toBeInstanceOf(StorageNotFound);
  });

  it("fails with the store's error code, never the secret, when the key is wrong", async () => {
    const refusedBefore = s3.stats.refused;
    const wrong = createS3Storage({ endpoint: s3.endpoint, region: S3_REGION, accessKeyId: S3_KEYS.accessKeyId, secretAccessKey: "not-the-secret-4242", bucket: "files" });
    const err = await wrong.write("acme/x.csv", text("x")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(S3Error);
    expect((err as S3Error).status).toBe(403);
    expect((err as S3Error).message).toContain("SignatureDoesNotMatch");
    expect((err as S3Error).message).not.toContain("not-the-secret-4242");
    expect(s3.stats.refused).toBeGreaterThan(refusedBefore);
  });
});

describe("the https store (read-only, behind the SSRF guard)", () => {
  let server: Server;
  let base: string;
  const requests: string[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      requests.push(req.url!);
      const path = req.url!.split("?")[0];
      if (path === "/contacts.csv") return res.end("email\nweb@example.com\n");
      if (path === "/moved") return res.writeHead(302, { location: "/contacts.csv" }).end();
      if (path === "/to-private") return res.writeHead(302, { location: "http://10.0.0.1/contacts.csv" }).end();
      if (path === "/to-metadata") return res.writeHead(307, { location: "http://169.254.169.254/latest/meta-data/" }).end();
      if (path === "/loop") return res.writeHead(302, { location: "/loop" }).end();
      res.writeHead(path === "/gone" ? 410 : path === "/broken" ? 500 : 404).end("no");
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
  });

  const resolver: Resolver = { resolve: async (host) => (host === "files.customer.test" ? ["10.1.2.3"] : ["93.184.216.34"]) };
  const open = createHttpsStorage({ resolver, allow: parseAllowList(["127.0.0.1"]) });
  const closed = createHttpsStorage({ resolver });

  it("reads a file from an allow-listed local server, following a redirect", async () => {
    expect(await readText(open, `${base}/contacts.csv`)).toBe("email\nweb@example.com\n");
    expect(await readText(open, `${base}/moved`)).toBe("email\nweb@example.com\n");
  });

  it("refuses private destinations, before connecting and after a redirect, and says why", async () => {
    const before = requests.length;
    await expect(closed.read(`${base}/contacts.csv`)).rejects.toThrow(/refused: 127\.0\.0\.1 is a loopback address/);
    await expect(closed.read("https://files.customer.test/c.csv")).rejects.toThrow(/files\.customer\.test resolves to 10\.1\.2\.3/);
    await expect(closed.read("https://[::ffff:127.0.0.1]/c.csv")).rejects.toThrow(/refused/);
    expect(requests.length).toBe(before); // none of those reached the server
    await expect(open.read(`${base}/to-private`)).rejects.toThrow(/http:\/\/10\.0\.0\.1\/contacts\.csv: refused: 10\.0\.0\.1 is a private address/);
    await expect(open.read(`${base}/to-metadata`)).rejects.toThrow(/169\.254\.169\.254/);
    await expect(open.read(`${base}/loop`)).rejects.toThrow(/more than 3 redirects/);
  });

  it("reads plain http only from allow-listed hosts", async () => {
    await expect(closed.read("http://files.example.com/c.csv")).rejects.toThrow(/only https:\/\/ URLs/);
  });

  it("maps 404 and 410 to not found, other failures to errors, and never shows the query string (a presigned signature)", async () => {
    const missing = (await open.read(`${base}/missing?X-Amz-Signature=sig-secret-123`).catch((e: unknown) => e)) as Error;
    expect(missing).toBeInstanceOf(StorageNotFound);
    expect(missing.message).not.toContain("sig-secret-123");
    await expect(open.read(`${base}/gone`)).rejects.toBeInstanceOf(StorageNotFound);
    const broken = (await open.read(`${base}/broken?token=sig-secret-123`).catch((e: unknown) => e)) as Error;
    expect(broken).not.toBeInstanceOf(StorageNotFound);
    expect(broken.message).toMatch(/answered 500/);
    expect(broken.message).not.toContain("sig-secret-123");
  });

  it("is read-only", async () => {
    await expect(open.write("acme/x.csv", text("x"))).rejects.toThrow(/read-only/);
    await expect(open.delete(`${base}/contacts.csv`)).rejects.toThrow(/read-only/);
  });
});

describe("imports and exports on S3 in a real runtime", () => {
  let s3: S3Server;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let web: Server;
  let webBase: string;
  const PEPPER = "storage-test-pepper-0123456789";

  beforeAll(async () => {
    s3 = await startS3Server(["files", "other-bucket"]);
    db = await createTestDatabase("storage_runtime");
    web = createServer((req, res) => {
      if (req.url!.startsWith("/customer.csv")) return res.end("email,name\nweb1@example.com,Web One\nweb2@example.com,Web Two\nnope,Bad\n");
      res.writeHead(404).end();
    });
    await new Promise<void>((r) => web.listen(0, "127.0.0.1", r));
    webBase = `http://127.0.0.1:${(web.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await cleanupProcesses();
    await new Promise((r) => web.close(r));
    await s3.close();
    await db.drop();
  });

  it("uploads to the bucket, imports, exports, serves the download link and the report from it; tenants stay apart", async () => {
    const worker = await startWorker(
      "runtime on s3",
      {
        DATABASE_URL: db.url,
        API_KEY_PEPPER: PEPPER,
        PORT: 0,
        SCHEDULER_INTERVAL_MS: 200,
        STORAGE_URL: "s3://files/penguin",
        S3_ENDPOINT: s3.endpoint,
        S3_REGION,
        S3_ACCESS_KEY_ID: S3_KEYS.accessKeyId,
        S3_SECRET_ACCESS_KEY: S3_KEYS.secretAccessKey,
        WEBHOOK_ALLOW: "127.0.0.1",
      },
      { script: "workers/node.ts" },
    );
    const url = worker.url!;
    const keys = new ApiKeys(db.sql, { pepper: PEPPER });
    const acme = { authorization: `Bearer ${(await keys.create({ tenantId: "acme", admin: false, name: "acme" })).key}` };
    const beta = { authorization: `Bearer ${(await keys.create({ tenantId: "beta", admin: false, name: "beta" })).key}` };
    await db.sql.query("insert into lists (id, tenant_id, name) values ('lst_s3', 'acme', 'from s3'), ('lst_web', 'acme', 'from the web')");

    const rows = ["email,name", ...Array.from({ length: 2_000 }, (_, i) => `s3-${i}@example.com,Person ${i}`), "not-an-email,Bad", "s3-7@example.com,Again"];
    const upload = await fetch(`${url}/v1/imports?list_id=lst_s3&mapping=${encodeURIComponent(JSON.stringify({ email: "email", name: "name" }))}`, {
      method: "POST",
      headers: { ...acme, "content-type": "text/csv" },
      body: rows.join("\n"),
    });
    expect(upload.status).toBe(202);
    const { id } = (await upload.json()) as { id: string };
    const status = await waitFor(
      async () => {
        const r = (await (await fetch(`${url}/v1/imports/${id}`, { headers: acme })).json()) as Record<string, unknown>;
        if (r.status === "failed") throw new Error(`import failed: ${JSON.stringify(r)}`);
        return r.status === "completed" ? r : null;
      },
      { timeoutMs: 60_000, what: "the import" },
    );
    expect(status).toMatchObject({ rows_read: 2_002, created: 2_000, invalid: 1, duplicate: 1, list_added: 2_000 });
    const [stored] = await db.sql.query<{ file_url: string; report_url: string }>("select file_url, report_url from imports where id = $1", [id]);
    expect(stored!.file_url).toMatch(/^s3:\/\/files\/penguin\/acme\/imports\/upload-[0-9a-f-]+\.csv$/);
    expect(stored!.report_url).toMatch(/^s3:\/\/files\/penguin\/acme\/imports\//);
    const report = await fetch(`${url}/v1/imports/${id}/report`, { headers: acme });
    expect((await report.text()).trim().split("\n")).toEqual(["row,reason,email", "2002,invalid email,not-an-email", "2003,duplicate email in file,s3-7@example.com"]);

    // beta may not name acme's upload nor another bucket; a URL of the customer's own web server is fine.
    const steal = (fileUrl: string, who = beta) =>
      fetch(`${url}/v1/imports`, { method: "POST", headers: { ...who, "content-type": "application/json" }, body: JSON.stringify({ file_url: fileUrl, mapping: { email: "email" } }) });
    const stolen = await steal(stored!.file_url);
    expect(stolen.status).toBe(422);
    expect(await stolen.json()).toMatchObject({ errors: [{ path: "file_url", message: "that file belongs to another tenant" }] });
    expect((await steal("s3://other-bucket/penguin/beta/x.csv")).status).toBe(422);
    expect((await steal("file:///etc/passwd")).status).toBe(422);
    const fromWeb = await fetch(`${url}/v1/imports`, {
      method: "POST",
      headers: { ...acme, "content-type": "application/json" },
      body: JSON.stringify({ file_url: `${webBase}/customer.csv?signature=abc`, mapping: { email: "email", name: "name" }, list_id: "lst_web" }),
    });
    expect(fromWeb.status).toBe(202);
    const webId = ((await fromWeb.json()) as { id: string }).id;
    await waitFor(async () => {
      const [r] = await db.sql.query<{ status: string; created: number; invalid: number }>("select status, created::int, invalid::int from imports where id = $1", [webId]);
      return r?.status === "completed" ? r : null;
    }, { timeoutMs: 60_000, what: "the import from the web" });
    const [webCounts] = await db.sql.query("select created::int, invalid::int from imports where id = $1", [webId]);
    expect(webCounts).toEqual({ created: 2, invalid: 1 });

    // The list exported to the bucket, downloaded through the signed link (no API key).
    const exp = await fetch(`${url}/v1/exports`, { method: "POST", headers: { ...acme, "content-type": "application/json" }, body: JSON.stringify({ source: "list", list_id: "lst_s3" }) });
    expect(exp.status).toBe(202);
    const expId = ((await exp.json()) as { id: string }).id;
    const ready = await waitFor(async () => {
      const r = (await (await fetch(`${url}/v1/exports/${expId}`, { headers: acme })).json()) as { status: string; download_url: string | null; rows: number };
      return r.status === "ready" ? r : null;
    }, { timeoutMs: 60_000, what: "the export" });
    expect(ready!.rows).toBe(2_000);
    const [exportRow] = await db.sql.query<{ url: string }>("select url from exports where id = $1", [expId]);
    expect(exportRow!.url).toBe(`s3://files/penguin/acme/exports/${expId}.csv`);
    const download = await fetch(ready!.download_url!);
    expect(download.status).toBe(200);
    const lines = (await download.text()).trim().split(/\r?\n/);
    expect(lines).toHaveLength(2_001);
    expect(lines[0]).toBe("id,email,name,status,attributes,created_at");
    expect(lines.filter((l) => l.includes(",s3-1999@example.com,Person 1999,"))).toHaveLength(1);
    expect(s3.stats.refused).toBe(0);
    expect(worker.output()).not.toContain(S3_KEYS.secretAccessKey);
  });
});

describe("customers' URLs on Node: the guard again at connect time", () => {
  let server: Server;
  let port: number;
  beforeAll(async () => {
    server = createServer((_req, res) => res.end("inside"));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
  });

  it("refuses a name that resolves to a private address when the socket connects (what a rebinding DNS would do after the check)", async () => {
    const guarded = createGuardedFetch();
    const err = (await guarded(`http://localhost:${port}/`).catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(Error);
    expect(String((err.cause as Error)?.message)).toMatch(/refused at connect: localhost resolves to (127\.0\.0\.1|::1), .*loopback/);
    // The same through the https store, whose own check was fooled by a resolver that answered a public address.
    const fooled = createHttpsStorage({ resolver: { resolve: async () => ["93.184.216.34"] }, allow: parseAllowList(["localhost"]), fetch: guarded });
    await expect(fooled.read(`http://localhost:${port}/`)).rejects.toThrow(/refused at connect/);
  });

  it("lets allow-listed destinations through", async () => {
    expect(await (await createGuardedFetch(parseAllowList(["127.0.0.1", "::1"]))(`http://localhost:${port}/`)).text()).toBe("inside");
    expect(await (await createGuardedFetch(parseAllowList(["localhost"]))(`http://localhost:${port}/`)).text()).toBe("inside");
  });
});
