/**
 * `node bench/src/perfOwners.ts <tree> <orders> [sqlite|pg] [<filter>]`: where the runtime's CPU
 * goes in the order flow (burst), on a core only. V8's `--cpu-prof` (`profile.ts`) samples wall
 * time: a main thread that waits for a core (on a loaded two-core machine, after a socket write
 * woke the server's backend) is charged to the frame it waits in, so on PostgreSQL it put 17% of
 * its samples in `writev` where this put the kernel's whole write at 7-8% of the main thread's CPU.
 * This runs the runtime of `<tree>` with `--perf-basic-prof` (JIT frames named) and samples it with
 * `perf record -e cpu-clock -g` (a software clock: no hardware counters needed; only a running
 * thread is sampled) over `<orders>` orders after a warm-up of 200, then prints, as shares of the
 * main thread's samples: each owner (the first frame of the repository's code or of a package,
 * from the sampled one up: node's own frames, builtins and the kernel below it are its cost), and
 * the kernel's samples by the system call and owner that entered it; for the owners matching
 * `<filter>` (a regular expression, by default the PostgreSQL driver: `PgPool.ts`, `pg`,
 * `pg-protocol`), each function's share outside the kernel. Needs `perf` (`linux-tools`) and root
 * or `kernel.perf_event_paranoid` <= 1. The share of one function is comparable between two trees
 * run one after the other (a ratio within one process, less moved by the machine's other load
 * than CPU per order); a total still differs by a point or two from run to run.
 * `PERF_GROUPS="<name>=<regex>;..."` also puts each main-thread sample in the group of the innermost
 * frame (from the sampled one up, the kernel's and node's too) that matches a group's expression, first
 * group first on a tie; `front` gives the groups of the broker and ingress path (what a front thread
 * would take off the main thread: `mqtt-packet`, Aedes and its packages, `broker-aedes`, the ingress's
 * judging and its log, the relay's own code; the processors' inboxes and handlers beside them; a socket's reads and writes
 * outside all of them as `socket?`).
 */
import { spawn, spawnSync } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { Process } from "@baton/testkit"
import { freshSchema } from "@baton/testkit/postgres"
import { benchRuntimeEnv, readyRuntime } from "./lib.ts"
import { placeOrders } from "./scenarios/orders.ts"

const [treeArg = ".", countArg = "3000", engine = "sqlite", filterArg = String.raw`PgPool\.ts|/pg/|pg-protocol`] = process.argv.slice(2)
const tree = resolve(treeArg)
const filter = new RegExp(filterArg)
const dir = mkdtempSync(join(tmpdir(), "baton-perf-"))
const schema = engine === "pg" ? await freshSchema() : undefined
const { child, mqtt } = await readyRuntime(tree, [...Process.nodeOptions, "--perf-basic-prof"], benchRuntimeEnv(join(dir, "data"), { mediator: false, databaseUrl: schema?.url }))
await placeOrders(mqtt, 200, "events/order-shipped")
const data = join(dir, "perf.data")
const perf = spawn("perf", ["record", "-F", "999", "-e", "cpu-clock", "-g", "-p", String(child.pid), "-o", data], { stdio: ["ignore", "ignore", "pipe"] })
let perfErr = ""
perf.stderr.on("data", (b: Buffer) => (perfErr += b.toString()))
await new Promise((r) => setTimeout(r, 300))
const { perSecond } = await placeOrders(mqtt, Number(countArg), "events/order-shipped")
perf.kill("SIGINT")
await new Promise((r) => (perf.exitCode !== null ? r(undefined) : perf.on("exit", r)))
child.kill("SIGINT")
await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.on("exit", r)))
await schema?.drop()
const script = spawnSync("perf", ["script", "-i", data, "-F", "comm,tid,ip,sym,dso"], { encoding: "utf8", maxBuffer: 1 << 30 })
rmSync(dir, { recursive: true, force: true })
rmSync(`/tmp/perf-${child.pid}.map`, { force: true })
if (script.status !== 0) {
  console.error(`perf failed: ${perfErr}${script.stderr}`)
  process.exit(1)
}

