/**
 * `node bench/src/promoted.ts <rate> <count> [<top>] [<tree>]`: what the accepts (tail.ts's `accept`:
 * bare orders published at QoS 1 at `rate` per second) leave for the old space, by where it was
 * allocated (PROMOTED_KIND=reject: orders that fail their schema, no flow). V8's sampling heap profiler (`heapSampling.mjs`, preloaded, with BATON_HEAP_PROMOTED=1)
 * keeps the samples of objects that no scavenge collected: those a scavenge promoted (whether a
 * mark-compact collected them later or not) and the few still young when it stops (300 ms after the
 * last PUBACK). Prints the KB per accept, by the allocating frame with its callers (`PROMOTED_DEPTH`,
 * 3; PROMOTED_ALL=1: every allocation, garbage included, to compare with; BATON_HEAP_LIVE=1: only what a
 * full collection at the end still finds): the structures that keep what each accept adds past a scavenge (a ring, a recent-list, a
 * timer's closure) are found by where their entries are made.
 */
import { copyFileSync, readFileSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import mqtt from "mqtt"
import { Process } from "@baton/testkit"
import { noDelay, counter, sleep, within } from "./lib.ts"
import { paced } from "./pacing.ts"
import { order, placeOrders } from "./scenarios/orders.ts"

interface Node {
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }
  readonly selfSize: number
  readonly children: ReadonlyArray<Node>
}
const [rateArg = "200", countArg = "2000", topArg = "30", treeArg = "."] = process.argv.slice(2)
const [rate, count, tree] = [Number(rateArg), Number(countArg), resolve(treeArg)]
const depth = Number(process.env.PROMOTED_DEPTH ?? 3)
const dataDir = mkdtempSync(join(tmpdir(), "baton-promoted-"))
const out = join(dataDir, "heap.json")
const r = await Process.startProcess(
  dataDir,
  { BATON_PUBLISH_RATE: "1000000", NODE_OPTIONS: `--import ${fileURLToPath(new URL("./heapSampling.mjs", import.meta.url))}`, BATON_HEAP_OUT: out, BATON_HEAP_PROMOTED: process.env.PROMOTED_ALL === "1" ? "0" : "1", BATON_HEAP_LIVE: process.env.BATON_HEAP_LIVE ?? "0" },
  [join(tree, "runtime/src/main.ts")]
)
try {
  await placeOrders(r.mqttPort!, 200, "events/order-shipped")
  const client = noDelay(await mqtt.connectAsync(`mqtt://127.0.0.1:${r.mqttPort}`, { protocolVersion: 4, reconnectPeriod: 0 }))
  const warm = counter(200)
  await paced(rate, 200, (i) => void client.publishAsync("initiate/place-order", JSON.stringify(order(i)), { qos: 1 }).then(() => warm.hit()))
  await within(warm.done, 60_000, "warm-up")
  await sleep(500)
  r.child.kill("SIGUSR2")
  await sleep(100)
  const done = counter(count)
  // PROMOTED_KIND=reject: orders that fail their schema (the ingress rejects them: no flow), to bisect.
  const body = (i: number) => (process.env.PROMOTED_KIND === "reject" ? { nope: i } : order(1000 + i))
  await paced(rate, count, (i) => void client.publishAsync("initiate/place-order", JSON.stringify(body(i)), { qos: 1 }).then(() => done.hit()))
  await within(done.done, 120_000, "all done")
  await sleep(300)
  r.child.kill("SIGUSR2")
  while (!r.output().includes("heap profile written")) await sleep(50)
  await client.endAsync()
} finally {
  await r.kill("SIGKILL")
}
const self = new Map<string, number>()
let total = 0
const frame = (f: Node["callFrame"]) => `${f.functionName || "(anonymous)"} ${f.url.replace(/^file:\/\//, "").replace(tree + "/", "").replace(/.*node_modules\/(\.pnpm\/[^/]+\/node_modules\/)?/, "")}:${f.lineNumber + 1}`
const walk = (node: Node, stack: ReadonlyArray<string>) => {
  const here = [frame(node.callFrame), ...stack]
  const at = here.slice(0, depth).join(" < ")
  self.set(at, (self.get(at) ?? 0) + node.selfSize)
  total += node.selfSize
  for (const c of node.children) walk(c, here)
}
walk((JSON.parse(readFileSync(out, "utf8")) as { head: Node }).head, [])
// PROMOTED_KEEP=<file>: the sampled profile kept there (its call tree).
if (process.env.PROMOTED_KEEP !== undefined) copyFileSync(out, process.env.PROMOTED_KEEP)
rmSync(dataDir, { recursive: true, force: true })
console.log(`${tree}: ${(total / count / 1024).toFixed(2)} KB per accept not collected by a scavenge (${(total / 2 ** 20).toFixed(1)} MB over ${count} accepts at ${rate}/s)`)
for (const [at, bytes] of [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(topArg))) console.log(`${(bytes / count / 1024).toFixed(3).padStart(7)} KB  ${at}`)
process.exit(0)
