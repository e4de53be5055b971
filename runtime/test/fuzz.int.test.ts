/**
 * Fuzzing through real connections: the runtime runs as its own process (as a user runs it), the
 * fuzz load goes to it over MQTT, and the memory bound is on that process alone, measured on
 * `/healthz?gc=1` after a full collection (it runs with --expose-gc).
 */
import { describe, expect, it } from "vitest"
import fc from "fast-check"
import type { DatabaseSync } from "node:sqlite"
import mqtt, { type MqttClient } from "mqtt"
import { Process } from "@baton/testkit"
import { getJson, sleep } from "./support.ts"

/** Fuzz cases per run; raise for a soak run. */
const cases = Number(process.env.BATON_FUZZ_CASES ?? 150)
/** The runtime's memory is read at the start and every `step` cases; the first step warms it up. */
const step = Math.max(50, Math.ceil(cases / 10))
/** Growth of the runtime's V8 heap after a collection, from the end of the warm-up to the end. */
const heapGrowthMb = 32
/**
 * The runtime's resident memory at the end. It rises from about 210 MB to a plateau of about
 * 360-370 MB within the first few thousand cases (V8 keeps the heap it grew to for the large
 * payloads, not what it holds) and stays there up to 30,000 cases at least.
 */
const rssMb = 512
const maxPayloadBytes = 16 * 1024

const validOrder = fc.record({ n: fc.integer({ min: 1, max: 3 }), sku: fc.constantFrom("BOOK-1", "BOOK-2") }).map((o) => ({
  kind: "valid" as const,
  topic: "initiate/place-order",
  id: crypto.randomUUID(),
  payload: (id: string) => Buffer.from(JSON.stringify({ id, type: "place-order", data: { customerId: `fz-${id}`, email: "f@example.com", items: [{ sku: o.sku, qty: o.n, price: 1 }], payment: { card: "4242424242424242" } } }))
}))

const nested = (depth: number) => "[".repeat(depth) + "]".repeat(depth)

/** Bad input for the ingress: it must be refused, recorded and published as a rejection. */
const badInitiating = fc
  .oneof(
    fc.uint8Array({ minLength: 1, maxLength: 300 }).map((b) => Buffer.from(b)),
    fc.string({ maxLength: 200 }).map((s) => Buffer.from(`{${s}`)),
    fc.integer({ min: 100, max: 20_000 }).map((d) => Buffer.from(nested(d))),
    fc.integer({ min: maxPayloadBytes + 1, max: 4 * maxPayloadBytes }).map((n) => Buffer.from(JSON.stringify({ pad: "x".repeat(n) }))),
    fc.record({ customerId: fc.oneof(fc.integer(), fc.constant(null)), email: fc.boolean(), items: fc.string(), payment: fc.array(fc.integer()) }).map((o) => Buffer.from(JSON.stringify(o))),
    fc.constant(Buffer.from([0x7b, 0x22, 0xc3, 0x28, 0x22, 0x3a, 0x31, 0x7d])),
    fc.jsonValue({ maxDepth: 4 }).filter((j) => typeof j !== "object" || j === null || Array.isArray(j)).map((j) => Buffer.from(JSON.stringify(j)))
  )
  .map((payload) => ({ kind: "bad" as const, topic: "initiate/place-order", payload }))

/** Publishes the broker refuses (topic, ACL or size): the client is disconnected, nothing reaches a processor. */
const refused = fc
  .oneof(
    fc.constantFrom("#", "+/x", "initiate/#", "initiate/+", "events/+/y", "$SYS/broker/uptime", "events/order-created", "accepted/place-order", "errors/initiate/place-order", "reply/someone/1", "a/b/c/d/e/f/g/h/i/j"),
    fc.stringMatching(/^[a-z]{1,5}(\/[a-z]{1,5}){0,3}$/).filter((t) => !t.startsWith("initiate"))
  )
  .map((topic) => ({ kind: "refused" as const, topic, payload: Buffer.from("{}") }))

const unknownTopic = fc.stringMatching(/^[a-z]{1,10}$/).filter((n) => n !== "place-order").map((name) => ({ kind: "bad" as const, topic: `initiate/${name}`, payload: Buffer.from("{}") }))

interface Memory {
  readonly cases: number
  readonly heapUsedMb: number
  readonly rssMb: number
}

