import { defineConfig } from "vitest/config"

// CI adds a JSON report, from which .ci/run prints `tests: N passed, M failed`.
const report = process.env.BATON_TEST_REPORT

export default defineConfig({
  test: {
    include: ["packages/*/test/**/*.test.ts", "processors/*/test/**/*.test.ts", "runtime/test/**/*.test.ts", "bench/test/**/*.test.ts"],
    // Each test's Redis keys carry the run's prefix; the teardown fails the run if any is left.
    globalSetup: ["packages/testkit/src/RedisTeardown.ts"],
    // BATON_FC_RUNS / BATON_FC_SEED: the cases of property tests that name no numRuns (soak, replay).
    setupFiles: ["packages/testkit/src/FastCheckSetup.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: report === undefined ? ["default"] : ["default", ["json", { outputFile: report }]]
  }
})
