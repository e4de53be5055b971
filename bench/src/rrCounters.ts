/**
 * `node bench/src/rrCounters.ts <round trips> <rounds> <tree> [<tree> ...]`: request-reply round
 * trips (correlation mode, the ping processor) on each tree's own runtime (`<tree>/runtime/src/main.ts`,
 * its own process on a fresh data folder, after 200 unmeasured round trips), in interleaved rounds,
 * with the counters a loaded machine disturbs little: the runtime's CPU per round trip (user +
 * system, every thread, from /proc), the store's statements (`/healthz`) and the runtime's write
 * syscalls (`syscw`: WAL frames, socket writes) per round trip; the idle spin's windows and hits
 * per round trip (`/metrics`: a hit is a request caught while the loop polled); and the p50. Prints each run, then
 * per tree the medians, their pairwise ratios to the first tree's and in how many rounds each tree
 * had the lowest CPU (`interleave.ts`). `BATON_AB_TREE_ENV`, as ab.ts's (`treeEnvs`): the runtime's
 * environment per tree argument (`. .` with `BATON_AB_TREE_ENV="|BATON_IDLE_SPIN_US=0"`: the idle
 * spin against none on one tree; the output names each arm's tree only, in argument order).
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import mqtt from "mqtt"
import { Log } from "@baton/core"
import { make } from "@baton/request-reply"
import { Process } from "@baton/testkit"
import { idleSpin, interleave, statements, writes } from "./interleave.ts"
import { cpuMs, noDelay, treeEnvs } from "./lib.ts"
import { tracker } from "./pacing.ts"

const [countArg = "3000", roundsArg = "4", ...trees] = process.argv.slice(2)
if (trees.length === 0) {
  console.error("usage: node bench/src/rrCounters.ts <round trips> <rounds> <tree> [<tree> ...]")
  process.exit(2)
}
const [count, rounds] = [Number(countArg), Number(roundsArg)]
const envs = treeEnvs(process.env.BATON_AB_TREE_ENV, trees.length)

interface Run {
  readonly p50: number
  readonly cpu: number
  readonly statements: number
  readonly writes: number
  readonly windows: number
  readonly hits: number
}

const roundTrips = async (tree: string, index: number): Promise<Run> => {
  const dataDir = mkdtempSync(join(tmpdir(), "baton-rr-counters-"))
  const r = await Process.startProcess(dataDir, { BATON_PUBLISH_RATE: "1000000", BATON_APP: "ping", ...envs[index] }, [resolve(tree, "runtime/src/main.ts")])
  try {
    const clientId = "rr-counters"
    const client = noDelay(await mqtt.connectAsync(`mqtt://127.0.0.1:${r.mqttPort}`, { protocolVersion: 4, clientId, reconnectPeriod: 0 }))
    const requester = await make(client, { clientId, mode: "correlation", timeoutMs: 10_000, logger: Log.silent })
    for (let i = 0; i < 200; i++) await requester.request("initiate/ping", { n: i })
    const pid = r.child.pid!
    const [cpu0, statements0, writes0, spin0] = [cpuMs(pid), await statements(r.httpPort), writes(pid), await idleSpin(r.httpPort)]
    const trips = tracker<number>()
    for (let i = 0; i < count; i++) {
      trips.sent(i)
      await requester.request("initiate/ping", { n: i })
      trips.done(i)
    }
    // The deletes left for after the last reply (a few ms), in the figures of the run.
    await new Promise((ok) => setTimeout(ok, 50))
    const spin = await idleSpin(r.httpPort)
    const run = {
      p50: trips.summary().p50,
      cpu: (cpuMs(pid) - cpu0) / count,
      statements: ((await statements(r.httpPort)) - statements0) / count,
      writes: (writes(pid) - writes0) / count,
      windows: (spin.windows - spin0.windows) / count,
      hits: (spin.hits - spin0.hits) / count
    }
    await requester.close()
    await client.endAsync()
    return run
  } finally {
    await r.kill("SIGTERM")
    rmSync(dataDir, { recursive: true, force: true })
  }
}

const fmt = (v: number) => v.toFixed(3)
await interleave({
  trees,
  rounds,
  run: roundTrips,
  line: (s) => `p50 ${fmt(s.p50)} ms; a round trip: CPU ${fmt(s.cpu)} ms, ${fmt(s.statements)} statements, ${fmt(s.writes)} write syscalls, idle spin ${fmt(s.windows)} windows and ${fmt(s.hits)} hits`,
  keys: ["p50", "cpu", "statements", "writes", "windows", "hits"],
  lowest: ["cpu"],
  digits: 3
})
process.exit(0)
