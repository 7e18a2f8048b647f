import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import { describe, expect, it } from "vitest";

const docs = (file: string) => parseAllDocuments(readFileSync(new URL(`../deploy/k8s/${file}`, import.meta.url), "utf8")).map((d) => d.toJS());

/** The Kubernetes example must keep pointing at metrics the API really publishes. */
describe("the Kubernetes example", () => {
  it("scales the email and import pools on gauges /metrics publishes", () => {
    const objects = docs("keda.yaml");
    const queries = objects.flatMap((o) => o.spec.triggers.map((t: { metadata: { query: string } }) => t.metadata.query as string));
    const metricsSource = readFileSync(new URL("../shared/api/metrics.ts", import.meta.url), "utf8");
    for (const q of queries) {
      const names = [...q.matchAll(/([a-z_]+)\{/g)].map((m) => m[1]!).filter((n) => !["by"].includes(n));
      for (const name of names) expect(metricsSource, `${name} in ${q}`).toContain(`"${name}"`);
    }
    expect(objects.map((o) => o.spec.scaleTargetRef.name).sort()).toEqual(["jobs-email-workers", "jobs-import-workers"]);
  });

  it("runs each pool in its own Deployment with a grace period longer than SHUTDOWN_GRACE_MS", () => {
    const deployments = docs("workers.yaml");
    const config = docs("config.yaml").find((d) => d.kind === "ConfigMap");
    for (const d of deployments) {
      const env = Object.fromEntries(d.spec.template.spec.containers[0].env.map((e: { name: string; value: string }) => [e.name, e.value]));
      expect(env.ROLE).toBe("worker");
      const grace = Number(env.SHUTDOWN_GRACE_MS ?? config.data.SHUTDOWN_GRACE_MS);
      expect(d.spec.template.spec.terminationGracePeriodSeconds * 1000).toBeGreaterThan(grace);
    }
    expect(deployments.map((d) => d.spec.template.spec.containers[0].env.find((e: { name: string }) => e.name === "POOLS").value).sort()).toEqual([
      "default",
      "email",
      "import",
    ]);
  });

  it("compares ratios as values and counts per replica (KEDA's metricType)", () => {
    const triggers: { metricType?: string; metadata: { query: string; threshold: string } }[] = docs("keda.yaml").flatMap((o) => o.spec.triggers);
    for (const t of triggers) {
      // A 0-1 ratio under the default AverageValue is divided among the replicas: against 0.8
      // the HPA could never want more than 2. Value compares the mean ratio itself.
      const ratio = t.metadata.query.includes("_ratio");
      expect(t.metricType, t.metadata.query).toBe(ratio ? "Value" : "AverageValue");
      if (ratio) expect(Number(t.metadata.threshold)).toBeLessThan(1);
    }
    expect(triggers.some((t) => t.metricType === "Value")).toBe(true);
  });

  it("runs the image's command, node on the built entry, in every container", () => {
    const containers = ["api.yaml", "workers.yaml"]
      .flatMap(docs)
      .filter((d) => d.kind === "Deployment")
      .flatMap((d) => d.spec.template.spec.containers);
    expect(containers.length).toBe(4);
    // No command or args: the Dockerfile's CMD, so node is PID 1 and gets the kubelet's SIGTERM.
    for (const c of containers) expect([c.name, c.command, c.args]).toEqual([c.name, undefined, undefined]);
  });
});

describe("the Dockerfile", () => {
  const dockerfile = readFileSync(new URL("../Dockerfile", import.meta.url), "utf8");
  const lines = dockerfile.split("\n").filter((l) => l && !l.startsWith("#"));

  it("builds in one stage and runs the built files in another, on a supported Node LTS", () => {
    const stages = lines.filter((l) => l.startsWith("FROM "));
    expect(stages).toHaveLength(2);
    for (const s of stages) expect(s).toMatch(/^FROM node:24-slim\b/);
    const [build, runtime] = dockerfile.split(/^FROM /m).slice(1) as [string, string];
    expect(build).toContain("RUN npm ci --no-audit --no-fund");
    expect(build).toContain("RUN npm run build");
    expect(runtime).toContain("npm ci --omit=dev");
    expect(runtime).toMatch(/COPY --from=build --chown=node:node \/app\/dist\//);
    expect(runtime).not.toMatch(/tsx|tsconfig|COPY shared|COPY workers/);
    // The node user owns /app (the embedded default writes DATA_DIR there) and runs everything.
    expect(runtime).toContain("RUN chown node:node /app");
    expect(runtime).toMatch(/^USER node$/m);
  });

  it("starts node itself on the bundle, no npm, npx or tsx in between", () => {
    const cmd = lines.filter((l) => l.startsWith("CMD ")).at(-1)!;
    const argv = JSON.parse(cmd.slice(4)) as string[];
    expect(argv[0]).toBe("node");
    expect(argv.at(-1)).toBe("dist/workers/node.js");
    expect(lines.some((l) => l.startsWith("ENTRYPOINT"))).toBe(false);
  });
});
