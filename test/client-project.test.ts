/**
 * The typed client as a user gets it (issue #14): the repo packed with `npm pack` (which runs
 * prepare, so the tarball holds dist/lib), a fresh project (test/fixtures/client-project/) that
 * installs the tarball from npm's cache, its own tsc checking src/flow.ts against the installed
 * types and rejecting a file with deliberate errors (so the check cannot pass vacuously), then
 * `npm start` from the repo on a temporary DATA_DIR and a free port, the project's flow run by
 * Node 24 (type stripping, no build) against it, and the server stopped with SIGTERM.
 *
 * The flow: a tenant key, a list, a CSV import waited for, a template and a campaign started and
 * followed to `sent` (the embedded default mails into its outbox), the list exported and
 * downloaded. Each step prints a line; the assertions read those lines.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CONFIG_VARIABLES } from "../workers/node/config";

const root = resolve(import.meta.dirname, "..");
const fixture = join(root, "test", "fixtures", "client-project");
/** What the test copies: the example project as a user would have it. */
const PROJECT_FILES = ["package.json", "tsconfig.json", "contacts.csv", "src"];

let work: string;
let project: string;
let tarball: string | undefined;
let installed = false;
let server: Server | undefined;
const timings: Record<string, number> = {};

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "pm-client-project-"));
  project = join(work, "project");
});

afterAll(async () => {
  if (server && server.exit === undefined) {
    // A failed test left it running: the whole group (npm and node) goes.
    try {
      process.kill(-server.proc.pid!, "SIGKILL");
    } catch {}
    await server.exited;
  }
  rmSync(work, { recursive: true, force: true });
  const shown = Object.entries(timings).map(([step, ms]) => `${step} ${(ms / 1_000).toFixed(1)} s`);
  if (shown.length) process.stdout.write(`client project: ${shown.join(", ")}\n`);
});

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
  timedOut: boolean;
}

/**
 * A user's shell: the test run's node (Node 24) first on PATH, none of the npm_* variables of
 * the `npm test` around us (npm_config_local_prefix would point a nested npm back at this repo)
 * and none of the server's settings (DATABASE_URL, REDIS_URL, ...).
 */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.toLowerCase().startsWith("npm_") && k !== "INIT_CWD" && !CONFIG_VARIABLES.includes(k)) env[k] = v;
  }
  env.PATH = `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ""}`;
  return { ...env, ...extra };
}

/** Runs a command to its end, or kills its whole process group after `timeoutMs`. */
function run(command: string, args: string[], options: { cwd: string; timeoutMs: number; env?: NodeJS.ProcessEnv }): Promise<Ran> {
  const started = Date.now();
  return new Promise((resolvePromise, reject) => {
    const proc = spawn(command, args, { cwd: options.cwd, env: options.env ?? userEnv(), stdio: ["ignore", "pipe", "pipe"], detached: true });
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    proc.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    proc.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-proc.pid!, "SIGKILL");
      } catch {}
    }, options.timeoutMs);
    proc.once("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${command}: ${err.message}`));
    });
    proc.once("close", (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr, ms: Date.now() - started, timedOut });
    });
  });
}

/** The last lines of a command's output; a compiler's diagnostics first, wherever they are (--listFiles buries them). */
const tail = (text: string, lines = 40) => {
  const all = text.trimEnd().split("\n");
  const diagnostics = all.filter((l) => /error TS\d+/.test(l));
  return [...diagnostics, ...all.slice(-lines)].join("\n");
};

/** The command's output, or an error that names the step and shows what the command said. */
async function step(name: string, command: string, args: string[], options: { cwd: string; timeoutMs: number; env?: NodeJS.ProcessEnv }): Promise<Ran> {
  const ran = await run(command, args, options);
  timings[name] = ran.ms;
  const line = `${command} ${args.join(" ")} (in ${options.cwd})`;
  if (ran.timedOut) throw new Error(`${name}: \`${line}\` did not finish within ${options.timeoutMs / 1_000} s\n${tail(ran.stdout)}\n${tail(ran.stderr)}`);
  if (ran.code !== 0) throw new Error(`${name}: \`${line}\` exited ${ran.code}\n${tail(ran.stdout)}\n${tail(ran.stderr)}`);
  return ran;
}

