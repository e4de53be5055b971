/**
 * `node bench/src/restoreAb.ts <disk|redis|memory> <messages> <rounds> <tree> [<tree> ...]`: a
 * persistent session's restore on each tree's own embedded broker (`<tree>/packages/broker-aedes`,
 * with that tree's patched Aedes), in interleaved rounds (`interleave.ts`), so that a change to the
 * restore path is measured against a base tree on the same machine at the same time. Per run: a
 * fresh broker and store (`treeBrokers.ts`), `<messages>` QoS 1 messages queued for an offline
 * session, then the time from its reconnect until it has got them all (it acknowledges each), and
 * this process's CPU over that span (the broker and the client both run here).
 */
import mqtt from "mqtt"
import { interleave } from "./interleave.ts"
import { kinds, load, type Kind } from "./treeBrokers.ts"

const [kindArg = "disk", countArg = "4000", roundsArg = "6", ...trees] = process.argv.slice(2)
if (trees.length === 0 || !kinds.includes(kindArg)) {
  console.error("usage: node bench/src/restoreAb.ts <disk|redis|memory> <messages> <rounds> <tree> [<tree> ...]")
  process.exit(2)
}
const count = Number(countArg)
const withBroker = await load(trees, kindArg as Kind)

const run = (tree: string): Promise<{ ms: number; cpuMs: number }> =>
  withBroker(tree, async (broker, url) => {
    const opts = { protocolVersion: 4 as const, reconnectPeriod: 0, clean: false, clientId: "restore-ab" }
    const first = await mqtt.connectAsync(url, opts)
    await first.subscribeAsync("r/#", { qos: 1 })
    await first.endAsync()
    for (let i = 0; i < count; i++) await broker.publish("r/1", String(i), 1)
    let got = 0
    const t0 = performance.now()
    const cpu0 = process.cpuUsage()
    const all = Promise.withResolvers<void>()
    const again = mqtt.connect(url, opts)
    again.on("message", () => {
      if (++got === count) all.resolve()
    })
    await all.promise
    const ms = performance.now() - t0
    const cpu = process.cpuUsage(cpu0)
    await again.endAsync()
    return { ms, cpuMs: (cpu.user + cpu.system) / 1000 }
  })

await interleave({
  trees,
  rounds: Number(roundsArg),
  run,
  line: (r) => `${r.ms.toFixed(0)} ms, CPU ${r.cpuMs.toFixed(0)} ms`,
  keys: ["ms", "cpuMs"],
  lowest: ["ms", "cpuMs"],
  digits: 0
})
process.exit(0)
