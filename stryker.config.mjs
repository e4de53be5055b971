// @ts-check
import { createRequire } from "node:module"

/**
 * `pnpm mutate`: mutation testing of the pure cores, outside `pnpm test` and CI (README, section
 * "Mutation testing"). In place: the tests import the workspace packages through pnpm's links to
 * the real files, which a sandbox copy would leave unmutated. Stryker restores every file after.
 * @type {import("@stryker-mutator/api/core").PartialStrykerOptions}
 */
export default {
  // By path: under pnpm, Stryker's own lookup of @stryker-mutator/* does not see the runner.
  plugins: [createRequire(import.meta.url).resolve("@stryker-mutator/vitest-runner")],
  testRunner: "vitest",
  vitest: { configFile: "vitest.stryker.config.ts", related: true },
  inPlace: true,
  mutate: [
    "packages/mediator/src/Machine.ts",
    "runtime/src/Ingress.ts:22-87",
    "packages/auth/src/Topic.ts",
    "packages/auth/src/Acl.ts",
    "processors/order-entry/src/Contract.ts",
    // The schemas of the other reference apps (order-stats takes no initiating event).
    "processors/trading/src/app.ts:18-30",
    "processors/comments/src/app.ts:17-21",
    "processors/customer/src/app.ts:20-28",
    "processors/ping/src/app.ts:7-7",
    "packages/actors/src/Policy.ts",
    "runtime/src/Cluster.ts:42-70",
    "packages/repair/src/Parking.ts"
  ],
  coverageAnalysis: "perTest",
  concurrency: 2,
  timeoutMS: 10_000,
  reporters: ["clear-text", "progress", "html", "json"],
  htmlReporter: { fileName: "reports/mutation/mutation.html" },
  jsonReporter: { fileName: "reports/mutation/mutation.json" },
  tempDirName: ".stryker-tmp"
}