interface Server {
  proc: ChildProcess;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exit?: { code: number | null; signal: NodeJS.Signals | null };
}

// ---------------------------------------------------------------------------------------------
// The tests, in order: each needs the one before.
// ---------------------------------------------------------------------------------------------

describe("a fresh project that installs the client from the repo", () => {
  it("npm pack: the tarball holds the client's entry, its declarations and no sources", async () => {
    // Packed from a copy of the working tree (what `git ls-files` lists plus untracked files not
    // ignored: what npm pack in the repo would see): prepare rebuilds dist/lib from scratch, and
    // doing that in the repo itself would race test/library.test.ts's own `npm run build:lib` on
    // the same folder in a parallel test file. The copy's node_modules is the repo's, hard-linked
    // (a quarter of a second): a symlink to it would put every package outside the copy, and tsc's
    // declaration emit then cannot name a dependency's dependency (TS2742) where the repo can.
    const copy = join(work, "repo");
    const listed = await step("git ls-files", "git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], { cwd: root, timeoutMs: 30_000 });
    for (const file of listed.stdout.split("\0").filter(Boolean)) {
      if (!existsSync(join(root, file))) continue; // deleted in the working tree, not yet committed
      mkdirSync(dirname(join(copy, file)), { recursive: true });
      cpSync(join(root, file), join(copy, file));
    }
    await step("link node_modules", "cp", ["-al", join(root, "node_modules"), join(copy, "node_modules")], { cwd: root, timeoutMs: 60_000 });
    const packs = join(work, "packs");
    mkdirSync(packs);
    const packed = await step("pack", "npm", ["pack", "--pack-destination", packs, "--json"], { cwd: copy, timeoutMs: 180_000 });
    // --json's array follows whatever prepare printed.
    const [info] = JSON.parse(packed.stdout.slice(Math.max(0, packed.stdout.search(/^\[\s*$/m)))) as { filename: string; files: { path: string }[] }[];
    expect(info, `npm pack printed no result:\n${packed.stdout}`).toBeDefined();
    const files = info!.files.map((f) => f.path);
    for (const path of ["package.json", "dist/lib/client.js", "dist/lib/client.d.ts", "dist/lib/types/shared/client/client.d.ts", "dist/lib/types/shared/client/schema.gen.d.ts"]) {
      expect(files, `the tarball lacks ${path}`).toContain(path);
    }
    expect(files.filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts")), "TypeScript sources in the tarball").toEqual([]);
    tarball = join(packs, info!.filename);
    expect(readdirSync(packs)).toEqual([info!.filename]);
  }, 240_000);

  it("npm install: the project installs the tarball and its dependencies from npm's cache", async () => {
    expect(tarball, "no tarball: the pack step failed").toBeDefined();
    mkdirSync(project);
    for (const name of PROJECT_FILES) cpSync(join(fixture, name), join(project, name), { recursive: true });
    // Where the project's package.json expects it ("file:vendor/penguinmails-jobs.tgz").
    mkdirSync(join(project, "vendor"));
    renameSync(tarball!, join(project, "vendor", "penguinmails-jobs.tgz"));
    const ran = await step("install", "npm", ["install", "--prefer-offline", "--no-audit", "--no-fund"], { cwd: project, timeoutMs: 240_000 });
    if (ran.ms > 60_000) process.stdout.write(`client project: npm install took ${(ran.ms / 1_000).toFixed(0)} s (over a minute)\n`);
    const pkg = join(project, "node_modules", "penguinmails-jobs");
    // Extracted from the tarball, not linked to the repo.
    expect(lstatSync(pkg).isSymbolicLink()).toBe(false);
    expect(existsSync(join(pkg, "dist", "lib", "client.js"))).toBe(true);
    expect(existsSync(join(pkg, "shared")), "sources installed with the package").toBe(false);
    expect(existsSync(join(project, "node_modules", "openapi-fetch", "package.json")), "the client's dependency openapi-fetch").toBe(true);
    expect(existsSync(join(project, "node_modules", ".bin", "tsc")), "the project's own tsc (typescript, a devDependency)").toBe(true);
    installed = true;
  }, 300_000);

  it("tsc: the project's own compiler accepts src/flow.ts against the installed types, and rejects a wrong file", async () => {
    expect(installed, "not installed: the install step failed").toBe(true);
    const checked = await step("tsc", "npx", ["tsc", "--noEmit", "--listFiles"], { cwd: project, timeoutMs: 180_000 });
    const files = checked.stdout.split("\n").map((l) => l.trim());
    expect(files).toContain(join(project, "src", "flow.ts"));
    // The types came from the tarball the project installed.
    expect(files).toContain(join(project, "node_modules", "penguinmails-jobs", "dist", "lib", "types", "shared", "client", "schema.gen.d.ts"));

    // The same command with a file that misuses the client: tsc must say exactly what is wrong.
    writeFileSync(
      join(project, "src", "wrong.ts"),
      [
        `import { createJobsClient } from "penguinmails-jobs/client";`,
        ``,
        `const jobs = createJobsClient({ baseUrl: "http://127.0.0.1:3000" });`,
        `// A campaign needs its template.`,
        `await jobs.api.POST("/v1/campaigns", { body: { name: "Launch", list_id: "lst_1" } });`,
        `// A job's state is one of its states' names.`,
        `const state: number = (await jobs.get("1")).state;`,
        `console.log(state);`,
        ``,
      ].join("\n"),
    );
    const wrong = await run("npx", ["tsc", "--noEmit"], { cwd: project, timeoutMs: 180_000 });
    timings["tsc (wrong.ts)"] = wrong.ms;
    expect(wrong.timedOut, "tsc on wrong.ts did not finish").toBe(false);
    expect(wrong.code, `tsc accepted src/wrong.ts:\n${wrong.stdout}`).not.toBe(0);
    const errors = wrong.stdout.split("\n").filter((l) => /error TS\d+/.test(l));
    expect(errors.every((e) => e.startsWith("src/wrong.ts(")), `errors outside wrong.ts:\n${wrong.stdout}`).toBe(true);
    expect(errors.some((e) => e.startsWith("src/wrong.ts(5,"))).toBe(true);
    expect(wrong.stdout).toMatch(/Property 'template_id' is missing/);
    expect(errors.some((e) => e.startsWith("src/wrong.ts(7,") && /is not assignable to type 'number'/.test(e)), wrong.stdout).toBe(true);
    rmSync(join(project, "src", "wrong.ts"));
  }, 400_000);

  it("node src/flow.ts against `npm start`: a list imported, a campaign sent, the list exported and downloaded", async () => {
    expect(installed, "not installed: the install step failed").toBe(true);
    const data = join(work, "data");
    mkdirSync(data);
    const started = Date.now();
    // As a user starts it: from the repo, on the embedded default (PGlite, the outbox mailer),
    // in a data folder of its own and on a free port. Its own process group, for the cleanup.
    const proc = spawn("npm", ["start"], { cwd: root, env: userEnv({ DATA_DIR: data, HOST: "127.0.0.1", PORT: "0" }), stdio: ["ignore", "pipe", "pipe"], detached: true });
    let out = "";
    proc.stdout!.on("data", (c: Buffer) => (out += c.toString()));
    proc.stderr!.on("data", (c: Buffer) => (out += c.toString().replace(/^/gm, "[stderr] ")));
    const s: Server = {
      proc,
      output: () => out,
      exited: new Promise((r) => proc.once("exit", (code, signal) => r({ code, signal }))),
    };
    void s.exited.then((e) => (s.exit = e));
    server = s;
    for (const deadline = started + 120_000; !/"msg":"ready"/.test(out); await new Promise((r) => setTimeout(r, 100))) {
      if (s.exit) throw new Error(`npm start exited ${JSON.stringify(s.exit)} before it was ready:\n${tail(out)}`);
      if (Date.now() > deadline) throw new Error(`npm start did not print "ready" within 120 s:\n${tail(out)}`);
    }
    timings["npm start to ready"] = Date.now() - started;
    expect(out, "the embedded default's banner").toContain(`PenguinMails Jobs on the embedded default`);
    expect(out).toContain(`database:  PGlite (embedded) in ${data}/pglite`);
    const url = /^ {2}API: +(http:\/\/127\.0\.0\.1:\d+) /m.exec(out)?.[1];
    const bannerKey = /^ {2}admin key: (pmk_admin_\S+)/m.exec(out)?.[1];
    expect(url, `no API address in the banner:\n${out}`).toBeDefined();
    expect(bannerKey, `no admin key in the banner:\n${out}`).toBeDefined();
    const adminKey = readFileSync(join(data, "admin-key"), "utf8").trim();
    expect(adminKey).toBe(bannerKey);

    const flow = await step("flow", process.execPath, ["src/flow.ts"], {
      cwd: project,
      timeoutMs: 150_000,
      env: userEnv({ JOBS_URL: url!, ADMIN_KEY: adminKey }),
    }).catch((err: Error) => {
      throw new Error(`${err.message}\nthe server's output:\n${tail(out)}`);
    });
    expect(flow.stderr, "the flow wrote to stderr").toBe("");
    const lines = flow.stdout.trimEnd().split("\n");
    const listId = /^list created: (lst_\w+) \(Launch\)$/.exec(lines[0] ?? "")?.[1];
    expect(listId, flow.stdout).toBeDefined();
    // contacts.csv: 3 addresses, one invalid, one already in the file in other case.
    expect(lines[1]).toMatch(/^import \d+ completed: 5 rows read, 3 created, 0 updated, 1 invalid, 1 duplicate, 3 added to the list$/);
    const campaignId = /^campaign (camp_\w+) started: (sending|sent)$/.exec(lines[2] ?? "")?.[1];
    expect(campaignId, flow.stdout).toBeDefined();
    const progress = lines.filter((l) => l.startsWith(`campaign ${campaignId} `)).slice(1);
    expect(progress.at(-1)).toBe(`campaign ${campaignId} sent: 3 recipients, 3 sent, 0 skipped, 0 failed`);
    expect(lines).toContain(`outbox: ada@example.com "Hello Ada", bob@example.com "Hello Bob", chloe@example.com "Hello Chloé"`);
    expect(lines.at(-1)).toMatch(/^export \d+ downloaded: 3 contacts: ada@example.com Ada, bob@example.com Bob, chloe@example.com Chloé$/);
  }, 300_000);

  it("SIGTERM to `npm start`: the server stops gracefully and exits 0", async () => {
    expect(server, "no server: the flow step failed to start it").toBeDefined();
    const s = server!;
    expect(s.exit, `the server had already exited:\n${tail(s.output())}`).toBeUndefined();
    const t0 = Date.now();
    process.kill(s.proc.pid!, "SIGTERM"); // npm forwards it to node
    const exit = await Promise.race([
      s.exited,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`npm start did not exit within 30 s of SIGTERM:\n${tail(s.output())}`)), 30_000)),
    ]);
    timings["SIGTERM to exit"] = Date.now() - t0;
    expect(exit, tail(s.output())).toEqual({ code: 0, signal: null });
    const log = s.output();
    expect(log).toMatch(/"signal":"SIGTERM","msg":"signal received"/);
    expect(log).toMatch(/"msg":"stopped"/);
    expect(log).not.toContain("[stderr]");
    // Nothing of its process group is left (node was npm's child).
    expect(() => process.kill(-s.proc.pid!, 0)).toThrow();
  }, 60_000);
});
