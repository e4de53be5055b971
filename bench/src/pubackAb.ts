/**
 * `node bench/src/pubackAb.ts <disk|redis|memory> <messages> <rounds> <tree> [<tree> ...]`: QoS 1
 * pub/sub through each tree's own embedded broker (`<tree>/packages/broker-aedes`, with that tree's
 * patched Aedes), in interleaved rounds (`interleave.ts`): what a PUBACK after the store
 * (`ackStored`) costs a publisher that the ingress does not serve. Per run: a fresh broker and store,
 * an offline persistent session and a live subscriber on the topic (so every message is stored and
 * forwarded), then `<messages>` QoS 1 publishes 100 in flight (until every PUBACK and every live
 * delivery: messages/s), then 500 one at a time (the mean PUBACK round trip, µs), and this
 * process's CPU per message over both (broker and clients run here).
 * `PUBACK_AB_LIVE=persistent`: the live subscriber is a persistent session too (`clean: false`), so
 * each message is also updated in its store before it goes out and cleared by its PUBACK (the
 * path the disk store's per-client order, patches/aedes-persistence-level@9.2.0.patch, serves).
 */
import mqtt from "mqtt"
import { interleave } from "./interleave.ts"
import { kinds, load, type Kind } from "./treeBrokers.ts"

const [kindArg = "disk", countArg = "5000", roundsArg = "6", ...trees] = process.argv.slice(2)
if (trees.length === 0 || !kinds.includes(kindArg)) {
  console.error("usage: node bench/src/pubackAb.ts <disk|redis|memory> <messages> <rounds> <tree> [<tree> ...]")
  process.exit(2)
}
const count = Number(countArg)
const serial = 500
const persistentLive = process.env.PUBACK_AB_LIVE === "persistent"
const withBroker = await load(trees, kindArg as Kind)

const run = (tree: string): Promise<{ rate: number; rttUs: number; cpuUs: number }> =>
  withBroker(tree, async (_, url) => {
    const base = { protocolVersion: 4 as const, reconnectPeriod: 0 }
    const offline = await mqtt.connectAsync(url, { ...base, clean: false, clientId: "puback-ab-offline" })
    await offline.subscribeAsync("p/#", { qos: 1 })
    await offline.endAsync()
    const sub = await mqtt.connectAsync(url, persistentLive ? { ...base, clean: false, clientId: "puback-ab-live" } : base)
    await sub.subscribeAsync("p/#", { qos: 1 })
    const pub = await mqtt.connectAsync(url, base)
    let got = 0
    let all = Promise.withResolvers<void>()
    let want = count
    sub.on("message", () => {
      if (++got === want) all.resolve()
    })
    const payload = Buffer.alloc(64, 120)
    const cpu0 = process.cpuUsage()
    const t0 = performance.now()
    let next = 0
    await Promise.all(
      Array.from({ length: 100 }, async () => {
        while (next < count) {
          next++
          await pub.publishAsync("p/1", payload, { qos: 1 })
        }
      })
    )
    await all.promise
    const rate = count / ((performance.now() - t0) / 1000)
    got = 0
    want = serial
    all = Promise.withResolvers<void>()
    const t1 = performance.now()
    for (let i = 0; i < serial; i++) await pub.publishAsync("p/1", payload, { qos: 1 })
    const rttUs = ((performance.now() - t1) * 1000) / serial
    await all.promise
    const cpu = process.cpuUsage(cpu0)
    await Promise.all([sub.endAsync(), pub.endAsync()])
    return { rate, rttUs, cpuUs: (cpu.user + cpu.system) / (count + serial) }
  })

await interleave({
  trees,
  rounds: Number(roundsArg),
  run,
  line: (r) => `${r.rate.toFixed(0)} msg/s, PUBACK round trip ${r.rttUs.toFixed(0)} µs, CPU ${r.cpuUs.toFixed(1)} µs/msg`,
  keys: ["rate", "rttUs", "cpuUs"],
  lowest: ["rttUs", "cpuUs"],
  digits: 1
})
process.exit(0)
