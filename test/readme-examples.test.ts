/**
 * The README's shell examples, run as written against the real Node entry (workers/node.ts) on a
 * fresh Postgres database: every ```sh block, top to bottom, in ONE bash session, so a block uses
 * the variables the ones before it set (KEY, ACME_KEY, LIST, ...), as a reader following the
 * README does.
 *
 * The README's conventions, which this file enforces:
 * - ```sh norun        shown only (npm install, npm start, operator commands, the edge deploy).
 * - ```sh              runs under `set -euo pipefail`; `curl` is a function adding
 *                      --fail-with-body and --max-time, so an answer of 400 or more (a wrong route,
 *                      a wrong field) fails the block and prints the answer.
 * - ```sh status=422   an example that shows an error on purpose: plain curl, and the block's
 *                      output must be a problem with that status, equal to the ```json block
 *                      that follows it.
 * - `# … → text`       in a comment: what the answer shows. Each piece of `text` between `…`
 *                      must appear in the block's output, in order.
 * The blocks run in a temporary directory holding `.data/admin-key` (the server's admin key), so
 * `KEY=$(cat .data/admin-key)` works as on the embedded default; `localhost:3000` becomes the
 * server's address and the example webhook URL a local receiver's (WEBHOOK_ALLOW lets it through).
 * Mail goes to the outbox (no provider configured), as on the embedded default.
 *
 * README_EXAMPLES_FILE=<path> runs another copy of the README (to see a broken example fail).
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanupProcesses, freePort, startWorker, takeOutputs, type WorkerProcess } from "./support/processes";
import { createTestDatabase, randomId } from "./support/services";
import { Webhook } from "standardwebhooks";
import { headersOf, startReceiver, type WebhookReceiver } from "./support/webhook-receiver";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const README = process.env.README_EXAMPLES_FILE ?? join(ROOT, "README.md");
/** The example webhook URL of the README, delivered to a local receiver instead. */
const EXAMPLE_HOOK_URL = "https://hooks.example.com/penguinmails";
/** One block may take this long (its waits are ?wait=30 and polls of a campaign). */
const BLOCK_TIMEOUT_MS = 60_000;
/** Each curl call of a block, at most. */
const CURL_MAX_SECONDS = 40;
/** The whole session, at most, enforced by the shell itself too (should this test's process die first). */
const SESSION_TIMEOUT_MS = 280_000;

interface Block {
  n: number;
  /** 1-based line of the opening fence. */
  line: number;
  heading: string;
  flags: string[];
  code: string;
  /** status=NNN: the HTTP status the example shows on purpose. */
  status?: number;
  /** The ```json block right after it, if any. */
  shownJson?: string;
}

interface Expectation {
  line: number;
  pieces: string[];
}

/** The fenced blocks of a markdown text, indented ones (inside list items) included. */
function shellBlocks(markdown: string): Block[] {
  const lines = markdown.split("\n");
  const blocks: Block[] = [];
  let heading = "(top)";
  let lastShell: Block | undefined;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (/^#{1,6} /.test(line)) heading = line.trim();
    const open = /^(\s*)```(\S*)\s*(.*)$/.exec(line);
    if (!open) continue;
    const [, indent, lang, info] = open as unknown as [string, string, string, string];
    const body: string[] = [];
    let j = i + 1;
    while (j < lines.length && !/^\s*```\s*$/.test(lines[j]!)) body.push(lines[j++]!.slice(indent.length));
    if (j >= lines.length) throw new Error(`README line ${i + 1}: a code fence is never closed`);
    if (["sh", "bash", "shell"].includes(lang)) {
      const flags = info.split(/\s+/).filter(Boolean);
      const status = flags.find((f) => f.startsWith("status="));
      lastShell = { n: blocks.length + 1, line: i + 1, heading, flags, code: body.join("\n"), status: status ? Number(status.slice(7)) : undefined };
      blocks.push(lastShell);
    } else {
      if (lang === "json" && lastShell?.status !== undefined && lastShell.shownJson === undefined) lastShell.shownJson = body.join("\n");
      lastShell = undefined;
    }
    i = j;
  }
  return blocks;
}