/** The runtime's own memory after a full collection, as it reports it. */
const memoryOf = async (httpPort: number, cases: number): Promise<Memory> => {
  const { memory } = (await getJson(httpPort, "/healthz?gc=1")).body as { memory: { heapUsedMb: number; rssMb: number } }
  return { cases, heapUsedMb: memory.heapUsedMb, rssMb: memory.rssMb }
}

describe("fuzzing through real connections", () => {
  it("stays up with bounded memory, completes every valid order and records every rejection with a reason", { timeout: 60_000 + cases * 30 }, () =>
    Process.onDataDir(async ({ dataDir, start }) => {
      const running = await start({ BATON_MAX_PAYLOAD_BYTES: String(maxPayloadBytes), NODE_OPTIONS: "--expose-gc" })
      const url = `mqtt://127.0.0.1:${running.mqttPort}`
      const actions = fc.sample(fc.oneof({ weight: 3, arbitrary: validOrder }, { weight: 4, arbitrary: badInitiating }, { weight: 2, arbitrary: refused }, { weight: 1, arbitrary: unknownTopic }), cases)
      const memory: Array<Memory> = [await memoryOf(running.httpPort, 0)]
      let client: MqttClient = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0 })
      const valid: Array<string> = []
      let bad = 0
      for (const [i, a] of actions.entries()) {
        if (i % step === 0 && i > 0) memory.push(await memoryOf(running.httpPort, i))
        if (a.kind === "refused") {
          // A refused publish costs the client its connection (MQTT 3.1.1 has no negative PUBACK).
          const own = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0 })
          const closed = new Promise<void>((r) => own.once("close", () => r()))
          own.publish(a.topic, a.payload, { qos: 1 })
          await Promise.race([closed, sleep(2000)])
          own.end(true)
          continue
        }
        if (!client.connected) client = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0 })
        if (a.kind === "valid") {
          valid.push(a.id)
          await client.publishAsync(a.topic, a.payload(a.id), { qos: 1 })
        } else {
          bad++
          await client.publishAsync(a.topic, a.payload, { qos: 1 })
        }
      }
      const read = <A>(f: (db: DatabaseSync) => A) => Process.readStore(dataDir, f)
      const count = (sql: string) => read((db) => Process.count(db, sql))
      const until = Date.now() + 30_000 + cases * 5
      while ((count("SELECT COUNT(*) FROM shipments") < valid.length || count("SELECT COUNT(*) FROM rejections") < bad) && Date.now() < until) await sleep(50)

      // Every valid order completed, once.
      const shipped = read((db) => db.prepare("SELECT o.correlation_id AS c FROM orders o JOIN shipments s ON s.order_id = o.id").all()).map((r) => String(r.c))
      expect(shipped.sort()).toEqual([...valid].sort())
      // Every bad initiating event was recorded with a readable reason; nothing else was.
      const rejections = read((db) => db.prepare("SELECT kind, reason FROM rejections").all())
      expect(rejections).toHaveLength(bad)
      for (const r of rejections) expect(String(r.reason).length).toBeGreaterThan(10)
      // Refused publishes never reached a processor, and were counted.
      const errors = await getJson(running.httpPort, "/errors")
      expect(errors.body.security["publish-refused"]).toBe(actions.filter((a) => a.kind === "refused").length)
      expect(count("SELECT COUNT(*) FROM inbox WHERE status <> 'done'")).toBe(0)
      // Still up; the runtime's memory bounded once the load has settled.
      client.end(true)
      await sleep(1000)
      expect((await getJson(running.httpPort, "/healthz")).status).toBe(200)
      memory.push(await memoryOf(running.httpPort, cases))
      const trend = memory.map((m) => `${m.cases}: heap ${m.heapUsedMb} MB, rss ${m.rssMb} MB`).join("; ")
      if (process.env.BATON_TEST_LOG === "1") console.log(`runtime memory after n cases: ${trend}`)
      const [warm, last] = [memory[1]!, memory.at(-1)!]
      expect(last.heapUsedMb - warm.heapUsedMb, `heap growth; ${trend}`).toBeLessThan(heapGrowthMb)
      expect(last.rssMb, `rss; ${trend}`).toBeLessThan(rssMb)
    })
  )
})
