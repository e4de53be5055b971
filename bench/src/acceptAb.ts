/**
 * `node bench/src/acceptAb.ts <rate> <count> <rounds> <tree> [<tree> ...]`: the accept scenario of
 * `bench/src/scenarios/latency.ts` (publish → PUBACK of `initiate/place-order`, a bare order, at a
 * fixed rate, timed from each publish's scheduled send) on each tree's own runtime
 * (`<tree>/runtime/src/main.ts`, its own process on a fresh data folder, after the same warm-up of
 * `BENCH_WARMUP` orders), in interleaved rounds, so that a change is measured against a base tree
 * on the same machine at the same time. Besides the latencies, the runtime's CPU per order (user +
 * system of the process, every thread, from /proc; and of its event loop's thread alone: times the
 * rate, how busy the loop was) from the first publish until the flows of the
 * accepted orders are done (the inbox's done marks stop for 300 ms; nothing subscribes to their
 * events, as in latency.ts), and its store's statements and write syscalls per order over the same
 * span: counters that the machine's other load disturbs much less than the percentiles.
 * Prints each run, then per tree the medians, the pairwise ratios to the first tree's and in how
 * many rounds each tree had the lowest p99 and CPU per order (`interleave.ts`).
 * A tree given as `<tree>#mosquitto`, `<tree>#aedes` or `<tree>#aedes-memory` runs against an external
 * broker of the run's own (`externalBroker.ts`, through `BATON_BROKER_URL`) and the orders are
 * published there: the PUBACK timed is then that broker's (Mosquitto's at once; Baton's own broker's
 * once stored for the runtime's persistent ingress session), not the runtime's after its ingress log
 * commit. The broker process's CPU per order is given too.
 * `BATON_AB_TREE_ENV`, as ab.ts's (`treeEnvs`): one set of `NAME=value` words per tree argument, separated by `|`,
 * the runtime's environment for that arm alone (`. .` with `BATON_AB_TREE_ENV="|BATON_SQLITE_MAX_BATCH=8"`).
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import mqtt from "mqtt"
import { Process } from "@baton/testkit"
import { interleave, statements, writes } from "./interleave.ts"
import { externalBroker } from "./externalBroker.ts"
import { cpuMs, noDelay, sleep, treeEnvs, warmup, withEnv } from "./lib.ts"
import { paced, tracker, type LatencySummary } from "./pacing.ts"
import { order, placeOrders } from "./scenarios/orders.ts"

const [rateArg = "1000", countArg = "3000", roundsArg = "4", ...trees] = process.argv.slice(2)
if (trees.length === 0) {
  console.error("usage: node bench/src/acceptAb.ts <rate> <count> <rounds> <tree> [<tree> ...]")
  process.exit(2)
}
const [rate, count, rounds] = [Number(rateArg), Number(countArg), Number(roundsArg)]

/** Done marks so far (the inbox's settles, `/healthz?statements=1`). */
const doneMarks = async (httpPort: number): Promise<number> =>
  (((await (await fetch(`http://127.0.0.1:${httpPort}/healthz?statements=1`)).json()) as { statementTexts?: ReadonlyArray<{ text: string; count: number }> }).statementTexts ?? [])
    .filter((t) => /^(WITH s AS \()?UPDATE inbox SET status/.test(t.text))
    .reduce((n, t) => n + t.count, 0)

/**
 * Once the flows the accepted orders started are done: the inbox's done marks have not moved for
 * 300 ms (at most 30 s; as ab.ts's BATON_AB_DRAIN). Nothing subscribes to their events, as in latency.ts.
 */
const settled = async (httpPort: number): Promise<void> => {
  const t0 = performance.now()
  let [last, lastAt] = [-1, t0]
  while (performance.now() - lastAt < 300 && performance.now() - t0 < 30_000) {
    const n = await doneMarks(httpPort)
    if (n !== last) [last, lastAt] = [n, performance.now()]
    await sleep(20)
  }
}

/** CPU time of a process's main thread (its event loop) so far, in ms, from /proc (Linux; USER_HZ ticks of 10 ms). */
const loopMs = (pid: number): number => {
  const fields = readFileSync(`/proc/${pid}/task/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
  return (Number(fields[11]) + Number(fields[12])) * 10
}

type Run = LatencySummary & { readonly cpu: number; readonly loop: number; readonly statements: number; readonly writes: number; readonly broker: number }

const envs = treeEnvs(process.env.BATON_AB_TREE_ENV, trees.length)

const acceptOn = async (spec: string, index: number): Promise<Run> => {
  const [tree = spec, variant] = spec.split("#")
  const dataDir = mkdtempSync(join(tmpdir(), "baton-accept-ab-"))
  const broker = await externalBroker(variant)
  const env = { BATON_PUBLISH_RATE: "1000000", ...(broker === undefined ? {} : { BATON_BROKER_URL: broker.url }), ...envs[index] }
  const r = await Process.startProcess(dataDir, env, [resolve(tree, "runtime/src/main.ts")])
  const port = broker?.port ?? r.mqttPort!
  try {
    await placeOrders(port, warmup(), "events/order-shipped")
    const client = noDelay(await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0 }))
    const accepted = tracker<number>()
    const pending: Array<Promise<unknown>> = []
    const pid = r.child.pid!
    const brokerMs = () => (broker === undefined ? 0 : cpuMs(broker.pid))
    const [cpu0, loop0, statements0, writes0, broker0] = [cpuMs(pid), loopMs(pid), await statements(r.httpPort), writes(pid), brokerMs()]
    await paced(rate, count, (i, due) => {
      accepted.sent(i, due)
      // A bare order, as latency.ts's accept publishes it (the ingress makes its envelope).
      pending.push(client.publishAsync("initiate/place-order", JSON.stringify(order(i)), { qos: 1 }).then(() => accepted.done(i)))
    })
    await Promise.all(pending)
    await settled(r.httpPort)
    const [cpu, loop, statements1, writes1, broker1] = [(cpuMs(pid) - cpu0) / count, (loopMs(pid) - loop0) / count, await statements(r.httpPort), writes(pid), brokerMs()]
    await client.endAsync()
    return { ...accepted.summary(), cpu, loop, statements: (statements1 - statements0) / count, writes: (writes1 - writes0) / count, broker: (broker1 - broker0) / count }
  } finally {
    await r.kill("SIGTERM")
    await broker?.stop()
    rmSync(dataDir, { recursive: true, force: true })
  }
}

const fmt = (v: number) => v.toFixed(2)
await interleave({
  trees: trees.map((t, i) => withEnv(t, envs[i]!)),
  rounds,
  run: (_, index) => acceptOn(trees[index]!, index),
  line: (s) =>
    `p50 ${fmt(s.p50)} p99 ${fmt(s.p99)} (from the send ${fmt(s.p99Sent)}) p99.9 ${fmt(s.p999)} max ${fmt(s.max)} ms; sender late by at most ${fmt(s.senderLateMax)} ms; an order: CPU ${fmt(s.cpu)} ms (event loop ${fmt(s.loop)}), ${fmt(s.statements)} statements, ${fmt(s.writes)} write syscalls, broker CPU ${fmt(s.broker)} ms`,
  keys: ["p50", "p99", "p999", "max", "cpu", "loop", "statements", "writes", "broker"],
  lowest: ["p99", "cpu"],
  digits: 2
})
process.exit(0)
