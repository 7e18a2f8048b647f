/**
 * Real processes for the crash and fault tests: the worker fixture (test/fixtures/worker-process.ts,
 * the Node entry with recording handlers) and throwaway redis-servers. Everything started here is
 * tracked, so `cleanupProcesses()` in afterEach/afterAll kills whatever a failed test left behind
 * (and an exiting test process kills its children too).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { CONFIG_VARIABLES } from "../../workers/node/config";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const FIXTURE = "test/fixtures/worker-process.ts";
/** Keep the tail of each process's output for failure reports. */
const MAX_OUTPUT = 256 * 1024;

/** Settings of workers/node/config.ts: never inherited from the test's own environment. */
const CONFIG_KEYS = CONFIG_VARIABLES;

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

interface Tracked {
  name: string;
  proc: ChildProcess;
  output: () => string;
}

const live = new Set<Tracked>();
const everStarted: Tracked[] = [];

process.once("exit", () => {
  for (const t of live) t.proc.kill("SIGKILL");
});

function track(name: string, proc: ChildProcess): Tracked {
  let out = "";
  const append = (stream: string) => (chunk: Buffer) => {
    out += stream === "err" ? chunk.toString().replace(/^/gm, "[stderr] ") : chunk.toString();
    if (out.length > MAX_OUTPUT * 2) out = out.slice(-MAX_OUTPUT);
  };
  proc.stdout?.on("data", append("out"));
  proc.stderr?.on("data", append("err"));
  const t: Tracked = { name, proc, output: () => out };
  live.add(t);
  everStarted.push(t);
  proc.once("exit", () => live.delete(t));
  return t;
}

const exitOf = (proc: ChildProcess): Promise<Exit> =>
  proc.exitCode !== null || proc.signalCode !== null
    ? Promise.resolve({ code: proc.exitCode, signal: proc.signalCode as NodeJS.Signals | null })
    : new Promise((resolve) => proc.once("exit", (code, signal) => resolve({ code, signal })));

async function killAndWait(proc: ChildProcess, signal: NodeJS.Signals, timeoutMs: number): Promise<Exit> {
  const exited = exitOf(proc);
  if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  try {
    return await exited;
  } finally {
    clearTimeout(timer);
  }
}

/** A port nobody listens on right now (bound once on port 0, then released). */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  server.close();
  await once(server, "close");
  if (!address || typeof address === "string") throw new Error("no port");
  return address.port;
}

// -------------------------------------------------------------------------------------------
// Worker processes.
// -------------------------------------------------------------------------------------------

export interface WorkerProcess {
  name: string;
  pid: number;
  /** The API's base URL when the process serves it (ROLE all or api). */
  url?: string;
  output(): string;
  /** Resolves when the process exits, however that happens. */
  exited: Promise<Exit>;
  /** Sends the signal and waits for the exit (SIGKILL after timeoutMs if it hangs). */
  kill(signal?: NodeJS.Signals, timeoutMs?: number): Promise<Exit>;
}

/**
 * Spawns the fixture (`node --import tsx test/fixtures/worker-process.ts`), or another entry such
 * as the real `workers/node.ts`, with these settings (DATABASE_URL, REDIS_URL, ROLE, ...) and
 * waits for its JSON "ready" line.
 */
