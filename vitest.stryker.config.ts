import { defineConfig } from "vitest/config"

// The unit tests of the pure cores, for `pnpm mutate` (stryker.config.json) only: no broker, no
// integration test, no Redis teardown. `pnpm test` uses vitest.config.ts.
export default defineConfig({
  test: {
    include: [
      "packages/mediator/test/Machine.test.ts",
      "runtime/test/Ingress.test.ts",
      "packages/auth/test/Topic.test.ts",
      "processors/order-entry/test/logic.test.ts",
      "packages/actors/test/Policy.test.ts",
      "runtime/test/Assign.test.ts",
      "packages/repair/test/Parking.test.ts"
    ],
    testTimeout: 30_000,
    hookTimeout: 30_000
  }
})