const runnable = (b: Block) => !b.flags.includes("norun");

/** The `# … → text` comments of a block, as the pieces its output must show in order. */
function expectations(block: Block): Expectation[] {
  return block.code.split("\n").flatMap((text, i) => {
    const m = /\s#\s[^\n]*?→\s*(.*)$/.exec(text);
    if (!m) return [];
    const pieces = m[1]!.split("…").map((p) => p.trim()).filter(Boolean);
    return pieces.length ? [{ line: block.line + 1 + i, pieces }] : [];
  });
}

function where(b: Block): string {
  return `README block ${b.n} (line ${b.line}, under "${b.heading}")`;
}

const BEGIN = (n: number) => `@@readme-block ${n} begin@@`;
const END = (n: number) => `@@readme-block ${n} end@@`;

/** The bash script that runs the blocks (each from its own file) between markers. */
function sessionScript(blocks: Block[], dir: string): string {
  const strictCurl = `curl() {
  local out rc=0
  out=$(mktemp)
  command curl --fail-with-body --max-time ${CURL_MAX_SECONDS} "$@" >"$out" || rc=$?
  if [ "$rc" -ne 0 ]; then
    printf '\\n[readme-examples] curl failed (exit %s): curl %s\\n' "$rc" "$(printf '%s ' "$@" | sed -E 's/Bearer [^ ]+/Bearer …/g')" >&2
    printf '[readme-examples] its answer: %s\\n' "$(cat "$out")" >&2
  fi
  cat "$out"; rm -f "$out"
  return "$rc"
}`;
  const plainCurl = `curl() { command curl --max-time ${CURL_MAX_SECONDS} "$@"; }`;
  const lines = [
    "exec 2>&1",
    // The session leads its own process group (spawned detached): this ends it, polls included,
    // even if nothing is left to do so.
    `(trap 'kill $s 2>/dev/null; exit 0' TERM; sleep ${SESSION_TIMEOUT_MS / 1000} & s=$!; wait $s; kill -KILL -- -$$) >/dev/null 2>&1 &`,
    "READMEWATCHDOG=$!",
    "trap 'kill $READMEWATCHDOG 2>/dev/null || true' EXIT",
    "set -euo pipefail",
    `cd ${JSON.stringify(dir)}`,
  ];
  for (const b of blocks) {
    lines.push(b.status === undefined ? strictCurl : plainCurl);
    lines.push(`printf '\\n%s\\n' ${JSON.stringify(BEGIN(b.n))}`);
    lines.push(`. ${JSON.stringify(join(dir, "blocks", `${b.n}.sh`))}`);
    lines.push(`printf '\\n%s\\n' ${JSON.stringify(END(b.n))}`);
  }
  return lines.join("\n") + "\n";
}

interface SessionResult {
  output: string;
  code: number | null;
  timedOut?: number;
}

/** Runs the script; a block running past BLOCK_TIMEOUT_MS kills the session (its process group). */
function runSession(dir: string): Promise<SessionResult> {
  return new Promise((resolve) => {
    const proc: ChildProcess = spawn("bash", ["--noprofile", "--norc", join(dir, "session.sh")], {
      cwd: dir,
      // Nothing of the test's own environment: a reader's shell has none of it either.
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir, LANG: "C.UTF-8" },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    let output = "";
    let current = 0;
    let timedOut: number | undefined;
    let timer: NodeJS.Timeout | undefined;
    const arm = (n: number) => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        timedOut = n;
        try {
          process.kill(-proc.pid!, "SIGKILL");
        } catch {
          // already gone
        }
      }, BLOCK_TIMEOUT_MS);
    };
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const begun = [...output.matchAll(/@@readme-block (\d+) begin@@/g)].at(-1);
      if (begun && Number(begun[1]) !== current) arm((current = Number(begun[1])));
    };
    proc.stdout!.on("data", onData);
    proc.stderr!.on("data", onData);
    arm(0);
    // "close", not "exit": the last output may still be in the pipe when bash exits.
    proc.once("close", (code) => {
      clearTimeout(timer);
      resolve({ output, code, timedOut });
    });
  });
}

