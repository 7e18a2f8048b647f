/**
 * A throwaway Postgres cluster for the chaos suite: its own `initdb` data directory and port, so
 * it can be restarted (`pg_ctl restart -m fast|immediate`) without touching the shared server
 * the rest of the test suite uses.
 *
 * initdb and postgres refuse to run as root. When this process is root (CI, this machine), the
 * cluster runs as an unprivileged system user through `runuser`: `postgres` when it exists (the
 * Debian package creates it), else `pmchaos`, created with `useradd --system`. Not root: as the
 * current user.
 *
 * pg_ctl daemonizes the server, so it is not our child: every cluster started here is stopped
 * (`-m immediate`) when this process exits, and a cluster left behind by a run that was killed
 * outright is stopped by the next run (each data directory records the pid of the run that owns
 * it).
 */
import { execFile, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, chmodSync, appendFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";

const run = promisify(execFile);

/** Where clusters live: one directory per cluster under it. */
export const CHAOS_BASE = join(tmpdir(), "pm-chaos");

export interface PostgresCluster {
  port: number;
  /** The superuser URL of database `name` (defaults to postgres). */
  url(name?: string): string;
  /** The data directory and the server log. */
  dir: string;
  logFile: string;
  /** Whether the server answers now. */
  ready(): Promise<boolean>;
  /** `pg_ctl restart -m <mode> -w`: resolves once the new server accepts connections. */
  restart(mode: "fast" | "immediate"): Promise<void>;
  /** Terminates every backend of database `name` except those whose application_name is `spare`. */
  terminateBackends(name: string, spare: string): Promise<number>;
  createDatabase(name: string): Promise<string>;
  dropDatabase(name: string): Promise<void>;
  /** Stops the server (immediate: nothing to keep) and removes the data directory. */
  destroy(): Promise<void>;
}

function findBinaries(): string {
  const candidates = [process.env.PG_BINDIR, "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin"];
  for (const dir of candidates) if (dir && existsSync(join(dir, "initdb")) && existsSync(join(dir, "pg_ctl"))) return dir;
  try {
    const dir = execFileSync("pg_config", ["--bindir"], { encoding: "utf8" }).trim();
    if (existsSync(join(dir, "initdb"))) return dir;
  } catch {
    // no pg_config on the PATH
  }
  throw new Error("no Postgres binaries (initdb, pg_ctl) found: set PG_BINDIR, e.g. /usr/lib/postgresql/15/bin");
}

/** Why a cluster cannot be started here, or undefined when it can (for a test's skip message). */
export function clusterUnavailable(): string | undefined {
  try {
    findBinaries();
  } catch (err) {
    return (err as Error).message;
  }
  if (isRoot()) {
    try {
      execFileSync("runuser", ["--help"], { stdio: "ignore" });
    } catch {
      return "running as root without runuser (util-linux): initdb cannot run as an unprivileged user";
    }
  }
  return undefined;
}

const isRoot = (): boolean => typeof process.getuid === "function" && process.getuid() === 0;

function userExists(name: string): boolean {
  try {
    execFileSync("id", ["-u", name], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** The user the cluster runs as when we are root, created when missing. Undefined: run as ourselves. */
function clusterUser(): string | undefined {
  if (!isRoot()) return undefined;
  for (const name of ["postgres", "pmchaos"]) if (userExists(name)) return name;
  execFileSync("useradd", ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "pmchaos"], { stdio: "pipe" });
  return "pmchaos";
}

/** Runs a Postgres binary as the cluster's user. */
function asUser(user: string | undefined, bin: string, args: string[]): [string, string[]] {
  return user ? ["runuser", ["-u", user, "--", bin, ...args]] : [bin, args];
}

const live = new Map<string, { stop: () => void }>();
process.once("exit", () => {
  for (const c of live.values()) c.stop();
});

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Stops and removes clusters whose owning run is gone (a run killed with SIGKILL cannot clean up
 * after itself). Only directories under CHAOS_BASE with our owner file are touched.
 */
export function reapStaleClusters(): void {
  if (!existsSync(CHAOS_BASE)) return;
  const bindir = findBinaries();
  for (const entry of readdirSync(CHAOS_BASE)) {
    const dir = join(CHAOS_BASE, entry);
    const ownerFile = join(dir, "owner.pid");
    if (!existsSync(ownerFile)) continue;
    const owner = Number(readFileSync(ownerFile, "utf8"));
    if (owner && pidAlive(owner)) continue;
    const data = join(dir, "data");
    if (existsSync(join(data, "postmaster.pid"))) {
      const user = clusterUser();
      const [cmd, args] = asUser(user, join(bindir, "pg_ctl"), ["stop", "-D", data, "-m", "immediate", "-w"]);
      try {
        execFileSync(cmd, args, { stdio: "ignore", timeout: 30_000 });
      } catch {
        // already stopped
      }
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `settings`: postgresql.conf lines after the defaults below, which they override (a later line wins). */
export async function startPostgresCluster(opts: { port: number; label?: string; settings?: string[] }): Promise<PostgresCluster> {
  const bindir = findBinaries();
  const user = clusterUser();
  mkdirSync(CHAOS_BASE, { recursive: true });
  chmodSync(CHAOS_BASE, 0o1777);
  const dir = join(CHAOS_BASE, `${opts.label ?? "pg"}-${process.pid}-${opts.port}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "owner.pid"), String(process.pid));
  const data = join(dir, "data");
  const logFile = join(dir, "postgres.log");
  if (user) {
    // The cluster's user must own its directory (initdb insists) and write its log.
    chmodSync(dir, 0o777);
    execFileSync("chown", [user, dir]);
  }
  const exec = async (bin: string, args: string[], timeoutMs = 120_000) => {
    const [cmd, argv] = asUser(user, join(bindir, bin), args);
    return run(cmd, argv, { timeout: timeoutMs, cwd: dir });
  };

  await exec("initdb", ["-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"]);
  // Loopback only, on our port, the socket in our own directory. fsync off: the machine does not
  // crash in these scenarios, the server does, and the OS keeps what it was given. Commits stay
  // synchronous (the default), as in production: an immediate shutdown loses no commit.
  appendFileSync(
    join(data, "postgresql.conf"),
    [
      "",
      `port = ${opts.port}`,
      "listen_addresses = '127.0.0.1'",
      `unix_socket_directories = '${dir}'`,
      "max_connections = 300",
      "fsync = off",
      "full_page_writes = off",
      "shared_buffers = 128MB",
      "log_min_messages = warning",
      "log_connections = off",
      ...(opts.settings ?? []),
      "",
    ].join("\n"),
  );
  const stopSync = () => {
    const [cmd, args] = asUser(user, join(bindir, "pg_ctl"), ["stop", "-D", data, "-m", "immediate", "-w"]);
    try {
      execFileSync(cmd, args, { stdio: "ignore", timeout: 30_000 });
    } catch {
      // not running
    }
  };
  live.set(dir, { stop: stopSync });
  try {
    await exec("pg_ctl", ["start", "-D", data, "-l", logFile, "-w", "-t", "60"]);
  } catch (err) {
    stopSync();
    live.delete(dir);
    const log = existsSync(logFile) ? readFileSync(logFile, "utf8").slice(-4_000) : "";
    throw new Error(`the throwaway Postgres cluster did not start on port ${opts.port}: ${(err as Error).message}\n${log}`);
  }

  const url = (name = "postgres") => `postgres://postgres@127.0.0.1:${opts.port}/${name}`;
  const admin = async <T>(fn: (c: pg.Client) => Promise<T>): Promise<T> => {
    const c = new pg.Client({ connectionString: url(), application_name: "chaos-admin" });
    c.on("error", () => {});
    await c.connect();
    try {
      return await fn(c);
    } finally {
      await c.end().catch(() => {});
    }
  };

  return {
    port: opts.port,
    url,
    dir: data,
    logFile,
    async ready() {
      try {
        await admin((c) => c.query("select 1"));
        return true;
      } catch {
        return false;
      }
    },
    async restart(mode) {
      await exec("pg_ctl", ["restart", "-D", data, "-m", mode, "-l", logFile, "-w", "-t", "60"]);
    },
    async terminateBackends(name, spare) {
      const r = await admin((c) =>
        c.query<{ n: number }>(
          `select count(*) filter (where pg_terminate_backend(pid))::int as n from pg_stat_activity
           where datname = $1 and pid <> pg_backend_pid() and application_name is distinct from $2`,
          [name, spare],
        ),
      );
      return r.rows[0]?.n ?? 0;
    },
    async createDatabase(name) {
      await admin((c) => c.query(`create database "${name}"`));
      return url(name);
    },
    async dropDatabase(name) {
      await admin((c) => c.query(`drop database if exists "${name}" with (force)`));
    },
    async destroy() {
      try {
        await exec("pg_ctl", ["stop", "-D", data, "-m", "immediate", "-w", "-t", "30"]);
      } catch {
        // not running
      }
      live.delete(dir);
      rmSync(join(CHAOS_BASE, `${opts.label ?? "pg"}-${process.pid}-${opts.port}`), { recursive: true, force: true });
    },
  };
}
