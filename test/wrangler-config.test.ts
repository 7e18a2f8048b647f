import { readFileSync } from "node:fs";
import { parse } from "smol-toml";
import { describe, expect, it } from "vitest";
import { catalog } from "../shared/jobs/catalog";
import { edgeEnvSchema } from "../workers/edge/config";

type Toml = {
  main: string;
  triggers?: { crons?: string[] };
  vars?: Record<string, string>;
  env?: Record<string, { triggers?: { crons?: string[] }; vars?: Record<string, string> }>;
};
const toml = parse(readFileSync(new URL("../wrangler.toml", import.meta.url), "utf8")) as unknown as Toml;

/** The catalog is the one source of truth for cron schedules; wrangler.toml must follow it. */
const expected = ["* * * * *", ...[...catalog.values()].flatMap((t) => (t.cron ? [t.cron.schedule] : []))].sort();

describe("wrangler.toml", () => {
  it("has the catalog's cron schedules (plus the every-minute drain) at the top level and in every environment", () => {
    expect([...(toml.triggers?.crons ?? [])].sort()).toEqual(expected);
    for (const [name, env] of Object.entries(toml.env ?? {})) {
      expect([...(env.triggers?.crons ?? [])].sort(), `env.${name}`).toEqual(expected);
    }
  });

  it("only sets vars the Worker's config knows", () => {
    const known = new Set(Object.keys(edgeEnvSchema.shape));
    const all = [toml.vars ?? {}, ...Object.values(toml.env ?? {}).map((e) => e.vars ?? {})];
    for (const vars of all) for (const key of Object.keys(vars)) expect(known.has(key), key).toBe(true);
  });

  it("points at the edge entry", () => {
    expect(toml.main).toBe("workers/edge.ts");
  });
});
