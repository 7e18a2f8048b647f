import { readFileSync } from "node:fs";
import { parse } from "smol-toml";
import { describe, expect, it } from "vitest";
import { catalog } from "../shared/jobs/catalog";
import { edgeEnvSchema } from "../workers/edge/config";

type Queues = { producers?: { binding: string; queue: string }[]; consumers?: { queue: string }[] };
type Toml = {
  name: string;
  main: string;
  triggers?: { crons?: string[] };
  vars?: Record<string, string>;
  queues?: Queues;
  env?: Record<string, { name?: string; triggers?: { crons?: string[] }; vars?: Record<string, string>; queues?: Queues }>;
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

  it("gives every environment its own Worker and wake-up queue: a bare `wrangler deploy` leaves production alone", () => {
    const production = toml.env?.production;
    expect(production?.name).toBe("penguinmails-jobs");
    const queuesOf = (q?: Queues) => [...(q?.producers ?? []).map((p) => p.queue), ...(q?.consumers ?? []).map((c) => c.queue)];
    // The top level is what `wrangler deploy` without --env deploys.
    const environments = [{ env: "(top level)", name: toml.name, queues: queuesOf(toml.queues) }];
    for (const [env, e] of Object.entries(toml.env ?? {})) environments.push({ env, name: e.name ?? `${toml.name}-${env}`, queues: queuesOf(e.queues) });
    const names = environments.map((e) => e.name);
    expect(new Set(names).size, names.join(", ")).toBe(names.length);
    expect(toml.name).not.toBe(production?.name);
    // A queue has one consumer: another environment on production's queue would take its wake-ups.
    const productionQueues = new Set(queuesOf(production?.queues));
    expect(productionQueues.size).toBeGreaterThan(0);
    for (const e of environments.filter((x) => x.env !== "production")) {
      for (const q of e.queues) expect(productionQueues.has(q), `${e.env} uses production's queue ${q}`).toBe(false);
    }
  });
});
