/**
 * `node bench/src/rrProfile.ts <tree> <round trips> <outDir> [profile|timeline]`: sequential
 * request-reply round trips (correlation mode, the ping processor) on one runtime of `<tree>`
 * (its own process on a fresh data folder, after 200 unmeasured round trips). Prints the wall
 * time a round trip and the CPU of each side a round trip (the runtime's user and system time,
 * every thread, from /proc; the client's, this process's). Then:
 *
 * - `profile` (default): the runtime ran under `node --cpu-prof`; its profiles (the main
 *   thread's, the checkpointer's) are written to `<outDir>` when it stops, and the main thread's
 *   top frames are printed (`profileTop.ts`: the whole run, start-up included).
 * - `timeline`: the runtime keeps its `BATON_TIMELINE` marks and those of `rrMarks.mjs` (socket
 *   reads and writes, setImmediate, each SQLite statement with its µs); printed: each mark's
 *   median offset from the request's send (µs of the monotonic clock both processes share), the
 *   statements' median and mean durations, and three round trips mark by mark.
 *
 * On a loaded two-core machine the two processes' CPU adds up to most of a round trip: the
 * runtime's write of the reply wakes the client, which often runs in its place (the runtime is
 * then descheduled inside the `writev`, the profile's largest "self" frame).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { spawnSync } from "node:child_process"
import mqtt from "mqtt"
import { Log } from "@baton/core"
import { make } from "@baton/request-reply"
import { Process } from "@baton/testkit"
import { median, noDelay } from "./lib.ts"

const [treeArg = ".", countArg = "3000", outDir = "/tmp/baton-rr-prof", mode = "profile"] = process.argv.slice(2)
const tree = resolve(treeArg)
const count = Number(countArg)
const timeline = mode === "timeline"
const dataDir = mkdtempSync(join(tmpdir(), "baton-rr-prof-"))
const marksFile = join(dataDir, "marks.json")
const preload = fileURLToPath(new URL("rrMarks.mjs", import.meta.url))
const r = await Process.startProcess(
  dataDir,
  { BATON_PUBLISH_RATE: "1000000", BATON_APP: "ping", ...(timeline ? { BATON_TIMELINE: marksFile } : {}) },
  [...(timeline ? ["--import", preload] : ["--cpu-prof", `--cpu-prof-dir=${outDir}`]), join(tree, "runtime/src/main.ts")]
)
/** The runtime's user and system CPU so far, ms (clock ticks of 10 ms). */
const runtimeCpu = () => {
  const fields = readFileSync(`/proc/${r.child.pid}/stat`, "utf8").split(") ")[1]!.split(" ")
  return [Number(fields[11]) * 10, Number(fields[12]) * 10] as const
}
const now = () => Number(process.hrtime.bigint() / 1000n)
const clientId = "rr-profile"
const client = noDelay(await mqtt.connectAsync(`mqtt://127.0.0.1:${r.mqttPort}`, { protocolVersion: 4, clientId, reconnectPeriod: 0 }))
const requester = await make(client, { clientId, mode: "correlation", timeoutMs: 10_000, logger: Log.silent })
for (let i = 0; i < 200; i++) await requester.request("initiate/ping", { n: i })
const [user0, system0] = runtimeCpu()
const client0 = process.cpuUsage()
/** Each round trip's send and reply, µs. */
const trips: Array<readonly [number, number]> = []
const t0 = performance.now()
for (let i = 0; i < count; i++) {
  const sent = now()
  await requester.request("initiate/ping", { n: i })
  trips.push([sent, now()])
}
const wall = (performance.now() - t0) / count
const [user1, system1] = runtimeCpu()
const own = process.cpuUsage(client0)
const per = (ms: number) => (ms / count).toFixed(3)
console.log(`${count} round trips, ${wall.toFixed(3)} ms each (p50 ${(median(trips.map(([s, e]) => e - s)) / 1000).toFixed(3)} ms); CPU a round trip: runtime user ${per(user1 - user0)} ms, system ${per(system1 - system0)} ms; client user ${per(own.user / 1000)} ms, system ${per(own.system / 1000)} ms`)

