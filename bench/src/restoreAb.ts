/**
 * `node bench/src/restoreAb.ts <disk|redis|memory> <messages> <rounds> <tree> [<tree> ...]`: a
 * persistent session's restore on each tree's own embedded broker (`<tree>/packages/broker-aedes`,
 * with that tree's patched Aedes), in interleaved rounds (`interleave.ts`), so that a change to the
 * restore path is measured against a base tree on the same machine at the same time. Per run: a
 * fresh broker and store (a new folder; a new key prefix in `BATON_BENCH_REDIS_URL`, default
 * redis://127.0.0.1:6379/3), `<messages>` QoS 1 messages queued for an offline session, then the
 * time from its reconnect until it has got them all (it acknowledges each), and this process's
 * CPU over that span (the broker and the client both run here).
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import mqtt from "mqtt"
import * as TestRedis from "@baton/testkit/redis"
import { interleave } from "./interleave.ts"

const [kindArg = "disk", countArg = "4000", roundsArg = "6", ...trees] = process.argv.slice(2)
if (trees.length === 0 || !["disk", "redis", "memory"].includes(kindArg)) {
  console.error("usage: node bench/src/restoreAb.ts <disk|redis|memory> <messages> <rounds> <tree> [<tree> ...]")
  process.exit(2)
}
const kind = kindArg as "disk" | "redis" | "memory"
const count = Number(countArg)
const redisUrl = process.env.BATON_BENCH_REDIS_URL ?? "redis://127.0.0.1:6379/3"
type Module = typeof import("@baton/broker-aedes")
const modules = new Map<string, Module>()
for (const tree of trees) modules.set(tree, (await import(resolve(tree, "packages/broker-aedes/src/index.ts"))) as Module)

const run = async (tree: string): Promise<{ ms: number; cpuMs: number }> => {
  const { EmbeddedBroker } = modules.get(tree)!
  const dir = mkdtempSync(join(tmpdir(), "baton-restore-ab-"))
  const scope = TestRedis.scoped(redisUrl)
  const sessions = kind === "disk" ? { kind, dir } : kind === "redis" ? { kind, url: scope.url } : { kind }
  const broker = await EmbeddedBroker.start({ host: "127.0.0.1", mqttPort: 0, sessions } as Parameters<typeof EmbeddedBroker.start>[0])
  const url = `mqtt://127.0.0.1:${broker.mqttPort}`
  const opts = { protocolVersion: 4 as const, reconnectPeriod: 0, clean: false, clientId: "restore-ab" }
  try {
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
  } finally {
    await broker.close()
    rmSync(dir, { recursive: true, force: true })
    if (kind === "redis") await scope.clean()
  }
}

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
