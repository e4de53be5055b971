/**
 * `node bench/src/tail.ts <rate> <count> [accept]`: a diagnosis loop for the tail. Runs the runtime
 * (its own process, as `onRuntime` does), warms it up, paces `count` orders at `rate` per second and
 * prints their latency percentiles (to `order-shipped`; with `accept`, to the PUBACK) from the
 * schedule, with what the runtime's event loop did meanwhile, from a preloaded probe
 * (`tailProbe.mjs`): its stalls over 3 ms, its garbage collections (V8's kind: 1 scavenge, 4 mark-
 * compact) and its event-loop delay, and those counted per 1,000 messages (which a busy machine
 * disturbs less than the percentiles).
 *
 * - `TAIL_TREE=<dir>`: the runtime of another git tree (a base, with the same probe and load).
 * - `RT_NODE_OPTIONS`: more Node options of the runtime (say `--trace-gc`; the testkit's own,
 *   `Process.nodeOptions`, come first on its command line and win); `RT_NODE_ARGS`: flags put on
 *   its command line after those (V8's own too, such as `--max-semi-space-size=4`, which then wins,
 *   or `--single-threaded-gc`, which NODE_OPTIONS refuses).
 * - `TAIL_GC=1`: the runtime runs with `--trace-gc-nvp`, and the scavenges of the paced window are
 *   summed up: median and mean pause, bytes that survived and were promoted per scavenge (what a
 *   scavenge copies is what makes it long), mark-compacts, the promoted bytes per 1,000 messages
 *   in 4 KiB pages: on this VM the page faults follow them (faults ≈ 1.17 x promoted pages + 680,
 *   r = 0.93 over 31 runs of several semi-space sizes): the old space's fresh pages, not the young one's;
 *   and the KB a scavenge promoted by the time since the last mark-compact (a run of 20,000 at
 *   1,000/s has a few: 87, 55 and 66 KB under 1 s, 1-3 s, past 3 s on 2026-12-03, load 4.4; with
 *   `RT_NODE_ARGS=--allocation-site-pretenuring` 1077, 1090, 1162). `TAIL_OUTPUT=<file>`: the runtime's output.
 * - `TAIL_KIND` (with `accept`): `reject` publishes orders that fail their schema (the ingress judges
 *   and rejects them: no flow), `customer` a `register-customer` (one small processor); default
 *   `order`. At 200/s the scavenges promoted ~455, ~605 and ~1450-3300 pages per 1,000 of them with V8's
 *   allocation-site pretenuring on; without it (the testkit's processes since a76cde5), ~66, ~72 and
 *   ~97-102 (and the accept at 1,000/s 63-240, by the machine's load, against 1,300-3,200 with it).
 * - `TAIL_DETAIL=1`: the slowest 1% of messages, each with the stalls and collections that overlapped it.
 * - `TAIL_STRACE=<file>`: the runtime's fsyncs per thread (strace), to see which thread waits on the
 *   disk (`TAIL_STRACE_CALLS`: other system calls, say `pwrite64,fsync`).
 * - `TAIL_PERF=<file>`: the runtime's system calls per thread, summed up by `perf trace -s` (count,
 *   total, mean and max time of each), with less overhead than strace (`TAIL_PERF_CALLS`: only those, say `fsync,fdatasync`).
 * - `TAIL_PROFILE=<dir>`: the runtime runs under `--cpu-prof` (into `<dir>`, a sample every 250 us)
 *   and stops gracefully (its profile is written as it exits), and what its event loop ran during
 *   the stalls is printed (`stallProfile.ts`) from the window of the paced messages.
 * - `TAIL_NICE=<n>` (root): the runtime's threads and this process reniced to `n` after the start.
 * - `TAIL_TIMELINE=1` (with `accept`): the runtime marks each accept's steps (its `BATON_TIMELINE`,
 *   in the monotonic clock this client shares) and each accept's time is split (`timeline.ts`):
 *   the sender late, the PUBLISH waiting for the runtime's loop (from its send to the ingress's
 *   `receive`), the append waiting for its flush and for the connection, its transaction, the
 *   promises to the end of `receive`, and the PUBACK's way back; with what the loop ran meanwhile.
 */
