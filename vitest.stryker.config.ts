import { defineConfig } from "vitest/config"

// The unit tests of the pure cores, for `pnpm mutate` (stryker.config.mjs) only: no broker, no
// integration test, no Redis teardown. `pnpm test` uses vitest.config.ts. BATON_MUTATE_TESTS
// (comma-separated) narrows the run to some of them, for one module at a time.
const only = process.env.BATON_MUTATE_TESTS

export default defineConfig({
  test: {
    include: only !== undefined && only !== "" ? only.split(",") : [
      "packages/mediator/test/Machine.test.ts",
      "runtime/test/Ingress.test.ts",
      "packages/auth/test/Topic.test.ts",
      "processors/order-entry/test/logic.test.ts",
      "processors/trading/test/schema.test.ts",
      "processors/comments/test/schema.test.ts",
      "processors/customer/test/schema.test.ts",
      "processors/ping/test/schema.test.ts",
      "packages/actors/test/Policy.test.ts",
      "runtime/test/Assign.test.ts",
      "packages/repair/test/Parking.test.ts"
    ],
    testTimeout: 30_000,
    hookTimeout: 30_000
  }
})