/** The output of block n, or undefined if it never began; `ended` tells whether it finished. */
function outputOf(output: string, n: number): { text: string; ended: boolean } | undefined {
  const start = output.indexOf(BEGIN(n));
  if (start < 0) return undefined;
  const from = start + BEGIN(n).length;
  const end = output.indexOf(END(n), from);
  return { text: (end < 0 ? output.slice(from) : output.slice(from, end)).replace(/^\n/, "").replace(/\n$/, ""), ended: end >= 0 };
}

/** What is wrong with one finished block's output, or undefined. */
function checkBlock(b: Block, text: string): string | undefined {
  if (b.status !== undefined) {
    let answer: unknown;
    try {
      answer = JSON.parse(text);
    } catch {
      return `expected a problem answer with status ${b.status}, got: ${text}`;
    }
    if ((answer as { status?: unknown }).status !== b.status) return `expected status ${b.status}, got: ${text}`;
    if (b.shownJson !== undefined) {
      try {
        expect(answer).toEqual(JSON.parse(b.shownJson));
      } catch {
        return `the server answered\n${text}\nbut the README shows\n${b.shownJson}`;
      }
    }
  }
  let at = 0;
  for (const e of expectations(b)) {
    for (const piece of e.pieces) {
      const found = text.indexOf(piece, at);
      if (found < 0) return `the output does not show \`${piece}\` (README line ${e.line}) where the comment says it should`;
      at = found + piece.length;
    }
  }
  return undefined;
}

