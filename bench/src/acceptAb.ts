/**
 * `node bench/src/acceptAb.ts <rate> <count> <rounds> <tree> [<tree> ...]`: the accept scenario of
 * `bench/src/scenarios/latency.ts` (publish → PUBACK of `initiate/place-order`, a bare order, at a
 * fixed rate, timed from each publish's scheduled send) on each tree's own runtime
 * (`<tree>/runtime/src/main.ts`, its own process on a fresh data folder, after the same warm-up of
 * `BENCH_WARMUP` orders), in interleaved rounds, so that a change is measured against a base tree
 * on the same machine at the same time. Besides the latencies, the runtime's CPU per order (user +
 * system of the process, every thread, from /proc) from the first publish until every accepted order
 * has shipped, and its store's statements and write syscalls per order over the same span: counters
 * that the machine's other load disturbs much less than the percentiles.
 * Prints each run, then per tree the medians, the pairwise ratios to the first tree's (the median
 * of the per-round ratios) and in how many rounds each tree had the lowest p99 and CPU per order.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import mqtt from "mqtt"
import { Process } from "@baton/testkit"
import { counter, cpuMs, median, noDelay, warmup, within } from "./lib.ts"
import { paced, tracker, type LatencySummary } from "./pacing.ts"
import { order, placeOrders } from "./scenarios/orders.ts"

const [rateArg = "1000", countArg = "3000", roundsArg = "4", ...trees] = process.argv.slice(2)
if (trees.length === 0) {
  console.error("usage: node bench/src/acceptAb.ts <rate> <count> <rounds> <tree> [<tree> ...]")
  process.exit(2)
}
const [rate, count, rounds] = [Number(rateArg), Number(countArg), Number(roundsArg)]

type Run = LatencySummary & { readonly cpu: number; readonly statements: number; readonly writes: number }

/** The store's statements so far (its own count, `/healthz`; NaN for a tree that does not count them). */
const statements = async (port: number): Promise<number> => ((await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()) as { statements?: number }).statements ?? Number.NaN
/** Write syscalls of a process so far (`syscw` of /proc/<pid>/io: WAL frames, socket writes). */
const writes = (pid: number): number => Number(/syscw: (\d+)/.exec(readFileSync(`/proc/${pid}/io`, "utf8"))?.[1] ?? Number.NaN)

const acceptOn = async (tree: string): Promise<Run> => {
  const dataDir = mkdtempSync(join(tmpdir(), "baton-accept-ab-"))
  const r = await Process.startProcess(dataDir, { BATON_PUBLISH_RATE: "1000000" }, [resolve(tree, "runtime/src/main.ts")])
  try {
    await placeOrders(r.mqttPort!, warmup(), "events/order-shipped")
    const client = noDelay(await mqtt.connectAsync(`mqtt://127.0.0.1:${r.mqttPort}`, { protocolVersion: 4, reconnectPeriod: 0 }))
    const shipped = counter(count)
    client.on("message", () => shipped.hit())
    await client.subscribeAsync("events/order-shipped", { qos: 1 })
    const accepted = tracker<number>()
    const pending: Array<Promise<unknown>> = []
    const pid = r.child.pid!
    const [cpu0, statements0, writes0] = [cpuMs(pid), await statements(r.httpPort), writes(pid)]
    await paced(rate, count, (i, due) => {
      accepted.sent(i, due)
      // A bare order, as latency.ts's accept publishes it (the ingress makes its envelope).
      pending.push(client.publishAsync("initiate/place-order", JSON.stringify(order(i)), { qos: 1 }).then(() => accepted.done(i)))
    })
    await Promise.all(pending)
    await within(shipped.done, 120_000, `${count} orders shipped`)
    const cpu = (cpuMs(pid) - cpu0) / count
    const [statements1, writes1] = [await statements(r.httpPort), writes(pid)]
    await client.endAsync()
    return { ...accepted.summary(), cpu, statements: (statements1 - statements0) / count, writes: (writes1 - writes0) / count }
  } finally {
    await r.kill("SIGTERM")
    rmSync(dataDir, { recursive: true, force: true })
  }
}

const runs = trees.map((): Array<Run> => [])
const fmt = (v: number) => v.toFixed(2)
for (let round = 0; round < rounds; round++) {
  // Alternate which tree goes first.
  const order = round % 2 === 0 ? trees.map((_, i) => i) : trees.map((_, i) => i).reverse()
  for (const i of order) {
    const s = await acceptOn(trees[i]!)
    runs[i]!.push(s)
    console.log(`round ${round} ${trees[i]}: p50 ${fmt(s.p50)} p99 ${fmt(s.p99)} (from the send ${fmt(s.p99Sent)}) p99.9 ${fmt(s.p999)} max ${fmt(s.max)} ms; sender late by at most ${fmt(s.senderLateMax)} ms; an order: CPU ${fmt(s.cpu)} ms, ${fmt(s.statements)} statements, ${fmt(s.writes)} write syscalls`)
  }
}
const keys = ["p50", "p99", "p999", "max", "cpu", "statements", "writes"] as const
/** In how many rounds each tree had the lowest `k`. */
const lowest = (k: (typeof keys)[number]) => {
  const wins = trees.map(() => 0)
  for (let r = 0; r < rounds; r++) {
    const values = runs.map((rs) => rs[r]![k])
    wins[values.indexOf(Math.min(...values))]!++
  }
  return wins
}
const [p99Wins, cpuWins] = [lowest("p99"), lowest("cpu")]
for (const [i, tree] of trees.entries()) {
  const figures = keys.map((k) => {
    const m = median(runs[i]!.map((s) => s[k]))
    const pairwise = median(runs[i]!.map((s, r) => s[k] / runs[0]![r]![k]))
    return `${k} ${fmt(m)} (${pairwise.toFixed(2)}x)`
  })
  console.log(`${tree}: ${figures.join(", ")} (ms; cpu, statements, writes: an order); lowest p99 in ${p99Wins[i]}/${rounds} rounds, lowest CPU in ${cpuWins[i]}/${rounds}`)
}
process.exit(0)
