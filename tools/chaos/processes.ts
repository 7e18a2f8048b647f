/**
 * The chaos suite's processes: the real Node entry (workers/node.ts through tsx) in one role, and
 * throwaway redis-servers. Each process's output goes to its own file in the run's log directory
 * (the record to read when a scenario fails); every child is tracked and SIGKILLed when this
 * process exits, and `killAll()` ends what a failed scenario left.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createWriteStream, type WriteStream } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CONFIG_VARIABLES } from "../../workers/node/config";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const live = new Set<ChildProcess>();
process.once("exit", () => {
  for (const p of live) p.kill("SIGKILL");
});

const exitOf = (proc: ChildProcess): Promise<Exit> =>
  proc.exitCode !== null || proc.signalCode !== null
    ? Promise.resolve({ code: proc.exitCode, signal: proc.signalCode as NodeJS.Signals | null })
    : new Promise((resolve) => proc.once("exit", (code, signal) => resolve({ code, signal })));

function spawnTracked(cmd: string, args: string[], env: NodeJS.ProcessEnv, log: WriteStream): ChildProcess {
  const proc = spawn(cmd, args, { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  live.add(proc);
  proc.once("exit", () => live.delete(proc));
  proc.stdout!.pipe(log, { end: false });
  proc.stderr!.pipe(log, { end: false });
  proc.once("close", () => log.end());
  return proc;
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

export interface RuntimeProcess {
  name: string;
  pid: number;
  /** The API's base URL (ROLE api or all). */
  url?: string;
  logFile: string;
  exited: Promise<Exit>;
  readonly running: boolean;
  /** Sends the signal now (no waiting). */
  signal(signal: NodeJS.Signals): void;
  /** Sends the signal and waits for the exit (SIGKILL after timeoutMs). */
  kill(signal?: NodeJS.Signals, timeoutMs?: number): Promise<Exit>;
}

/**
 * Starts `workers/node.ts` with exactly these settings (none of the configuration variables are
 * inherited from our own environment) and waits for its JSON "ready" line.
 */
export async function startRuntime(
  name: string,
  env: Record<string, string | number | undefined>,
  logDir: string,
  readyTimeoutMs = 90_000,
): Promise<RuntimeProcess> {
  const childEnv: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !CONFIG_VARIABLES.includes(k)) childEnv[k] = v;
  for (const [k, v] of Object.entries(env)) if (v !== undefined) childEnv[k] = String(v);
  const logFile = join(logDir, `${name}.log`);
  const log = createWriteStream(logFile, { flags: "a" });
  const proc = spawnTracked(process.execPath, ["--import", "tsx", "workers/node.ts"], childEnv, log);
  const exited = exitOf(proc);
  const kill = async (signal: NodeJS.Signals = "SIGKILL", timeoutMs = 60_000): Promise<Exit> => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
    try {
      return await exited;
    } finally {
      clearTimeout(timer);
    }
  };
  const url = await new Promise<string | undefined>((resolve, reject) => {
    let buffer = "";
    const timer = setTimeout(() => finish(new Error(`${name} was not ready within ${readyTimeoutMs} ms (log: ${logFile})`)), readyTimeoutMs);
    const onData = (chunk: Buffer) => {
      buffer += chunk.toString();
      let nl: number;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (!line.startsWith("{")) continue;
        try {
          const entry = JSON.parse(line) as { msg?: string; url?: string };
          if (entry.msg === "ready") return finish(undefined, entry.url);
        } catch {
          // not a log line
        }
      }
    };
    const onExit = (code: number | null, signal: string | null) =>
      finish(new Error(`${name} exited before it was ready (code ${code}, signal ${signal}; log: ${logFile})`));
    const finish = (err?: Error, url?: string) => {
      clearTimeout(timer);
      proc.stdout!.off("data", onData);
      proc.off("exit", onExit);
      if (err) reject(err);
      else resolve(url);
    };
    proc.stdout!.on("data", onData);
    proc.once("exit", onExit);
  }).catch(async (err: unknown) => {
    await kill("SIGKILL", 5_000);
    throw err;
  });
  return {
    name,
    pid: proc.pid!,
    url,
    logFile,
    exited,
    get running() {
      return proc.exitCode === null && proc.signalCode === null;
    },
    signal: (s) => void proc.kill(s),
    kill,
  };
}

export interface RedisServer {
  port: number;
  url: string;
  readonly running: boolean;
  /** SIGKILL: no goodbye to clients, as in a crash. */
  stop(): Promise<void>;
  /** Starts it again on the same port, empty (nothing is persisted). */
  start(): Promise<void>;
}

async function spawnRedis(port: number, logDir: string): Promise<ChildProcess> {
  const log = createWriteStream(join(logDir, `redis-${port}.log`), { flags: "a" });
  const proc = spawnTracked("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], process.env, log);
  let out = "";
  proc.stdout!.on("data", (c: Buffer) => (out += c.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-server did not start on ${port}: ${out}`)), 10_000);
    const check = () => {
      if (!out.includes("Ready to accept connections")) return;
      clearTimeout(timer);
      proc.stdout!.off("data", check);
      resolve();
    };
    proc.stdout!.on("data", check);
    proc.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited (${code}): ${out}`));
    });
  }).catch(async (err: unknown) => {
    proc.kill("SIGKILL");
    await exitOf(proc);
    throw err;
  });
  return proc;
}

export async function startRedisServer(logDir: string): Promise<RedisServer> {
  let port = 0;
  let proc: ChildProcess | undefined;
  for (let tries = 0; !proc; tries++) {
    port = await freePort();
    try {
      proc = await spawnRedis(port, logDir);
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
      if (!proc || !server.running) return;
      const exited = exitOf(proc);
      proc.kill("SIGKILL");
      await exited;
    },
    async start() {
      if (server.running) return;
      proc = await spawnRedis(port, logDir);
    },
  };
  return server;
}

/** SIGKILLs every process started here that still runs. */
export async function killAll(): Promise<void> {
  await Promise.all(
    [...live].map((p) => {
      const exited = exitOf(p);
      p.kill("SIGKILL");
      return exited;
    }),
  );
}
