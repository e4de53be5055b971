/**
 * `node bench/src/walPages.ts <round trips> <tree> [<tree> ...]`: WAL pages written per
 * request-reply round trip (correlation mode, the ping processor) by each tree's runtime on
 * SQLite: `strace` counts the runtime's 4 KB writes to its `-wal` file (one per frame) over the
 * round trips, after a warm-up; and, before that without strace, the runtime process's CPU time a
 * round trip (user + system, from /proc). Trees in interleaved rounds (`BATON_WAL_ROUNDS`, 1 by
 * default). Needs strace and ptrace rights over a child process.
 */
import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { resolve } from "node:path"
import mqtt from "mqtt"
import { Log } from "@baton/core"
import { make } from "@baton/request-reply"
import { noDelay, sleep } from "./lib.ts"

const [countArg = "1000", ...trees] = process.argv.slice(2)
const count = Number(countArg)
const rounds = Number(process.env.BATON_WAL_ROUNDS ?? 1)
/** The process's CPU time so far, ms (utime + stime; clock ticks of 10 ms). */
const cpuMs = (pid: number) => {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
  return (Number(fields[11]) + Number(fields[12])) * 10
}
const results = new Map<string, Array<{ readonly pages: number; readonly cpu: number; readonly ms: number }>>()
for (let round = 0; round < rounds; round++)
for (const tree of round % 2 === 0 ? trees : [...trees].reverse()) {
  const { onRuntime } = (await import(resolve(tree, "bench/src/scenarios/runtime.ts"))) as typeof import("./scenarios/runtime.ts")
  const out = `/tmp/walpages-${process.pid}.txt`
  const frames = await onRuntime({ BATON_APP: "ping" }, async (r) => {
    const client = noDelay(await mqtt.connectAsync(`mqtt://127.0.0.1:${r.mqttPort}`, { protocolVersion: 4, clientId: "walpages", reconnectPeriod: 0 }))
    const requester = await make(client, { clientId: "walpages", timeoutMs: 10_000, logger: Log.silent })
    let n = 0
    for (let i = 0; i < 200; i++) await requester.request("initiate/ping", { n: n++ })
    const pid = r.child.pid!
    const cpu0 = cpuMs(pid)
    const t0 = performance.now()
    for (let i = 0; i < count; i++) await requester.request("initiate/ping", { n: n++ })
    const ms = performance.now() - t0
    const cpu = cpuMs(pid) - cpu0
    const strace = spawn("strace", ["-f", "-y", "-e", "trace=pwrite64,write", "-o", out, "-p", String(r.child.pid)], { stdio: ["ignore", "ignore", "pipe"] })
    await sleep(500)
    for (let i = 0; i < count; i++) await requester.request("initiate/ping", { n: n++ })
    await sleep(200)
    strace.kill("SIGINT")
    await new Promise((done) => strace.once("exit", done))
    await requester.close()
    await client.endAsync()
    const lines = readFileSync(out, "utf8").split("\n")
    const wal = lines.filter((l) => /-wal>/.test(l))
    return { pages: wal.filter((l) => / = 4096$/.test(l)).length / count, cpu: cpu / count, ms: ms / count }
  })
  results.set(tree, [...(results.get(tree) ?? []), frames])
  console.log(`round ${round} ${tree}: ${frames.pages.toFixed(2)} WAL pages, ${(frames.cpu * 1000).toFixed(0)} us CPU, ${frames.ms.toFixed(3)} ms a round trip`)
}
const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const base = results.get(trees[0]!)!
for (const [tree, rs] of results) {
  const pairwise = median(rs.map((r, i) => r.cpu / base[i]!.cpu))
  console.log(`${tree}: ${median(rs.map((r) => r.pages)).toFixed(2)} WAL pages, ${(median(rs.map((r) => r.cpu)) * 1000).toFixed(0)} us CPU (pairwise ${pairwise.toFixed(2)}x), ${median(rs.map((r) => r.ms)).toFixed(3)} ms a round trip (medians)`)
}
