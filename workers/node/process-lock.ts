/**
 * One process at a time on a directory: the embedded database (PGlite in DATA_DIR) is a
 * single-process Postgres, and a second process opening the same files sees none of the
 * first one's writes and can corrupt them (a key made by `npm run keys` while `npm start` ran
 * was answered 401; once the directory would not open again).
 *
 * The lock is the kernel's: flock(2) on `<dir>/penguinmails.lock`, taken through util-linux's
 * (or busybox's) `flock` on a descriptor this process keeps open. flock locks belong to the
 * open file description, so the lock lasts exactly as long as this process holds the file
 * open: it ends with the process however it ends (exit, crash, SIGKILL, OOM), and there is no
 * stale lock to detect. The holder's pid and command are written into the file for the
 * refusal message only.
 *
 * Where there is no `flock` command (macOS) the file itself is the lock: created with O_EXCL
 * (complete, through a hard link of a written temp file), stale when its pid no longer runs
 * (or, on Linux, runs but started later: a reused pid). That is weaker (a takeover of a stale
 * file by two processes at the same instant can race); the kernel lock is used wherever it exists.
 */
import { spawnSync } from "node:child_process";
import { closeSync, ftruncateSync, linkSync, mkdirSync, openSync, readFileSync, unlinkSync, writeFileSync, writeSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";

export const LOCK_FILE = "penguinmails.lock";

/** Who holds a directory, as it wrote itself into the lock file. */
export interface LockHolder {
  pid: number;
  host: string;
  command: string;
  since: string;
  /** Linux: the kernel's start time of the process (clock ticks since boot) and the boot id, to tell a reused pid. */
  start?: string;
  boot?: string;
}

/** Another process has the directory open. */
export class DirectoryInUseError extends Error {
  override name = "DirectoryInUseError";
  constructor(
    readonly dir: string,
    readonly holder: LockHolder | undefined,
  ) {
    super(
      holder
        ? `${dir} is in use by process ${holder.pid}${holder.host !== hostname() ? ` on ${holder.host}` : ""} (${holder.command}, since ${holder.since})`
        : `${dir} is in use by another process`,
    );
  }
}

export interface DirectoryLock {
  readonly path: string;
  /** Lets the next process in. Idempotent. */
  release(): void;
}

const readText = (path: string): string | undefined => {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
};

/** Linux only: field 22 of /proc/<pid>/stat (start time in ticks since boot). */
function startTimeOf(pid: number | "self"): string | undefined {
  const stat = readText(`/proc/${pid}/stat`);
  // The command (field 2) is in parentheses and may itself hold spaces and parentheses.
  const rest = stat?.slice(stat.lastIndexOf(")") + 2).split(" ");
  return rest?.[19];
}

function me(): LockHolder {
  const command = ["node", ...process.argv.slice(1).map((a) => a.replace(/^.*\/node_modules\//, ""))].join(" ");
  return {
    pid: process.pid,
    host: hostname(),
    command: command.length > 160 ? `${command.slice(0, 157)}...` : command,
    since: new Date().toISOString(),
    start: startTimeOf("self"),
    boot: readText("/proc/sys/kernel/random/boot_id")?.trim(),
  };
}

function parseHolder(text: string | undefined): LockHolder | undefined {
  try {
    const value = JSON.parse(text ?? "") as LockHolder;
    return Number.isInteger(value.pid) && value.pid > 0 ? value : undefined;
  } catch {
    return undefined;
  }
}

/** Whether the process that wrote `holder` still runs (fallback mode only). */
function stillRuns(holder: LockHolder): boolean {
  if (holder.host !== hostname()) return true; // cannot tell from here: assume it does
  try {
    process.kill(holder.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EPERM") return false; // ESRCH: gone
  }
  const boot = readText("/proc/sys/kernel/random/boot_id")?.trim();
  if (holder.boot && boot && holder.boot !== boot) return false;
  const start = startTimeOf(holder.pid);
  return !(holder.start && start && holder.start !== start);
}

/** flock(2) on fd through the `flock` command: "locked", "held" by another, or "unavailable" (no command, or a filesystem without locks). */
function kernelLock(fd: number): "locked" | "held" | "unavailable" {
  const r = spawnSync("flock", ["-n", "-x", "3"], { stdio: ["ignore", "ignore", "ignore", fd], timeout: 10_000 });
  if (r.error) return "unavailable";
  if (r.status === 0) return "locked";
  return r.status === 1 ? "held" : "unavailable";
}

/**
 * Takes `dir` for this process, or throws DirectoryInUseError naming the process that has it.
 * Creates the directory when missing.
 */
export function lockDirectory(dir: string): DirectoryLock {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, LOCK_FILE);
  const holder = me();

  // libuv opens with O_CLOEXEC: children this process starts later do not inherit (and hold) it.
  const fd = openSync(path, "a+", 0o600);
  const state = kernelLock(fd);
  if (state === "locked") {
    // A process on the pid-file fallback (below) takes no flock: its file says it holds the directory.
    const previous = parseHolder(readText(path));
    if (previous && previous.pid !== process.pid && stillRuns(previous)) {
      closeSync(fd);
      throw new DirectoryInUseError(dir, previous);
    }
    ftruncateSync(fd, 0);
    writeSync(fd, `${JSON.stringify(holder)}\n`);
    let released = false;
    return {
      path,
      release() {
        if (released) return;
        released = true;
        // Emptied first, so nobody reads a pid that no longer holds it; closing ends the lock.
        try {
          ftruncateSync(fd, 0);
        } finally {
          closeSync(fd);
        }
      },
    };
  }
  closeSync(fd);
  if (state === "held") throw new DirectoryInUseError(dir, parseHolder(readText(path)));
  return lockWithPidFile(dir, path, holder);
}

function lockWithPidFile(dir: string, path: string, holder: LockHolder): DirectoryLock {
  const temp = `${path}.${process.pid}.tmp`;
  writeFileSync(temp, `${JSON.stringify(holder)}\n`, { mode: 0o600 });
  try {
    for (let tries = 0; ; tries++) {
      try {
        linkSync(temp, path); // fails with EEXIST when the file is there: O_EXCL, with the content already written
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST" || tries >= 5) throw err;
      }
      const current = parseHolder(readText(path));
      // An empty file is one a flock holder released (or a file from another kind of lock): not held.
      if (current && stillRuns(current)) throw new DirectoryInUseError(dir, current);
      try {
        unlinkSync(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      }
    }
  } finally {
    unlinkSync(temp);
  }
  let released = false;
  return {
    path,
    release() {
      if (released) return;
      released = true;
      if (parseHolder(readText(path))?.pid === holder.pid) unlinkSync(path);
    },
  };
}
