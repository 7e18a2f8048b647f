/**
 * The embedded database belongs to one process (workers/node/process-lock.ts): a second opener
 * is refused, naming the holder, whether it is this process, another one, or `npm run keys`
 * while `npm start` runs; the lock ends with its process however it ends (SIGKILL included).
 * And keys are managed over the running server's API instead, working at once.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { CONFIG_VARIABLES } from "../workers/node/config";
import { createPgliteSql, DirectoryInUseError } from "../workers/node/pglite";
import { cleanupProcesses, startWorker } from "./support/processes";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const HOLDER = "test/fixtures/hold-pglite.ts";
const dirs: string[] = [];
const children = new Set<ChildProcess>();

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "pm-lock-"));
  dirs.push(dir);
  return dir;
}

/** The environment without any of the runtime's settings (the test's own must not leak in). */
function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !CONFIG_VARIABLES.includes(k)) env[k] = v;
  return { ...env, ...extra };
}

/** Another process holding `dir` open; resolves once it says "open" (or "refused: ..."). */
async function holder(dir: string, env: Record<string, string> = {}): Promise<{ proc: ChildProcess; said: string }> {
  const proc = spawn(process.execPath, ["--import", "tsx", HOLDER, dir], { cwd: ROOT, env: cleanEnv(env), stdio: ["ignore", "pipe", "pipe"] });
  children.add(proc);
  proc.once("exit", () => children.delete(proc));
  let out = "";
  let err = "";
  proc.stderr!.on("data", (c: Buffer) => (err += c.toString()));
  const said = await new Promise<string>((resolve, reject) => {
    proc.stdout!.on("data", (c: Buffer) => {
      out += c.toString();
      if (out.includes("\n")) resolve(out.trim());
    });
    proc.once("exit", (code) => reject(new Error(`holder exited ${code} before saying anything: ${err}`)));
  });
  return { proc, said };
}

