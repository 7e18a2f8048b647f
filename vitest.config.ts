import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Chromium and promtool, installed from Debian's packages when missing (test/setup/tools.ts).
    globalSetup: ["test/setup/tools.ts"],
    // Each test file gets its own database and Redis key prefix, so files run in parallel.
    pool: "forks",
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    testTimeout: 120_000,
    hookTimeout: 120_000,
    reporters: process.env.CI ? ["default"] : ["default"],
  },
});
