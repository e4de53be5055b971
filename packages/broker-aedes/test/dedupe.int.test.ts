/**
 * Aedes' dedupe (a client gets a message once even if several of its subscriptions match it) must
 * not drop a message the client has not had: a QoS 1 message is emitted only after a store step,
 * so a QoS 0 one published after it (another publisher, a reply) can reach the subscriber first.
 * Before the Aedes patch's window (patches/aedes@1.2.0.patch, client.js `dedupe`: the counters
 * seen recently, and the last one), a high-water mark per broker id, the QoS 1 one was then
 * dropped as a "duplicate". And a duplicate dropped for
 * a persistent session cleared a stored copy by the live packet's message id (undefined): in the
 * memory store another message's copy (lost), or the delivered one's before its update ("no such
 * packet", the client disconnected).
 *
 * The property: for all sets of concurrent publishers (each publishing in sequence, each awaited,
 * random topics and QoS 0/1) and a subscriber with random overlapping subscriptions (clean or
 * persistent, memory sessions store): every QoS 1 message its subscriptions match arrives, none
 * arrives twice, and each publisher's messages arrive in its order. `BATON_PROPERTY_RUNS`
 * (default 10) for more runs.
 */
import { describe, expect, it } from "vitest"
import fc from "fast-check"
import mqtt from "mqtt"
import { Topics } from "@baton/core"
import { EmbeddedBroker } from "@baton/broker-aedes"
import { until } from "./waits.ts"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 10)

const start = () => EmbeddedBroker.start({ host: "127.0.0.1", mqttPort: 0, sessions: { kind: "memory" } })

const settle = (ms = 100) => new Promise((r) => setTimeout(r, ms))

const topics = ["p/0", "p/1", "q/0", "q/1"] as const
const filters = ["p/#", "p/+", "p/0", "+/0", "#", "q/1", "+/+"] as const

