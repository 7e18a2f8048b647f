import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

/** shared/ and the handlers run on Cloudflare's edge too: Web-standard APIs only. */
const ROOTS = ["shared", "workers/handlers", "schema"];
const FORBIDDEN = [
  { pattern: /from\s+["']node:/, what: "a node: import" },
  { pattern: /require\(\s*["']node:/, what: "a node: require" },
  { pattern: /\bprocess\.env\b/, what: "process.env (read config in the runtime's loader)" },
  { pattern: /from\s+["'](fs|path|os|crypto|child_process|net|http)["']/, what: "a Node built-in" },
  { pattern: /from\s+["'](pg|ioredis|@electric-sql\/pglite|pino)["']/, what: "a Node-only driver (use the ports)" },
  { pattern: /\bconsole\.(log|warn|error|info|debug)\(/, what: "console (take a Logger)" },
];

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return files(path);
    return /\.tsx?$/.test(name) && !name.endsWith(".test.ts") ? [path] : [];
  });
}

describe("the core is runtime-agnostic", () => {
  it("has no Node-only imports, process.env or console under shared/, workers/handlers/ and schema/", () => {
    const offences: string[] = [];
    for (const root of ROOTS) {
      for (const file of files(root)) {
        const text = readFileSync(file, "utf8");
        for (const { pattern, what } of FORBIDDEN) if (pattern.test(text)) offences.push(`${file}: ${what}`);
      }
    }
    expect(offences).toEqual([]);
  });

  it("finds an offence when there is one (the check itself works)", () => {
    expect(FORBIDDEN.some(({ pattern }) => pattern.test('import { readFileSync } from "node:fs";'))).toBe(true);
    expect(FORBIDDEN.some(({ pattern }) => pattern.test("const url = process.env.DATABASE_URL;"))).toBe(true);
  });
});
