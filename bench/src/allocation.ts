/**
 * `node bench/src/allocation.ts <tree> [<orders>] [<top>]`: the bytes the runtime of `<tree>`
 * allocates per order in the order flow (burst, SQLite), garbage included, from V8's sampling heap
 * profiler (`heapSampling.mjs`, preloaded): after a warm-up of 200 orders, `<orders>` orders
 * sampled; then the `<top>` frames that allocate most themselves (a frame inlined by the optimizer
 * counts for the function it was inlined into; run the runtime with `BATON_ALLOC_NODE_ARGS=--no-turbo-inlining`
 * to place them, at the cost of its speed; `BATON_ALLOC_KEEP=<file>` keeps the profile's call tree). Deterministic to ~1% where CPU figures are not.
 */
import { spawn } from "node:child_process"
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { benchRuntimeEnv } from "./lib.ts"
import { placeOrders } from "./scenarios/orders.ts"

interface Node {
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number; readonly columnNumber: number }
  readonly selfSize: number
  readonly children: ReadonlyArray<Node>
}

const [treeArg = ".", countArg = "2000", topArg = "25"] = process.argv.slice(2)
const tree = resolve(treeArg)
const count = Number(countArg)
const dataDir = mkdtempSync(join(tmpdir(), "baton-alloc-"))
const out = join(dataDir, "heap.json")
const extra = process.env.BATON_ALLOC_NODE_ARGS?.split(" ").filter((a) => a !== "") ?? []
const child = spawn(process.execPath, [...extra, "--import", fileURLToPath(new URL("heapSampling.mjs", import.meta.url)), join(tree, "runtime/src/main.ts")], {
  env: { ...benchRuntimeEnv(dataDir, { mediator: false }), BATON_HEAP_OUT: out },
  stdio: ["ignore", "pipe", "pipe"]
})
let output = ""
child.stdout.on("data", (b: Buffer) => (output += b.toString()))
child.stderr.on("data", (b: Buffer) => (output += b.toString()))
const waitFor = (pattern: RegExp) =>
  new Promise<RegExpMatchArray>((ok, fail) => {
    const check = () => {
      const m = output.match(pattern)
      if (m !== null) ok(m)
      else if (child.exitCode !== null) fail(new Error(`runtime exited:\n${output}`))
      else setTimeout(check, 20)
    }
    check()
  })
const mqtt = Number((await waitFor(/runtime ready .*http=(\d+)(?: mqtt=(\d+))?/))[2])
await placeOrders(mqtt, 200, "events/order-shipped")
await new Promise((r) => setTimeout(r, 300))
child.kill("SIGUSR2")
await new Promise((r) => setTimeout(r, 100))
const { perSecond } = await placeOrders(mqtt, count, "events/order-shipped")
await new Promise((r) => setTimeout(r, 300))
child.kill("SIGUSR2")
await waitFor(/heap profile written/)
child.kill("SIGTERM")
await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.on("exit", r)))

const self = new Map<string, number>()
let total = 0
const walk = (node: Node) => {
  const f = node.callFrame
  const at = `${f.functionName || "(anonymous)"} ${f.url.replace(/^file:\/\//, "").replace(tree + "/", "").replace(/.*node_modules\//, "")}:${f.lineNumber + 1}`
  self.set(at, (self.get(at) ?? 0) + node.selfSize)
  total += node.selfSize
  for (const c of node.children) walk(c)
}
walk((JSON.parse(readFileSync(out, "utf8")) as { head: Node }).head)
// BATON_ALLOC_KEEP=<file>: the sampled profile kept there (its call tree: who called a frame that allocates).
if (process.env.BATON_ALLOC_KEEP !== undefined) copyFileSync(out, process.env.BATON_ALLOC_KEEP)
rmSync(dataDir, { recursive: true, force: true })
console.log(`${tree}: ${(total / count / 1024).toFixed(1)} KB allocated per order (${(total / 2 ** 20).toFixed(0)} MB over ${count} orders, ${perSecond?.toFixed(0)} orders/s while sampled)`)
for (const [at, bytes] of [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(topArg))) console.log(`${(bytes / count / 1024).toFixed(2).padStart(7)} KB  ${at}`)
process.exit(0)