/** Route groups the issue asks an example for, as text a runnable block must hold. */
const ROUTE_GROUPS: [string, RegExp][] = [
  ["enqueue one job", /-XPOST localhost:3000\/v1\/jobs -H/],
  ["enqueue a batch", /-XPOST localhost:3000\/v1\/jobs\/batch/],
  ["get a job with ?wait=", /localhost:3000\/v1\/jobs\/\$\w+\?wait=\d+/],
  ["follow a job's events (SSE)", /curl -s?N localhost:3000\/v1\/jobs\/\$\w+\/events/],
  ["list jobs", /localhost:3000\/v1\/jobs\?type=/],
  ["cancel a job", /-XPOST localhost:3000\/v1\/jobs\/\$\w+\/cancel/],
  ["retry a job", /-XPOST localhost:3000\/v1\/jobs\/\$\w+\/retry/],
  ["delete a job", /-XDELETE localhost:3000\/v1\/jobs\/\$\w+/],
  ["list queues", /localhost:3000\/v1\/queues -H/],
  ["pause a queue", /\/v1\/queues\/[\w.]+\/pause/],
  ["resume a queue", /\/v1\/queues\/[\w.]+\/resume/],
  ["retry a queue's failed jobs", /\/v1\/queues\/[\w.]+\/retry-failed/],
  ["schedules", /localhost:3000\/v1\/schedules/],
  ["scaling", /localhost:3000\/v1\/scaling/],
  ["workers", /localhost:3000\/v1\/workers/],
  ["create a key", /-XPOST localhost:3000\/v1\/keys /],
  ["list keys", /localhost:3000\/v1\/keys\?/],
  ["get a key", /curl -s localhost:3000\/v1\/keys\/\$\w+/],
  ["revoke a key", /-XDELETE localhost:3000\/v1\/keys\/\$\w+/],
  ["create a webhook endpoint", /-XPOST localhost:3000\/v1\/webhooks\/endpoints -H/],
  ["list webhook endpoints", /curl -s localhost:3000\/v1\/webhooks\/endpoints -H/],
  ["test a webhook endpoint", /\/v1\/webhooks\/endpoints\/\$\w+\/test/],
  ["a webhook endpoint's deliveries", /\/v1\/webhooks\/endpoints\/\$\w+\/deliveries/],
  ["create an export", /-XPOST localhost:3000\/v1\/exports/],
  ["poll an export", /localhost:3000\/v1\/exports\/\$\w+/],
  ["download an export", /download_url/],
  ["upload a CSV import", /-XPOST localhost:3000\/v1\/imports[^\n]*text\/csv/],
  ["an import's status", /localhost:3000\/v1\/imports\/\$\w+ /],
  ["an import's report_url", /report_url/],
  ["contacts", /localhost:3000\/v1\/contacts/],
  ["sending guards", /localhost:3000\/v1\/sending\/guards -H/],
  ["reset a sending guard", /-XPOST "localhost:3000\/v1\/sending\/guards\/reset/],
  ["lists", /localhost:3000\/v1\/lists/],
  ["segments", /localhost:3000\/v1\/segments/],
  ["templates", /localhost:3000\/v1\/templates/],
  ["campaigns", /-XPOST localhost:3000\/v1\/campaigns -H/],
  ["start a campaign", /\/v1\/campaigns\/\$\w+\/start/],
  ["pause a campaign", /\/v1\/campaigns\/\$\w+\/pause/],
  ["resume a campaign", /\/v1\/campaigns\/\$\w+\/resume/],
  ["cancel a campaign", /\/v1\/campaigns\/\$\w+\/cancel/],
  ["update a campaign", /-XPATCH localhost:3000\/v1\/campaigns\/\$\w+ /],
  ["a campaign's stats", /localhost:3000\/v1\/campaigns\/\$\w+\/stats/],
  ["follow a tracked link /c/:token", /\/c\/t1/],
  ["the open pixel /o/:token", /\/o\/t1/],
  ["suppressions", /localhost:3000\/v1\/suppressions/],
  ["post a DSN", /-XPOST localhost:3000\/v1\/bounces\/dsn -H/],
  ["the outbox", /localhost:3000\/v1\/outbox/],
  ["unsubscribe /u/:token", /List-Unsubscribe/],
  ["make a domain's DKIM key", /-XPOST localhost:3000\/v1\/domains\/[\w.-]+\/dkim -H/],
  ["list a domain's DKIM keys", /curl -s localhost:3000\/v1\/domains\/[\w.-]+\/dkim -H/],
  ["rotate a domain's DKIM key", /-XPOST localhost:3000\/v1\/domains\/[\w.-]+\/dkim\/rotate/],
  ["/metrics", /localhost:3000\/metrics/],
  ["/healthz", /localhost:3000\/healthz/],
  ["/openapi.json", /localhost:3000\/openapi\.json/],
];

/** Fails at once, saying what to install, when a program the examples use is missing. */
function assertTools(): void {
  const missing = (cmd: string, args: string[]) => spawnSync(cmd, args, { stdio: "ignore" }).status !== 0;
  if (missing("bash", ["-c", "true"])) throw new Error("test/readme-examples.test.ts needs bash");
  if (missing("jq", ["--version"])) {
    throw new Error("the README's examples keep ids in shell variables with jq, which is not installed here: apt-get install jq (or brew install jq)");
  }
  const curl = spawnSync("curl", ["--version"], { encoding: "utf8" });
  const version = /^curl (\d+)\.(\d+)/.exec(curl.stdout ?? "");
  if (!version || Number(version[1]) * 1000 + Number(version[2]) < 7087) {
    throw new Error(`the README's examples need curl 7.87 or later (--url-query); found: ${curl.stdout?.split("\n")[0] || "none"}`);
  }
}

describe("the README's shell examples", () => {
  let markdown = "";
  let blocks: Block[] = [];
  let dir = "";
  let server: WorkerProcess | undefined;
  let receiver: WebhookReceiver | undefined;
  const cleanups: (() => Promise<unknown>)[] = [];

  beforeAll(async () => {
    assertTools();
    const db = await createTestDatabase("readme_examples");
    cleanups.push(() => db.drop());
    receiver = await startReceiver();
    cleanups.push(() => receiver!.close());
    dir = await mkdtemp(join(tmpdir(), "pm-readme-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const adminKey = `readme-admin-${randomId(16)}`;
    await mkdir(join(dir, ".data"), { recursive: true });
    await mkdir(join(dir, "blocks"));
    await writeFile(join(dir, ".data", "admin-key"), `${adminKey}\n`);
    const port = await freePort();
    server = await startWorker(
      "readme server",
      {
        DATABASE_URL: db.url,
        API_KEY_PEPPER: `readme-pepper-${randomId(8)}`,
        DKIM_ENCRYPTION_KEY: `readme-dkim-${randomId(16)}`,
        ADMIN_API_KEY: adminKey,
        PORT: port,
        DATA_DIR: join(dir, ".data"),
        WEBHOOK_ALLOW: "127.0.0.1",
        DATABASE_POOL_SIZE: 6,
        EMAIL_CONCURRENCY: 10,
        LOG_LEVEL: "info", // the "ready" line startWorker waits for is an info line
      },
      { script: "workers/node.ts" },
    );
    markdown = (await readFile(README, "utf8"))
      .replaceAll("localhost:3000", new URL(server.url!).host)
      .replaceAll(EXAMPLE_HOOK_URL, `${receiver.url}/penguinmails`);
    blocks = shellBlocks(markdown).filter(runnable);
  }, 120_000);

  afterAll(async () => {
    await cleanupProcesses();
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  });

  it("has an example for every route group, and says that this test runs them", async () => {
    const original = await readFile(README, "utf8");
    const code = shellBlocks(original).filter(runnable).map((b) => b.code).join("\n");
    const missing = ROUTE_GROUPS.filter(([, re]) => !re.test(code)).map(([name]) => name);
    expect(missing, "route groups without a runnable curl example in the README").toEqual([]);
    expect(original).toContain("test/readme-examples.test.ts");
  });

  it("run as written, top to bottom in one shell, and answer what they show", async () => {
    expect(blocks.length).toBeGreaterThan(5);
    for (const b of blocks) await writeFile(join(dir, "blocks", `${b.n}.sh`), b.code + "\n");
    await writeFile(join(dir, "session.sh"), sessionScript(blocks, dir));
    const result = await runSession(dir);
    const problems: string[] = [];
    for (const b of blocks) {
      const out = outputOf(result.output, b.n);
      if (!out) break; // an earlier block stopped the session
      const why = !out.ended
        ? result.timedOut === b.n
          ? `did not finish within ${BLOCK_TIMEOUT_MS / 1000} s`
          : `failed (the shell exited with code ${result.code})`
        : checkBlock(b, out.text);
      if (why) {
        problems.push(`${where(b)} ${why}\n----- the block -----\n${b.code}\n----- its output -----\n${out.text}`);
        break;
      }
    }
    if (problems.length === 0 && result.code !== 0) problems.push(`the shell exited with code ${result.code} after the last block:\n${result.output.slice(-4_000)}`);
    if (problems.length > 0) {
      throw new Error(`${problems.join("\n")}\n----- the server -----\n${takeOutputs().slice(-6_000)}`);
    }
    // The example endpoint got its test event, signed with the secret the example printed first.
    const hooks = blocks.find((b) => b.code.includes("/v1/webhooks/endpoints -H"))!;
    const secret = /whsec_\S+/.exec(outputOf(result.output, hooks.n)!.text)?.[0];
    const delivery = receiver!.on("/penguinmails").find((r) => JSON.parse(r.body).type === "webhook.test");
    expect(secret, "the secret the webhook example prints").toBeDefined();
    expect(delivery, "the webhook example's test event at the receiver").toBeDefined();
    expect(() => new Webhook(secret!).verify(delivery!.body, headersOf(delivery!))).not.toThrow();
  }, SESSION_TIMEOUT_MS + 20_000);
});
