/**
 * `node bench/src/frontProxy.ts <rate> <count> <rounds> [<tree>]`: how an accept's PUBACK would fare
 * if it did not wait for the runtime's main thread. Each round starts `<tree>`'s runtime (embedded
 * broker, its own process, after the same warm-up as `acceptAb.ts`) and a stand-in front
 * (`peers/front.ts`: Baton's broker alone, a JSON parse and a group-committed SQLite append of its
 * own before each PUBACK), and publishes each scheduled order to both at `<rate>` (the same bare
 * order as the accept scenario), timing each PUBACK from the scheduled send (`pacing.ts`). The
 * runtime takes the accept load as it does today (its processors run the orders' flows), so the
 * stand-in's PUBACKs meet the machine's real contention; since the runtime still does its own broker
 * and ingress work, the stand-in's figures are, if anything, pessimistic. In alternate rounds the
 * stand-in also runs alone (the runtime idle) for its floor. Prints each run, then the medians.
 * `FRONT_PROXY_SPLIT=1`: the runtime's orders come from a second process of this script (its own
 * client, on the same schedule), so that one client's lateness in sending to two does not count in
 * the stand-in's figures (the machine then runs two load generators: contention a little higher).
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import mqtt from "mqtt"
import { Process } from "@baton/testkit"
import { child, median, noDelay, warmup } from "./lib.ts"
import { paced, tracker, type LatencySummary } from "./pacing.ts"
import { order, placeOrders } from "./scenarios/orders.ts"

const [rateArg = "1000", countArg = "3000", roundsArg = "4", tree = "."] = process.argv.slice(2)
const [rate, count, rounds] = [Number(rateArg), Number(countArg), Number(roundsArg)]
const split = process.env.FRONT_PROXY_SPLIT === "1"

/** Publishes `count` bare orders at `rate` to each port at once; the PUBACK latencies per port. */
const acceptOn = async (ports: ReadonlyArray<number>): Promise<ReadonlyArray<LatencySummary>> => {
  const clients = await Promise.all(ports.map(async (port) => noDelay(await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0 }))))
  const trackers = ports.map(() => tracker<number>())
  const pending: Array<Promise<unknown>> = []
  await paced(rate, count, (i, due) => {
    const payload = JSON.stringify(order(i))
    clients.forEach((client, c) => {
      trackers[c]!.sent(i, due)
      pending.push(client.publishAsync("initiate/place-order", payload, { qos: 1 }).then(() => trackers[c]!.done(i)))
    })
  })
  await Promise.all(pending)
  await Promise.all(clients.map((c) => c.endAsync()))
  return trackers.map((t) => t.summary())
}

// The second process of FRONT_PROXY_SPLIT: publishes to PROXY_PORT from PROXY_START_AT (epoch ms) on, prints its summary.
if (process.env.PROXY_PORT !== undefined) {
  console.log("ready {}")
  await new Promise((ok) => setTimeout(ok, Number(process.env.PROXY_START_AT) - Date.now()))
  const [s] = await acceptOn([Number(process.env.PROXY_PORT)])
  console.log(`done ${JSON.stringify(s)}`)
  process.exit(0)
}

/** `ports` paced in this process and `splitPort` in a second one, on the same schedule; the summaries in that order. */
const acceptSplit = async (ports: ReadonlyArray<number>, splitPort: number): Promise<ReadonlyArray<LatencySummary>> => {
  const startAt = Date.now() + 1500
  const other = await child("frontProxy.ts", { PROXY_PORT: String(splitPort), PROXY_START_AT: String(startAt) }, [rateArg, countArg])
  await new Promise((ok) => setTimeout(ok, startAt - Date.now()))
  const here = await acceptOn(ports)
  while (!/^done /m.test(other.output())) await new Promise((ok) => setTimeout(ok, 20))
  const there = JSON.parse(/^done (\{.*\})$/m.exec(other.output())![1]!) as LatencySummary
  await other.stop()
  return [there, ...here]
}

const line = (s: LatencySummary) => `p50 ${s.p50.toFixed(2)} p99 ${s.p99.toFixed(2)} p99.9 ${s.p999.toFixed(2)} max ${s.max.toFixed(2)} ms (sender late by at most ${s.senderLateMax.toFixed(2)})`
const runs = { runtime: [] as Array<LatencySummary>, front: [] as Array<LatencySummary>, alone: [] as Array<LatencySummary> }
for (let round = 0; round < rounds; round++) {
  const dataDir = mkdtempSync(join(tmpdir(), "baton-front-proxy-"))
  const r = await Process.startProcess(dataDir, { BATON_PUBLISH_RATE: "1000000" }, [resolve(tree, "runtime/src/main.ts")])
  const front = await child("peers/front.ts", { FRONT_DB: join(dataDir, "front.db") })
  try {
    await placeOrders(r.mqttPort!, warmup(), "events/order-shipped")
    const frontPort = front.info.port as number
    // The stand-in warmed up on the same number of accepts, unmeasured.
    await acceptOn([frontPort]).then(() => undefined)
    const both = async () => {
      const [runtime, beside] = split ? await acceptSplit([frontPort], r.mqttPort!) : await acceptOn([r.mqttPort!, frontPort])
      runs.runtime.push(runtime!)
      runs.front.push(beside!)
      console.log(`round ${round + 1} runtime's PUBACK: ${line(runtime!)}\nround ${round + 1} stand-in front beside it: ${line(beside!)}`)
    }
    const alone = async () => {
      const [s] = await acceptOn([frontPort])
      runs.alone.push(s!)
      console.log(`round ${round + 1} stand-in front alone: ${line(s!)}`)
    }
    // The runtime's flows of the paced orders settle before the stand-in runs alone.
    if (round % 2 === 0) await both().then(() => new Promise((ok) => setTimeout(ok, 3000))).then(alone)
    else await alone().then(both)
  } finally {
    await front.stop()
    await r.kill("SIGTERM")
    rmSync(dataDir, { recursive: true, force: true })
  }
}
for (const [name, rs] of Object.entries(runs)) {
  const m = (f: (s: LatencySummary) => number) => median(rs.map(f)).toFixed(2)
  const range = (f: (s: LatencySummary) => number) => `${Math.min(...rs.map(f)).toFixed(2)}-${Math.max(...rs.map(f)).toFixed(2)}`
  console.log(`${name}: median p50 ${m((s) => s.p50)} p99 ${m((s) => s.p99)} [${range((s) => s.p99)}] p99.9 ${m((s) => s.p999)} [${range((s) => s.p999)}] max ${m((s) => s.max)} ms`)
}
process.exit(0)