describe("Aedes dedupe with concurrent publishes", () => {
  // 300: more QoS 0 ones overtake it than the patch's window holds (256 counters), past which a
  // message is delivered unchecked (and still once with overlapping subscriptions: the last one seen).
  it.each([
    [true, 1, ["p/#"]],
    [false, 1, ["p/#"]],
    [true, 300, ["p/#", "p/+"]],
    [false, 300, ["p/#", "p/+"]]
  ])("a QoS 1 message overtaken by QoS 0 ones still arrives, once (clean %s, %s QoS 0, filters %j)", async (clean, overtaking, filters) => {
    const broker = await start()
    const sub = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.mqttPort}`, { protocolVersion: 4, reconnectPeriod: 0, clean, clientId: `dd-${clean}` })
    const got: Array<string> = []
    sub.on("message", (_t, p) => got.push(p.toString()))
    try {
      await sub.subscribeAsync(Object.fromEntries(filters.map((f) => [f, { qos: 1 as const }])))
      const zeros = Array.from({ length: overtaking }, (_, i) => `b${i}`)
      await Promise.all([broker.publish("p/0", "a", 1), ...zeros.map((b) => broker.publish("p/1", b, 0))])
      await until(() => got.includes("a") && zeros.every((b) => got.includes(b)))
      await settle(50)
      expect([...got].sort()).toEqual(["a", ...zeros].sort())
    } finally {
      await sub.endAsync()
      await broker.close()
    }
  })

  it("overlapping subscriptions of a persistent session: each message once, none lost, none left for the next session", async () => {
    const broker = await start()
    const url = `mqtt://127.0.0.1:${broker.mqttPort}`
    const opts = { protocolVersion: 4 as const, reconnectPeriod: 0, clean: false, clientId: "dd-overlap" }
    const got: Array<string> = []
    const errors: Array<string> = []
    let sub = await mqtt.connectAsync(url, opts)
    sub.on("message", (_t, p) => got.push(p.toString()))
    try {
      await sub.subscribeAsync({ "p/#": { qos: 1 }, "p/+": { qos: 1 } })
      let closed = false
      sub.on("close", () => (closed = true))
      const sent: Array<string> = []
      const publishes: Array<Promise<void>> = []
      for (let i = 0; i < 50; i++) {
        sent.push(`m${i}`)
        publishes.push(broker.publish(`p/${i % 3}`, `m${i}`, i % 4 === 0 ? 0 : 1))
      }
      await Promise.all(publishes)
      await until(() => sent.every((s) => got.includes(s)))
      await settle()
      if (closed) errors.push("disconnected")
      expect(errors).toEqual([])
      expect(sent.filter((s) => !got.includes(s))).toEqual([])
      expect(got.filter((s, i) => got.indexOf(s) !== i)).toEqual([])
      // Every message acknowledged: nothing stored is delivered again on the next session.
      await sub.endAsync()
      const again: Array<string> = []
      sub = await mqtt.connectAsync(url, opts)
      sub.on("message", (_t, p) => again.push(p.toString()))
      await settle(300)
      expect(again).toEqual([])
    } finally {
      await sub.endAsync()
      await broker.close()
    }
  }, 30_000)

  // MQTT 3.1.1 3.3.5: a message matching several of a client's subscriptions is delivered at the
  // maximum QoS of those. A QoS 1 message delivered at QoS 0 (the QoS 0 subscription's copy first,
  // the QoS 1 one dropped as its duplicate) has no retry, and a persistent session's stored copy,
  // never updated nor acknowledged, was delivered again on the next session.
  it.each([
    [{ "p/#": { qos: 0 }, "p/+": { qos: 1 } }],
    [{ "p/+": { qos: 1 }, "p/#": { qos: 0 } }],
    [{ "p/0": { qos: 0 }, "p/#": { qos: 1 } }]
  ])("overlapping QoS 0 and QoS 1 subscriptions %j of a persistent session: a QoS 1 message arrives at QoS 1, once, none left for the next session", async (subscriptions) => {
    const broker = await start()
    const url = `mqtt://127.0.0.1:${broker.mqttPort}`
    const opts = { protocolVersion: 4 as const, reconnectPeriod: 0, clean: false, clientId: "dd-maxqos" }
    const got: Array<string> = []
    let sub = await mqtt.connectAsync(url, opts)
    sub.on("message", (_t, p, packet) => got.push(`${p.toString()} qos ${packet.qos}`))
    try {
      await sub.subscribeAsync(subscriptions as Record<string, { qos: 0 | 1 }>)
      await broker.publish("p/0", "a", 1)
      await until(() => got.length > 0)
      await settle()
      expect(got).toEqual(["a qos 1"])
      await sub.endAsync()
      const again: Array<string> = []
      sub = mqtt.connect(url, opts)
      sub.on("message", (_t, p) => again.push(p.toString()))
      await settle(300)
      expect(again).toEqual([])
    } finally {
      await sub.endAsync()
      await broker.close()
    }
  })

  it("for all concurrent publishers and overlapping subscriptions: every QoS 1 match arrives, none twice, each publisher's in order", async () => {
    const publish = fc.record({ topic: fc.constantFrom(...topics), qos: fc.constantFrom(0 as const, 1 as const) })
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(publish, { minLength: 1, maxLength: 20 }), { minLength: 1, maxLength: 4 }),
        fc.uniqueArray(fc.record({ filter: fc.constantFrom(...filters), qos: fc.constantFrom(0 as const, 1 as const) }), {
          minLength: 1,
          maxLength: 4,
          selector: (s) => s.filter
        }),
        fc.boolean(),
        async (publishers, subscriptions, clean) => {
          const broker = await start()
          const sub = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.mqttPort}`, { protocolVersion: 4, reconnectPeriod: 0, clean, clientId: "dd-prop" })
          const got: Array<string> = []
          let closed = false
          sub.on("message", (_t, p) => got.push(p.toString()))
          sub.on("close", () => (closed = true))
          try {
            await sub.subscribeAsync(Object.fromEntries(subscriptions.map((s) => [s.filter, { qos: s.qos }])))
            await Promise.all(
              publishers.map(async (steps, p) => {
                for (let n = 0; n < steps.length; n++) await broker.publish(steps[n]!.topic, `${p}:${n}`, steps[n]!.qos)
              })
            )
            const matched = (t: string) => subscriptions.some((s) => Topics.matches(s.filter, t))
            const wanted = publishers.flatMap((steps, p) => steps.flatMap((s, n) => (s.qos === 1 && matched(s.topic) ? [`${p}:${n}`] : [])))
            await until(() => wanted.every((w) => got.includes(w)), 5_000)
            await settle(50)
            expect(closed).toBe(false)
            expect(wanted.filter((w) => !got.includes(w))).toEqual([])
            expect(got.filter((w, i) => got.indexOf(w) !== i)).toEqual([])
            for (let p = 0; p < publishers.length; p++) {
              const ns = got.filter((w) => w.startsWith(`${p}:`)).map((w) => Number(w.split(":")[1]))
              expect(ns).toEqual([...ns].sort((a, b) => a - b))
            }
          } finally {
            await sub.endAsync()
            await broker.close()
          }
        }
      ),
      { numRuns: runs }
    )
  }, 120_000)
})
