/**
 * vitest globalSetup: the programs some tests drive, brought in when missing, so `npm test`
 * passes on a fresh machine by itself. The dashboard's browser test drives Debian's Chromium
 * (/usr/bin/chromium, through playwright-core, which downloads no browser: Playwright's own
 * builds cannot be fetched here) and the metrics tests check /metrics with promtool (Debian's
 * `prometheus` package; no npm package ships it). Both come from apt: as root, or through
 * passwordless sudo. Where neither works the run stops at once, saying what to install.
 *
 * Skipped when the run names test files and none of them needs these programs
 * (`npx vitest run test/api.test.ts` on a laptop without Chromium), and with PM_TEST_TOOLS=skip.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";

interface Tool {
  /** Where the tests look for it. */
  paths: string[];
  /** The Debian package that ships it. */
  pkg: string;
  /** Test files that need it (vitest file filters match by substring). */
  neededBy: string[];
}

const TOOLS: Tool[] = [
  { paths: ["/usr/bin/chromium"], pkg: "chromium", neededBy: ["test/dashboard.browser.test.ts", "test/dashboard-scaling.browser.test.ts"] },
  { paths: ["/usr/bin/promtool", "/usr/local/bin/promtool"], pkg: "prometheus", neededBy: ["test/operations.test.ts", "test/metrics.test.ts"] },
];

/** The file filters of this vitest run (its positional arguments after `run`), if any. */
function fileFilters(argv: readonly string[]): string[] {
  const args = argv.slice(2).filter((a) => !a.startsWith("-"));
  return args.filter((a) => !["run", "watch", "dev", "related"].includes(a));
}

const needed = (tool: Tool, filters: string[]): boolean =>
  filters.length === 0 || tool.neededBy.some((file) => filters.some((f) => file.includes(f.replace(/^\.\//, ""))));

function runs(cmd: string, args: string[]): boolean {
  return spawnSync(cmd, args, { stdio: "ignore" }).status === 0;
}

/** How to run apt-get here: directly as root, through `sudo -n`, or not at all (with why). */
function aptRunner(): { prefix: string[] } | { why: string } {
  if (!runs("sh", ["-c", "command -v apt-get"])) return { why: "there is no apt-get on this machine (not Debian or Ubuntu)" };
  if (process.getuid?.() === 0) return { prefix: [] };
  if (runs("sudo", ["-n", "true"])) return { prefix: ["sudo", "-n"] };
  return { why: "this user is not root and has no passwordless sudo" };
}

function apt(prefix: string[], args: string[]): void {
  const [cmd, ...rest] = [...prefix, "apt-get", ...args];
  execFileSync(cmd!, rest, {
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    timeout: 20 * 60_000,
  });
}

export default function setup(): void {
  if (process.env.PM_TEST_TOOLS === "skip") return;
  const filters = fileFilters(process.argv);
  const missing = TOOLS.filter((t) => needed(t, filters) && !t.paths.some((p) => existsSync(p)));
  if (missing.length === 0) return;

  const pkgs = missing.map((t) => t.pkg);
  const runner = aptRunner();
  if ("why" in runner) {
    throw new Error(
      `test setup: ${missing.map((t) => `${t.paths[0]} (${t.neededBy.join(", ")})`).join(" and ")} missing, and ${runner.why}.\n` +
        `Install them, e.g. \`sudo apt-get install --no-install-recommends ${pkgs.join(" ")}\` (Debian's packages), then run the tests again; ` +
        "or run the other test files alone (npx vitest run test/<file>.test.ts), or set PM_TEST_TOOLS=skip to run without them.",
    );
  }
  process.stderr.write(`test setup: installing ${pkgs.join(" ")} from Debian's packages (needed by ${missing.flatMap((t) => t.neededBy).join(", ")})\n`);
  // Another run installing at the same time holds dpkg's lock: wait for it rather than fail.
  const lock = ["-o", "DPkg::Lock::Timeout=600"];
  apt(runner.prefix, ["-qq", ...lock, "update"]);
  apt(runner.prefix, ["-y", "-qq", ...lock, "--no-install-recommends", "install", ...pkgs]);
  const still = missing.filter((t) => !t.paths.some((p) => existsSync(p)));
  if (still.length > 0) throw new Error(`test setup: apt-get installed ${pkgs.join(" ")}, yet ${still.map((t) => t.paths[0]).join(" and ")} is still missing`);
}
