/**
 * A persistent session's restore from Redis cut by a SIGKILL of the broker (a process of its own,
 * redisBrokerChild.ts): the restore reads the stored messages a batch at a time and clears each
 * acknowledged one with one script (patches/aedes-persistence-redis@12.0.0.patch). For all numbers
 * of stored messages (across several batches) and all points of the kill (after the k-th message
 * received, 0 to all): across the connection killed and the next one, on a broker restarted on the
 * same store, every message arrives, first deliveries in publish order (again: only what was not
 * acknowledged, as MQTT QoS 1 allows), and once the second connection acknowledged them all the
 * store keeps nothing of them (no list entry, no message, no count). `BATON_PROPERTY_RUNS`
 * (default 4) for more runs.
 */
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { afterAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import mqtt from "mqtt"
import * as TestRedis from "@baton/testkit/redis"
import { firsts, until, within } from "./waits.ts"
import { redisUrl } from "./sessions.ts"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 4)
const child = fileURLToPath(new URL("./redisBrokerChild.ts", import.meta.url))

const cleanup: Array<() => unknown> = []
afterAll(async () => {
  for (const c of cleanup) await c()
})

/** The broker in a child process on the store at `url`; `kill` SIGKILLs it (resolves once it is gone). */
const startBroker = async (url: string) => {
  const proc = spawn(process.execPath, [child, url], { stdio: ["ignore", "pipe", "pipe"] })
  let output = ""
  proc.stderr.on("data", (b: Buffer) => (output += b.toString()))
  const exited = new Promise<void>((r) => proc.once("exit", () => r()))
  const port = await within(
    new Promise<number>((resolve, reject) => {
      proc.stdout.on("data", (b: Buffer) => {
        const m = b.toString().match(/ready (\d+)/)
        if (m !== null) resolve(Number(m[1]))
      })
      void exited.then(() => reject(new Error(`broker exited: ${output}`)))
    }),
    20_000,
    "broker start"
  )
  cleanup.push(() => proc.kill("SIGKILL"))
  return {
    url: `mqtt://127.0.0.1:${port}`,
    kill: async () => {
      proc.kill("SIGKILL")
      await exited
    }
  }
}

/** What the store keeps of the session's messages: its list's entries, the messages and their counts. */
const leftovers = async (prefix: string) => {
  const keys = await TestRedis.keys(redisUrl, prefix)
  return keys.filter((k) => k.startsWith(`${prefix}packet:`) || k.startsWith(`${prefix}outgoing:`)).sort()
}

const opts = { protocolVersion: 4 as const, reconnectPeriod: 0, clean: false, clientId: "crash-restore" }

const crashDuringRestore = async (stored: number, cutAt: number) => {
  const scope = TestRedis.scoped(redisUrl)
  cleanup.push(scope.clean)
  let broker = await startBroker(scope.url)
  const first = await mqtt.connectAsync(broker.url, opts)
  await first.subscribeAsync("k/#", { qos: 1 })
  await first.endAsync()
  const publisher = await mqtt.connectAsync(broker.url, { protocolVersion: 4, reconnectPeriod: 0 })
  // Each one acknowledged by the broker: stored for the session.
  for (let i = 0; i < stored; i++) await publisher.publishAsync("k/1", String(i), { qos: 1 })
  await publisher.endAsync()
  const got: Array<number> = []
  const killed = mqtt.connect(broker.url, opts)
  killed.on("error", () => {})
  const cut = cutAt % (stored + 1)
  let dying: Promise<void> | undefined
  const kill = () => (dying ??= broker.kill())
  if (cut === 0) killed.once("connect", () => void kill())
  killed.on("message", (_t, p) => {
    got.push(Number(p.toString()))
    if (got.length === cut) void kill()
  })
  await within(
    new Promise<void>((r) => killed.once("close", () => r())),
    60_000,
    `the first connection's end (${got.length} of ${stored} received, cut at ${cut})`
  )
  await kill()
  killed.end(true)
  const before = got.length
  broker = await startBroker(scope.url)
  const again = mqtt.connect(broker.url, opts)
  const second: Array<number> = []
  again.on("message", (_t, p) => second.push(Number(p.toString())))
  const all = Array.from({ length: stored }, (_, k) => k)
  await until(() => new Set([...got, ...second]).size === stored, 60_000)
  // Every PUBACK handled (the clears): the store empties.
  let left = await leftovers(scope.prefix)
  for (let t = 0; t < 250 && left.length > 0; t++) {
    await new Promise((r) => setTimeout(r, 20))
    left = await leftovers(scope.prefix)
  }
  await again.endAsync()
  await broker.kill()
  const order = firsts([...got, ...second])
  console.log(`${stored} stored, killed at ${cut}: ${before} received before the kill, ${second.length} after (${left.length} keys left)`)
  return { before, missing: all.filter((k) => !order.includes(k)), order: order.every((n, k) => n === k), secondInOrder: firsts(second).every((n, k, a) => k === 0 || n > a[k - 1]!), left }
}

describe("a redis session's restore cut by a SIGKILL of the broker", () => {
  it("300 stored messages, killed after 150 received: all arrive, in order, and the store empties", async () => {
    const r = await crashDuringRestore(300, 150)
    expect({ missing: r.missing, order: r.order, secondInOrder: r.secondInOrder, left: r.left }).toEqual({ missing: [], order: true, secondInOrder: true, left: [] })
  }, 120_000)

  it("for all numbers of stored messages and kill points: all arrive, in order, and the store empties", async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 400 }), fc.nat(), async (stored, cutAt) => {
        const r = await crashDuringRestore(stored, cutAt)
        expect({ missing: r.missing, order: r.order, secondInOrder: r.secondInOrder, left: r.left }).toEqual({ missing: [], order: true, secondInOrder: true, left: [] })
      }),
      { numRuns: runs }
    )
  }, 300_000)
})
