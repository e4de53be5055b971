/**
 * `node bench/src/profile.ts <tree> <orders> <outDir> [sqlite|pg]`: the order flow (burst) on one
 * runtime of `<tree>` (SQLite by default; `pg`: on a fresh PostgreSQL schema) run under `node --cpu-prof`; after a warm-up of 200 orders, `<orders>` orders; the profile
 * is written to `<outDir>` when the runtime stops. Then prints the top frames by self and inclusive
 * time (`bench/src/profileTop.ts`). With `BATON_AB_TOPOLOGY=mediator`, the mediator's order workflow
 * instead (to `workflow-completed`), as in `ab.ts`.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { freshSchema } from "@baton/testkit/postgres"
import { benchRuntimeEnv, readyRuntime } from "./lib.ts"
import { placeOrders } from "./scenarios/orders.ts"

const [treeArg = ".", countArg = "3000", outDir = "/tmp/baton-prof", engine = "sqlite"] = process.argv.slice(2)
const tree = resolve(treeArg)
const mediator = process.env.BATON_AB_TOPOLOGY === "mediator"
const doneTopic = mediator ? "events/workflow-completed" : "events/order-shipped"
const dataDir = mkdtempSync(join(tmpdir(), "baton-prof-"))
const schema = engine === "pg" ? await freshSchema() : undefined
const { child, mqtt } = await readyRuntime(tree, ["--cpu-prof", `--cpu-prof-dir=${outDir}`], benchRuntimeEnv(dataDir, { mediator, databaseUrl: schema?.url }))
await placeOrders(mqtt, 200, doneTopic)
const { perSecond } = await placeOrders(mqtt, Number(countArg), doneTopic)
console.log(`${perSecond?.toFixed(1)} orders/s under the profiler`)
await new Promise((r) => setTimeout(r, 300))
child.kill("SIGINT")
await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.on("exit", r)))
rmSync(dataDir, { recursive: true, force: true })
await schema?.drop()
process.exit(0)
