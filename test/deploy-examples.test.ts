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
});