import { spawn, spawnSync } from "node:child_process"
import { readFileSync, readdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import mqtt from "mqtt"
import { Process } from "@baton/testkit"
import { noDelay, counter, minorFaults, within } from "./lib.ts"
import { paced } from "./pacing.ts"
import { order, placeOrders } from "./scenarios/orders.ts"
import { report } from "./stallProfile.ts"
import { split } from "./timeline.ts"

const [rate = 200, count = 2000] = process.argv.slice(2, 4).map(Number)
const acceptOnly = process.argv[4] === "accept"
const dataDir = mkdtempSync(join(tmpdir(), "baton-tail-"))
const probeOut = join(dataDir, "probe.json")
const timelineOut = process.env.TAIL_TIMELINE === undefined ? undefined : join(dataDir, "timeline.json")
/** The monotonic clock in microseconds (shared by every process on the machine), and performance.now()'s offset from it. */
const monoUs = () => Number(process.hrtime.bigint() / 1000n)
const monoOffset = monoUs() - performance.now() * 1000
const profileDir = process.env.TAIL_PROFILE
const profiling = profileDir === undefined ? "" : ` --cpu-prof --cpu-prof-dir=${profileDir} --cpu-prof-interval=250`
const gcTrace = process.env.TAIL_GC !== undefined
/** TAIL_KIND (with `accept`): what is published, to bisect what an accept costs (see the header). */
const kind = process.env.TAIL_KIND ?? "order"
const accepted = (i: number, id: string): unknown =>
  kind === "customer" ? { customerId: `c-${i}-${id}`, name: "N", email: `n${i}@example.com` } : kind === "reject" ? { nope: i } : order(i)
const runtimeArgs = [...(gcTrace ? ["--trace-gc-nvp"] : []), ...(process.env.RT_NODE_ARGS ?? "").split(" ").filter((a) => a !== "")]
const r = await Process.startProcess(
  dataDir,
  { BATON_PUBLISH_RATE: "1000000", NODE_OPTIONS: `${process.env.RT_NODE_OPTIONS ?? ""}${profiling} --import ${fileURLToPath(new URL("./tailProbe.mjs", import.meta.url))}`, PROBE_OUT: probeOut, ...(timelineOut === undefined ? {} : { BATON_TIMELINE: timelineOut }) },
  [...runtimeArgs, process.env.TAIL_TREE === undefined ? fileURLToPath(new URL("../../runtime/src/main.ts", import.meta.url)) : join(process.env.TAIL_TREE, "runtime/src/main.ts")]
)
const t0 = performance.timeOrigin
// TAIL_STRACE=<file>: the runtime's fsync/fdatasync calls (per thread, with their durations), to see which thread syncs.
const strace = process.env.TAIL_STRACE === undefined ? undefined : spawn("strace", ["-f", "-y", "-ttt", "-T", "-e", `trace=${process.env.TAIL_STRACE_CALLS ?? "fsync,fdatasync"}`, "-p", String(r.child.pid), "-o", process.env.TAIL_STRACE], { stdio: "ignore" })
// TAIL_PERF=<file>: a summary of the runtime's system calls per thread (perf trace -s: count, total, mean and max), lighter than strace.
const perf = process.env.TAIL_PERF === undefined ? undefined : spawn("perf", ["trace", "-s", ...(process.env.TAIL_PERF_CALLS === undefined ? [] : ["-e", process.env.TAIL_PERF_CALLS]), "-p", String(r.child.pid), "-o", process.env.TAIL_PERF], { stdio: "ignore" })
if (strace !== undefined || perf !== undefined) await new Promise((ok) => setTimeout(ok, 500))
// TAIL_NICE=<n> (root): the runtime's threads and this process at that priority (say -10), so that
// a diagnosis on a machine that other benchmarks load sees the runtime as a quieter machine would.
if (process.env.TAIL_NICE !== undefined)
  for (const pid of [r.child.pid!, process.pid]) for (const task of readdirSync(`/proc/${pid}/task`)) spawnSync("renice", ["-n", process.env.TAIL_NICE, "-p", task], { stdio: "ignore" })
const msgs: Array<{ due: number; sent: number; done: number }> = []
/** Per accept, in the monotonic clock's microseconds: due, sent, PUBACK read. */
const mono: Array<[number, number, number]> = []
/** The runtime's minor page faults over the paced messages (each a fresh page touched: some 15 us on this VM). */
let faults = 0
try {
  await placeOrders(r.mqttPort!, 50, "events/order-shipped")
  const client = noDelay(await mqtt.connectAsync(`mqtt://127.0.0.1:${r.mqttPort}`, { protocolVersion: 4, reconnectPeriod: 0 }))
  const byId = new Map<string, number>()
  const done = counter(count)
  client.on("message", (_t, payload) => {
    const e = JSON.parse(payload.toString()) as { correlationId: string }
    const i = byId.get(e.correlationId)
    if (i !== undefined && !acceptOnly) (msgs[i]!.done = t0 + performance.now()), done.hit()
  })
  if (!acceptOnly) await client.subscribeAsync("events/order-shipped", { qos: 1 })
  faults = minorFaults(r.child.pid!)
  await paced(rate, count, (i, due) => {
    const id = crypto.randomUUID()
    byId.set(id, i)
    msgs[i] = { due: t0 + due, sent: t0 + performance.now(), done: 0 }
    mono[i] = [monoOffset + due * 1000, monoUs(), 0]
    // The accept: a bare order, as latency.ts's scenario and acceptAb.ts publish it.
    void client.publishAsync(acceptOnly && kind === "customer" ? "initiate/register-customer" : "initiate/place-order", JSON.stringify(acceptOnly ? accepted(i, id) : { id, type: "place-order", data: order(i) }), { qos: 1 }).then(() => {
      if (acceptOnly) (msgs[i]!.done = t0 + performance.now()), (mono[i]![2] = monoUs()), done.hit()
    })
  })
  await within(done.done, 120_000, "all done")
  faults = minorFaults(r.child.pid!) - faults
  await client.endAsync()
} finally {
  r.child.kill("SIGUSR2")
  await new Promise((ok) => setTimeout(ok, 300))
  // Profiling: a graceful stop, which writes the profile (a bound: then killed, without one).
  if (profileDir !== undefined) await Promise.race([r.kill("SIGTERM"), new Promise((ok) => setTimeout(ok, 30_000))])
  await r.kill("SIGKILL")
  strace?.kill()
  perf?.kill("SIGINT")
}
// TAIL_OUTPUT=<file>: what the runtime wrote to stdout and stderr (say with RT_NODE_ARGS=--trace-gc-nvp).
if (process.env.TAIL_OUTPUT !== undefined) writeFileSync(process.env.TAIL_OUTPUT, r.output())
const probe = JSON.parse(readFileSync(probeOut, "utf8")) as { gcs: Array<[number, number, number]>; stalls: Array<[number, number]>; monotonic: Array<[number, number]>; eld: unknown; newSpace: number; origin: number }
const marks = timelineOut === undefined ? undefined : (JSON.parse(readFileSync(timelineOut, "utf8")) as Array<string | number>)
rmSync(dataDir, { recursive: true, force: true })
const lat = msgs.map((m) => ({ ...m, l: m.done - Math.min(m.due, m.sent) })).sort((a, b) => a.l - b.l)
const pct = (p: number) => lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))]!.l.toFixed(2)
const start = msgs[0]!.due
const end = Math.max(...msgs.map((m) => m.done))
const gcs = probe.gcs.filter(([at]) => at >= start && at <= end)
const stalls = probe.stalls.filter(([at]) => at >= start && at <= end)
const sum = (xs: Array<number>) => xs.reduce((a, b) => a + b, 0)
console.log(`p50 ${pct(50)} p90 ${pct(90)} p99 ${pct(99)} p99.9 ${pct(99.9)} max ${lat.at(-1)!.l.toFixed(2)} ms; eld ${JSON.stringify(probe.eld)} new space ${probe.newSpace} MB`)
const kinds = new Map<number, Array<number>>()
for (const [, d, k] of gcs) kinds.set(k, [...(kinds.get(k) ?? []), d])
console.log(`gc during run: ${[...kinds].map(([k, ds]) => `kind ${k}: ${ds.length}x, mean ${(sum(ds) / ds.length).toFixed(2)} max ${Math.max(...ds).toFixed(2)} ms`).join("; ")}`)
console.log(`stalls > 3 ms: ${stalls.length}, total ${sum(stalls.map((s) => s[1])).toFixed(0)} ms, max ${Math.max(0, ...stalls.map((s) => s[1])).toFixed(1)}`)
// Counts per 1,000 messages, which the machine's load disturbs less than the percentiles.
const per1000 = (n: number) => ((n * 1000) / count).toFixed(1)
console.log(`per 1000 messages: stalls > 3 ms ${per1000(stalls.length)}, gc pauses ${per1000(gcs.length)} (> 3 ms ${per1000(gcs.filter((g) => g[1] > 3).length)}), gc time ${per1000(sum(gcs.map((g) => g[1])))} ms, page faults ${per1000(faults)}`)
if (gcTrace) {
  // `--trace-gc-nvp` lines of the paced window's young collections (scavenges "gc=s", or with
  // `--minor-ms` V8's young mark-sweeps "gc=mms", which promote whole pages), as name=value pairs; each is
  // stamped with ms since the runtime's isolate started (its time origin, within a millisecond).
  const lines = r.output().split("\n")
  const stamp = (line: string) => Number(/(\d+) ms: /.exec(line)?.[1] ?? Number.NaN)
  const inWindow = (line: string) => probe.origin + stamp(line) >= start && probe.origin + stamp(line) <= end
  const young = lines.filter((line) => / gc=(s|mms) /.test(line) && inWindow(line))
  const scavenges = young.map((line) => Object.fromEntries([...line.matchAll(/([\w.]+)=([\d.]+)/g)].map((m) => [m[1]!, Number(m[2])])) as Record<string, number>)
  const median = (xs: Array<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN
  const mean = (xs: Array<number>) => sum(xs) / xs.length
  const pauses = scavenges.map((g) => g.pause ?? 0)
  const kb = (xs: Array<number>) => (mean(xs) / 1024).toFixed(0)
  console.log(
    `young GCs (scavenges or minor mark-sweeps): ${scavenges.length}, pause median ${median(pauses).toFixed(2)} mean ${mean(pauses).toFixed(2)} ms; per scavenge survived ${kb(scavenges.map((g) => g.new_space_survived ?? 0))} KB, promoted ${kb(scavenges.map((g) => g.promoted ?? 0))} KB (${per1000(sum(scavenges.map((g) => g.promoted ?? 0)) / 4096)} 4 KiB pages per 1000 messages, which the page faults track); mark-compacts ${lines.filter((l) => l.includes(" gc=mc ") && inWindow(l)).length}`
  )
  // A dead old object keeps what it points to past every scavenge until the next full collection
  // ("nepotism"). When it links to ever newer objects (a Map's old hash table to the next one,
  // `tableChain.mjs`), each scavenge promotes more the longer since that collection; flat, no such
  // chain (a dead old object pointing once at young ones, as pretenured envelopes did, stays flat).
  const compactions = lines.filter((l) => l.includes(" gc=mc ")).map(stamp)
  const since = (line: string) => stamp(line) - Math.max(0, ...compactions.filter((t) => t <= stamp(line)))
  const bands = [[0, 1000], [1000, 3000], [3000, Infinity]] as const
  const band = ([lo, hi]: readonly [number, number]) => scavenges.filter((_, i) => since(young[i]!) >= lo && since(young[i]!) < hi).map((g) => g.promoted ?? 0)
  console.log(`promoted KB per scavenge by time since the last mark-compact (< 1 s, 1-3 s, >= 3 s; growing: a chain): ${bands.map((b) => band(b)).map((ps) => (ps.length === 0 ? "-" : `${kb(ps)} (${ps.length})`)).join(", ")}`)
}
if (marks !== undefined) console.log(split(marks, mono))
if (profileDir !== undefined) {
  // The main thread's profile (the largest; worker threads write their own), its stalls in the paced window.
  const profiles = readdirSync(profileDir).filter((f) => f.endsWith(".cpuprofile") && f.includes(`.${r.child.pid}.`))
  const main = profiles.map((f) => join(profileDir, f)).sort((a, b) => statSync(b).size - statSync(a).size)[0]
  const window = probe.monotonic.filter((_, i) => probe.stalls[i]![0] >= start && probe.stalls[i]![0] <= end)
  console.log(main === undefined ? `no CPU profile of the runtime in ${profileDir}` : report(main, window))
}
if (process.env.TAIL_DETAIL) {
  for (const m of lat.slice(-Math.ceil(lat.length / 100))) {
    const overlapping = (a: number, b: number) => a < m.done && b > m.due
    const g = gcs.filter(([at, d]) => overlapping(at, at + d)).map(([, d, k]) => `gc${k}:${d.toFixed(1)}`)
    const s = stalls.filter(([at, d]) => overlapping(at, at + d)).map(([, d]) => d.toFixed(1))
    console.log(`  ${m.l.toFixed(1)} ms (late ${(m.sent - m.due).toFixed(1)}): stalls [${s.join(" ")}] ${g.join(" ")}`)
  }
}
process.exit(0)