const isKernel = (frame: string) => frame.includes("[kernel.kallsyms]")
/** A frame of the repository's code or of a package (not node's own, a builtin or C++). */
const isOwn = (frame: string) => frame.includes("JS:") && (frame.includes(`${tree}/`) || frame.includes("file:///"))
const short = (frame: string) =>
  frame
    .replace(/\s*\(\/[^()]*\)$/, "")
    .replace(/^JS:[*+^~']*/, "")
    .replace(/'/g, "")
    .replace(/file:\/\//, "")
    .replace(`${tree}/`, "")
    .replace(/\S*node_modules\/\.pnpm\/[^/]+\/node_modules\//, "")
/** The package (or the repository's file) of a frame. */
const ownerOf = (frame: string) => {
  const m = /node_modules\/\.pnpm\/[^/]+\/node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(frame)
  return m !== null ? m[1]! : (/\s(\S+?):\d+:\d+/.exec(short(frame))?.[1] ?? short(frame))
}
const frontGroups =
  "mqtt-packet=/mqtt-packet/;aedes=node_modules/(aedes[^/]*|mqemitter[^/]*|[a-z-]*level[^/]*|fastfall|fastparallel|fastseries|retimer|hyperid|reusify|end-of-stream|duplexify|readable-stream|bl|process-nextick-args|safe-buffer|qlobber[^/]*)/;" +
  "broker-aedes=packages/broker-aedes/;ingress-log=IngressLog\\.ts;ingress=runtime/src/Ingress\\.ts|runtime/src/layers/Ingress\\.ts;relay=runtime/src/Relay\\.ts|Outbox\\.ts;" +
  "processors=Inbox\\.ts|Consumer\\.ts|Router\\.ts|processors/|packages/(actors|mediator|sdk|request-reply)/;gc=Heap::|Scavenge|MarkCompact|Sweeper|GCTracer;store?=packages/store/;effect?=node_modules/effect/;socket?=node:net|stream_base|internal/streams|uv__read|uv__write|uv_try_write"
const groupSpec = process.env.PERF_GROUPS === "front" ? frontGroups : process.env.PERF_GROUPS
const groups = (groupSpec ?? "")
  .split(";")
  .filter((g) => g.includes("="))
  .map((g) => ({ name: g.slice(0, g.indexOf("=")), re: new RegExp(g.slice(g.indexOf("=") + 1)) }))
/** Groups named `<name>?` only when no other group's expression matches a frame of the sample. */
const [primary, fallback] = [groups.filter((g) => !g.name.endsWith("?")), groups.filter((g) => g.name.endsWith("?"))]
const grouped = new Map<string, number>()
const threads = new Map<string, number>()
const owners = new Map<string, { all: number; kernel: number }>()
const functions = new Map<string, number>()
const calls = new Map<string, number>()
let main = 0
let total = 0
for (const block of script.stdout.split("\n\n")) {
  const lines = block.split("\n").filter((l) => l.trim() !== "")
  if (lines.length < 2) continue
  const thread = lines[0]!.trim().split(/\s+/)[0]!
  total++
  threads.set(thread, (threads.get(thread) ?? 0) + 1)
  if (thread !== "MainThread") continue
  main++
  const frames = lines.slice(1).map((l) => l.trim().replace(/^[0-9a-f]+ /, ""))
  const at = frames.findIndex(isOwn)
  if (groups.length > 0) {
    const innermost = (gs: typeof groups) => frames.map((f) => gs.find((g) => g.re.test(f))).find((g) => g !== undefined)?.name
    const group = innermost(primary) ?? innermost(fallback) ?? "(none)"
    grouped.set(group, (grouped.get(group) ?? 0) + 1)
  }
  const owner = at < 0 ? "(no code of its own: the event loop, GC, compiler)" : ownerOf(frames[at]!)
  const kernel = frames.slice(0, at < 0 ? frames.length : at).some(isKernel)
  const o = owners.get(owner) ?? { all: 0, kernel: 0 }
  o.all++
  if (kernel) o.kernel++
  owners.set(owner, o)
  if (kernel) {
    const call = short(frames.find((f) => !isKernel(f)) ?? "?").slice(0, 40)
    const key = `${call} <- ${at < 0 ? owner : short(frames[at]!)}`
    calls.set(key, (calls.get(key) ?? 0) + 1)
  } else if (at >= 0 && filter.test(frames[at]!)) {
    const key = short(frames[at]!)
    functions.set(key, (functions.get(key) ?? 0) + 1)
  }
}
const pct = (n: number, of: number) => `${((100 * n) / of).toFixed(1).padStart(5)}%`
console.log(`${perSecond?.toFixed(1)} orders/s under perf; ${total} samples, ${main} of the main thread (${[...threads].map(([t, n]) => `${t} ${pct(n, total).trim()}`).join(", ")})`)
console.log("main thread by owner (kernel: of it in the kernel)")
for (const [k, o] of [...owners].sort((a, b) => b[1].all - a[1].all).slice(0, 25)) console.log(`  ${pct(o.all, main)}  ${k}${o.kernel > 0 ? ` (kernel ${pct(o.kernel, main).trim()})` : ""}`)
const matched = [...functions.values()].reduce((a, b) => a + b, 0)
console.log(`owners matching /${filter.source}/, outside the kernel: ${pct(matched, main).trim()} of the main thread`)
for (const [k, n] of [...functions].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`  ${pct(n, main)}  ${k}`)
console.log("the kernel, by system call and owner")
for (const [k, n] of [...calls].sort((a, b) => b[1] - a[1]).slice(0, 15)) console.log(`  ${pct(n, main)}  ${k}`)
if (groups.length > 0) {
  console.log("main thread by group (the innermost frame that matches one)")
  for (const [k, n] of [...grouped].sort((a, b) => b[1] - a[1])) console.log(`  ${pct(n, main)}  ${k}`)
}
process.exit(0)