if (timeline) {
  r.child.kill("SIGUSR2")
  await new Promise((ok) => setTimeout(ok, 500))
  const flat = [...(JSON.parse(readFileSync(marksFile, "utf8")) as Array<string | number>), ...(JSON.parse(readFileSync(`${marksFile}.io`, "utf8")) as Array<string | number>)]
  const marks: Array<readonly [code: string, at: number, n: number]> = []
  for (let i = 0; i + 2 < flat.length; i += 3) marks.push([flat[i] as string, flat[i + 1] as number, flat[i + 2] as number])
  marks.sort((a, b) => a[1] - b[1])
  // Each mark, with the round trip whose window holds it.
  const offsets = new Map<string, Array<number>>()
  const shown: Array<string> = []
  let k = 0
  for (const [code, at, n] of marks) {
    while (k < trips.length && at > trips[k]![1]) k++
    if (k >= trips.length) break
    if (at < trips[k]![0]) continue
    const offset = at - trips[k]![0]
    let list = offsets.get(code)
    if (list === undefined) offsets.set(code, (list = []))
    list.push(offset)
    if (k >= count / 2 && k < count / 2 + 3) shown.push(`  #${k} +${String(offset).padStart(5)} us  ${code} (${n})`)
  }
  console.log("marks, median offset from the send (how many a round trip):")
  for (const [code, xs] of [...offsets].sort((a, b) => median(a[1]) - median(b[1])))
    console.log(`  +${String(median(xs)).padStart(5)} us  ${code} (${(xs.length / count).toFixed(2)})`)
  console.log(`  +${String(median(trips.map(([s, e]) => e - s))).padStart(5)} us  the reply, read by the client`)
  const durations = new Map<string, Array<number>>()
  for (const [code, , n] of marks) {
    if (!code.startsWith("Q:")) continue
    let list = durations.get(code)
    if (list === undefined) durations.set(code, (list = []))
    list.push(n)
  }
  // Statements outside BEGIN ... COMMIT: each a commit of its own (an outbox delete, say).
  const alone = new Map<string, number>()
  let open = false
  for (const [code, at] of marks) {
    if (!code.startsWith("Q:") || at < trips[0]![0]) continue
    if (code.startsWith("Q:BEGIN")) open = true
    else if (code.startsWith("Q:COMMIT") || code.startsWith("Q:ROLLBACK")) open = false
    else if (!open) alone.set(code, (alone.get(code) ?? 0) + 1)
  }
  console.log("statements committed on their own, a round trip:")
  for (const [code, n] of alone) console.log(`  ${(n / count).toFixed(3)}  ${code.slice(2)}`)
  console.log("statements run at least once a round trip, µs: median, mean")
  for (const [code, xs] of durations)
    if (xs.length >= count) console.log(`  ${String(median(xs)).padStart(4)} ${(xs.reduce((a, b) => a + b, 0) / xs.length).toFixed(1).padStart(6)}  ${code.slice(2)} (${(xs.length / count).toFixed(2)})`)
  console.log("three round trips, mark by mark:")
  console.log(shown.join("\n"))
}
await requester.close()
await client.endAsync()
await r.kill("SIGINT")
rmSync(dataDir, { recursive: true, force: true })
if (!timeline) {
  const profile = readdirSync(outDir)
    .filter((f) => f.endsWith(".cpuprofile"))
    .map((f) => join(outDir, f))
    // The main thread's: the largest.
    .sort((a, b) => statSync(b).size - statSync(a).size)[0]
  if (profile !== undefined) spawnSync(process.execPath, [fileURLToPath(new URL("profileTop.ts", import.meta.url)), profile, "30"], { stdio: "inherit" })
}
process.exit(0)
