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
 * Prints each run, then per tree the medians, the pairwise ratios to the first tree's and in how
 * many rounds each tree had the lowest p99 and CPU per order (`interleave.ts`).
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import mqtt from "mqtt"
import { Process } from "@baton/testkit"
import { interleave, statements, writes } from "./interleave.ts"
import { counter, cpuMs, noDelay, warmup, within } from "./lib.ts"
import { paced, tracker, type LatencySummary } from "./pacing.ts"
import { order, placeOrders } from "./scenarios/orders.ts"

const [rateArg = "1000", countArg = "3000", roundsArg = "4", ...trees] = process.argv.slice(2)
if (trees.length === 0) {
  console.error("usage: node bench/src/acceptAb.ts <rate> <count> <rounds> <tree> [<tree> ...]")
  process.exit(2)
}
const [rate, count, rounds] = [Number(rateArg), Number(countArg), Number(roundsArg)]

type Run = LatencySummary & { readonly cpu: number; readonly statements: number; readonly writes: number }


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

const fmt = (v: number) => v.toFixed(2)
await interleave({
  trees,
  rounds,
  run: acceptOn,
  line: (s) =>
    `p50 ${fmt(s.p50)} p99 ${fmt(s.p99)} (from the send ${fmt(s.p99Sent)}) p99.9 ${fmt(s.p999)} max ${fmt(s.max)} ms; sender late by at most ${fmt(s.senderLateMax)} ms; an order: CPU ${fmt(s.cpu)} ms, ${fmt(s.statements)} statements, ${fmt(s.writes)} write syscalls`,
  keys: ["p50", "p99", "p999", "max", "cpu", "statements", "writes"],
  lowest: ["p99", "cpu"],
  digits: 2
})
process.exit(0)
