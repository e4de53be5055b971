/**
 * `node bench/src/retainedSnap.ts <rate> <count> <outDir>`: what the accepts keep alive. Runs the
 * runtime (its own process, preloading `snapProbe.mjs`), warms it up, writes a heap snapshot, paces
 * `count` accepts (as tail.ts's `accept`) at `rate` per second and writes a second snapshot as soon
 * as the last PUBACK is read. `heapDiff.ts` then lists what the second holds that was allocated
 * after the first (V8's snapshot object ids grow monotonically), grouped by what retains it.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import mqtt from "mqtt"
import { Process } from "@baton/testkit"
import { noDelay, counter, sleep, within } from "./lib.ts"
import { paced } from "./pacing.ts"
import { order, placeOrders } from "./scenarios/orders.ts"

const [rate = 1000, count = 2000] = process.argv.slice(2, 4).map(Number)
const outDir = process.argv[4] ?? mkdtempSync(join(tmpdir(), "baton-snap-"))
mkdirSync(outDir, { recursive: true })
const dataDir = mkdtempSync(join(tmpdir(), "baton-retained-"))
const r = await Process.startProcess(
  dataDir,
  { BATON_PUBLISH_RATE: "1000000", NODE_OPTIONS: `--import ${fileURLToPath(new URL("./snapProbe.mjs", import.meta.url))}`, SNAP_DIR: outDir },
  [process.env.TAIL_TREE === undefined ? fileURLToPath(new URL("../../runtime/src/main.ts", import.meta.url)) : join(process.env.TAIL_TREE, "runtime/src/main.ts")]
)
const snapshot = async (i: number) => {
  r.child.kill("SIGURG")
  while (!existsSync(join(outDir, `snap-${i}.done`))) await sleep(50)
}
try {
  await placeOrders(r.mqttPort!, 200, "events/order-shipped")
  const client = noDelay(await mqtt.connectAsync(`mqtt://127.0.0.1:${r.mqttPort}`, { protocolVersion: 4, reconnectPeriod: 0 }))
  // A few accepts before the first snapshot, so that lazily made structures exist in both.
  const warm = counter(200)
  await paced(rate, 200, (i) => void client.publishAsync("initiate/place-order", JSON.stringify(order(i)), { qos: 1 }).then(() => warm.hit()))
  await within(warm.done, 60_000, "warm-up")
  await sleep(Number(process.env.SNAP_SETTLE ?? 2000))
  await snapshot(0)
  const done = counter(count)
  // SNAP_MID=1: the second snapshot half-way through, while accepts keep arriving (what is kept under load).
  const mid = process.env.SNAP_MID === "1"
  await paced(rate, count, (i) => {
    if (mid && i === Math.floor(count / 2)) r.child.kill("SIGURG")
    void client.publishAsync("initiate/place-order", JSON.stringify(order(1000 + i)), { qos: 1 }).then(() => done.hit())
  })
  await within(done.done, 120_000, "all done")
  if (mid) while (!existsSync(join(outDir, "snap-1.done"))) await sleep(50)
  else await snapshot(1)
  await client.endAsync()
} finally {
  await r.kill("SIGKILL")
  rmSync(dataDir, { recursive: true, force: true })
}
console.log(`snapshots in ${outDir}`)
process.exit(0)
