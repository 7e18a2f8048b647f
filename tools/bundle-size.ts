// npm run size: builds the Worker as `wrangler deploy` would and reports its size, raw and gzip.
// Cloudflare's limit is 3 MiB gzip on the free plan (10 MiB paid); exits 1 above 3 MiB.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

const LIMIT = 3 * 1024 * 1024;
const outdir = mkdtempSync(join("dist", "size-"));
try {
  execFileSync("npx", ["wrangler", "deploy", "--dry-run", "--outdir", outdir], {
    stdio: "pipe",
    env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
  });
  const bundle = readFileSync(join(outdir, "edge.js"));
  const gzip = gzipSync(bundle, { level: 9 }).length;
  const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
  process.stdout.write(`edge bundle: ${kib(bundle.length)} raw, ${kib(gzip)} gzip (limit ${kib(LIMIT)} gzip)\n`);
  if (gzip > LIMIT) process.exit(1);
} finally {
  rmSync(outdir, { recursive: true, force: true });
}