function run(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ["--import", "tsx", ...args], { cwd: ROOT, env: cleanEnv(env) }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

afterEach(async () => {
  for (const c of children) c.kill("SIGKILL");
  await cleanupProcesses();
});

afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe("one process on an embedded data directory", () => {
  it("refuses a second open in the same process, and lets it in after close", async () => {
    const dir = join(await tempDir(), "pglite");
    const first = await createPgliteSql(dir);
    try {
      const refused = await createPgliteSql(dir).then(
        () => null,
        (e: unknown) => e,
      );
      expect(refused).toBeInstanceOf(DirectoryInUseError);
      expect((refused as DirectoryInUseError).holder?.pid).toBe(process.pid);
      expect((refused as Error).message).toContain(`in use by process ${process.pid}`);
    } finally {
      await first.close();
    }
    const again = await createPgliteSql(dir);
    await again.close();
  }, 60_000);

  it("refuses while another process holds it, and not after that process is SIGKILLed", async () => {
    const dir = join(await tempDir(), "pglite");
    const other = await holder(dir);
    expect(other.said).toBe("open");
    const refused = await createPgliteSql(dir).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(DirectoryInUseError);
    expect((refused as DirectoryInUseError).holder).toMatchObject({ pid: other.proc.pid });
    expect((refused as Error).message).toMatch(/in use by process \d+ \(node .*hold-pglite\.ts/);

    other.proc.kill("SIGKILL");
    await once(other.proc, "exit");
    const sql = await createPgliteSql(dir);
    await sql.close();
  }, 60_000);

  it("without the flock command (pid-file fallback): refused while the holder runs, free after SIGKILL", async () => {
    const dir = join(await tempDir(), "pglite");
    // No PATH: spawning `flock` fails, so the holder takes the O_EXCL pid file instead.
    const other = await holder(dir, { PATH: "/nonexistent" });
    expect(other.said).toBe("open");
    const second = await holder(dir, { PATH: "/nonexistent" });
    expect(second.said).toBe(`refused: ${dir} is in use by process ${other.proc.pid} (${"node"} ${join(ROOT, HOLDER)} ${dir}, since ${JSON.parse(await readFile(join(dir, "penguinmails.lock"), "utf8")).since})`);
    // A flock-mode opener respects the fallback's pid file too.
    await expect(createPgliteSql(dir)).rejects.toThrow(`in use by process ${other.proc.pid}`);

    other.proc.kill("SIGKILL");
    await once(other.proc, "exit");
    const after = await holder(dir, { PATH: "/nonexistent" });
    expect(after.said).toBe("open"); // the dead holder's file is stale
    after.proc.kill("SIGTERM");
    await once(after.proc, "exit");
  }, 90_000);

  it("treats a pid file whose process is gone as stale", async () => {
    const dir = join(await tempDir(), "pglite");
    const { mkdir } = await import("node:fs/promises");
    await mkdir(dir, { recursive: true });
    // A pid that cannot run (above pid_max), as a crashed fallback holder would leave behind.
    await writeFile(join(dir, "penguinmails.lock"), JSON.stringify({ pid: 2 ** 30, host: (await import("node:os")).hostname(), command: "node gone", since: "2020-01-01T00:00:00Z" }));
    const sql = await createPgliteSql(dir);
    await sql.close();
  }, 60_000);
});

describe("npm run keys while npm start runs on the embedded default", () => {
  it("refuses clearly, and the server's key API creates, lists and revokes keys that work at once", async () => {
    const dataDir = await tempDir();
    const server = await startWorker("embedded server", { DATA_DIR: dataDir, PORT: 0, LOG_LEVEL: "info", REGISTRY_INTERVAL_MS: 60_000 }, { script: "workers/node.ts" });
    const url = server.url!;

    const cli = await run(["workers/cli.ts", "keys", "create", "--tenant", "acme", "--name", "web"], { DATA_DIR: dataDir });
    expect(cli.code).toBe(1);
    expect(cli.stdout).not.toMatch(/pmk_/); // no key printed that the server would not know
    expect(cli.stderr).toContain(`in use by process ${server.pid}`);
    expect(cli.stderr).toContain("/v1/keys");
    const list = await run(["workers/cli.ts", "keys", "list"], { DATA_DIR: dataDir });
    expect(list.code).toBe(1);

    const admin = (await readFile(join(dataDir, "admin-key"), "utf8")).trim();
    const call = (method: string, path: string, key: string, body?: unknown) =>
      fetch(`${url}${path}`, {
        method,
        headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });

    const created = await call("POST", "/v1/keys", admin, { tenant_id: "acme", name: "web" });
    expect(created.status).toBe(201);
    const key = (await created.json()) as { id: string; key: string; tenant_id: string };
    expect(key).toMatchObject({ tenant_id: "acme", admin: false, name: "web", revoked_at: null });
    expect(key.key).toMatch(new RegExp(`^pmk_${key.id}_`));
    // Works at once in the running server.
    expect((await call("GET", "/v1/jobs", key.key)).status).toBe(200);

    const listed = (await (await call("GET", "/v1/keys", admin)).json()) as { keys: Record<string, unknown>[] };
    expect(listed.keys.map((k) => k.id)).toContain(key.id);
    expect(JSON.stringify(listed)).not.toContain(key.key.slice(18));
    for (const k of listed.keys) expect(Object.keys(k).sort()).toEqual(["admin", "created_at", "id", "name", "revoked_at", "tenant_id"]);

    const revoked = await call("DELETE", `/v1/keys/${key.id}`, admin);
    expect(revoked.status).toBe(200);
    expect((await revoked.json()) as { revoked_at: string | null }).toMatchObject({ revoked_at: expect.any(String) });
    expect((await call("GET", "/v1/jobs", key.key)).status).toBe(401); // at once: this process revoked it
    await server.kill("SIGTERM");
  }, 120_000);
});
