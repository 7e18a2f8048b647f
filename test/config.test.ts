import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../workers/node/config";

describe("configuration", () => {
  it("defaults to the embedded setup", () => {
    const c = loadConfig({});
    expect(c.DATABASE_URL).toBeUndefined();
    expect(c.REDIS_URL).toBeUndefined();
    expect(c).toMatchObject({ ROLE: "all", PORT: 3000, EMAIL_CONCURRENCY: 50, LEASE_MS: 30_000 });
    expect(c.POOLS).toEqual(["email", "default", "import"]);
  });

  it("names the variable and what it expected", () => {
    expect(() => loadConfig({ PORT: "99999" })).toThrow(/PORT: .*65535/);
    expect(() => loadConfig({ DATABASE_URL: "mysql://x" })).toThrow(/DATABASE_URL: expected a postgres/);
    expect(() => loadConfig({ POOLS: "email,bogus" })).toThrow(/POOLS: expected pool names from: email, default, import/);
    expect(() => loadConfig({ DATABASE_URL: "postgres://u:pw@db/x" })).toThrow(/API_KEY_PEPPER: required when DATABASE_URL is set/);
    expect(() => loadConfig({}, ["--frobnicate"])).toThrow(ConfigError);
    expect(() => loadConfig({ STORAGE_URL: "https://bucket.example.com" })).toThrow(/STORAGE_URL: expected s3:\/\/bucket or s3:\/\/bucket\/prefix/);
    expect(() => loadConfig({ STORAGE_URL: "s3://files/pm" })).toThrow(/STORAGE_URL: s3:\/\/files\/pm needs S3_ENDPOINT, S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY/);
    expect(() => loadConfig({ S3_ENDPOINT: "https://s3.example.com", S3_ACCESS_KEY_ID: "id" })).toThrow(/set all three or none/);
    const s3 = { STORAGE_URL: "s3://files/pm", S3_ENDPOINT: "https://s3.example.com", S3_ACCESS_KEY_ID: "id", S3_SECRET_ACCESS_KEY: "s3-secret-value" };
    expect(loadConfig(s3)).toMatchObject({ STORAGE_URL: "s3://files/pm", S3_REGION: "auto" });
    expect(() => loadConfig({ S3_ENDPOINT: s3.S3_ENDPOINT, S3_ACCESS_KEY_ID: "id", S3_SECRET_ACCESS_KEY: "s3-secret-value" })).toThrow(/STORAGE_URL: required with S3_ENDPOINT/);
    expect(() => loadConfig({ S3_ENDPOINT: s3.S3_ENDPOINT, S3_ACCESS_KEY_ID: "id", S3_SECRET_ACCESS_KEY: "s3-secret-value" })).not.toThrow(/s3-secret-value/);
  });

  it("never echoes a secret it rejects", () => {
    try {
      loadConfig({ ADMIN_API_KEY: "short-secret-value" });
      expect.unreachable();
    } catch (err) {
      expect(String(err)).toMatch(/ADMIN_API_KEY: must be at least 24 characters/);
      expect(String(err)).not.toContain("short-secret-value");
    }
  });

  it("lets flags override the environment", () => {
    expect(loadConfig({ ROLE: "all" }, ["--worker-only", "--pools=email"])).toMatchObject({ ROLE: "worker", POOLS: ["email"] });
  });

  it("stops `npm start` with exit code 2 and a readable message", () => {
    const r = spawnSync(process.execPath, ["--import", "tsx", "workers/node.ts"], {
      env: { ...process.env, PORT: "not-a-port", DATA_DIR: "/nonexistent-never-created" },
      encoding: "utf8",
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/invalid configuration:\n\s+PORT: /);
  });
});