export async function startWorker(
  name: string,
  env: Record<string, string | number | undefined>,
  opts: { readyTimeoutMs?: number; script?: string } = {},
): Promise<WorkerProcess> {
  const childEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !CONFIG_KEYS.includes(k)) childEnv[k] = v;
  for (const [k, v] of Object.entries(env)) if (v !== undefined) childEnv[k] = String(v);
  const proc = spawn(process.execPath, ["--import", "tsx", opts.script ?? FIXTURE], { cwd: ROOT, env: childEnv, stdio: ["ignore", "pipe", "pipe"] });
  const t = track(name, proc);
  const exited = exitOf(proc);
  const ready = await new Promise<{ url?: string }>((resolve, reject) => {
    let buffer = "";
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`${name} was not ready within ${opts.readyTimeoutMs ?? 60_000} ms; output:\n${t.output()}`));
    }, opts.readyTimeoutMs ?? 60_000);
    const onData = (chunk: Buffer) => {
      buffer += chunk.toString();
      let nl: number;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (!line.startsWith("{")) continue;
        try {
          const entry = JSON.parse(line) as { msg?: string; url?: string };
          if (entry.msg === "ready") {
            cleanup();
            resolve({ url: entry.url });
            return;
          }
        } catch {
          // not a log line
        }
      }
    };
    const onExit = (code: number | null, signal: string | null) => {
      cleanup();
      reject(new Error(`${name} exited before it was ready (code ${code}, signal ${signal}); output:\n${t.output()}`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      proc.stdout!.off("data", onData);
      proc.off("exit", onExit);
    };
    proc.stdout!.on("data", onData);
    proc.once("exit", onExit);
  }).catch(async (err: unknown) => {
    await killAndWait(proc, "SIGKILL", 5_000);
    throw err;
  });
  return {
    name,
    pid: proc.pid!,
    url: ready.url,
    output: t.output,
    exited,
    kill: (signal = "SIGKILL", timeoutMs = 60_000) => killAndWait(proc, signal, timeoutMs),
  };
}

// -------------------------------------------------------------------------------------------
// Throwaway redis-servers.
// -------------------------------------------------------------------------------------------

export interface RedisServer {
  port: number;
  url: string;
  /** Whether the server is running now. */
  readonly running: boolean;
  /** Kills the server (SIGKILL: no goodbye to clients, as in a crash). */
  stop(): Promise<void>;
  /** Starts it again on the same port, empty (it keeps nothing). */
  start(): Promise<void>;
}

async function spawnRedis(port: number): Promise<ChildProcess> {
  const proc = spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
  );
  const t = track(`redis-server:${port}`, proc);
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${t.output()}`)), 10_000);
      const check = () => {
        if (t.output().includes("Ready to accept connections")) {
          clearTimeout(timer);
          proc.stdout!.off("data", check);
          resolve();
        }
      };
      proc.stdout!.on("data", check);
      check();
      proc.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited (${code}): ${t.output()}`));
      });
    });
  } catch (err) {
    await killAndWait(proc, "SIGKILL", 5_000);
    throw err;
  }
  return proc;
}

/** Starts a redis-server of its own on a free port, with nothing persisted. */
export async function startRedisServer(): Promise<RedisServer> {
  let port = 0;
  let proc: ChildProcess | undefined;
  for (let tries = 0; !proc; tries++) {
    port = await freePort();
    try {
      proc = await spawnRedis(port);
    } catch (err) {
      if (tries >= 3) throw err; // the port was taken between the probe and the bind
    }
  }
  const server: RedisServer = {
    port,
    url: `redis://127.0.0.1:${port}`,
    get running() {
      return proc !== undefined && proc.exitCode === null && proc.signalCode === null;
    },
    async stop() {
      if (proc) await killAndWait(proc, "SIGKILL", 5_000);
    },
    async start() {
      if (server.running) return;
      proc = await spawnRedis(port);
    },
  };
  return server;
}

// -------------------------------------------------------------------------------------------
// Cleanup and reports.
// -------------------------------------------------------------------------------------------

/** SIGKILLs every process started here that is still running, and waits for them to exit. */
export async function cleanupProcesses(): Promise<void> {
  await Promise.all([...live].map((t) => killAndWait(t.proc, "SIGKILL", 5_000)));
}

/** The output of every process started since the last call, for a failed test's report. */
export function takeOutputs(): string {
  const parts = everStarted.map((t) => `----- ${t.name} (pid ${t.proc.pid}) -----\n${t.output().slice(-20_000)}`);
  everStarted.length = 0;
  return parts.join("\n");
}
