/**
 * Live QoS 1 messages of one topic, published one at a time (each after its
 * PUBACK), a retained one among them, reach a subscriber (clean or persistent) in publish order,
 * when the PUBACK comes before the publish (Aedes' own order; EmbeddedBroker: a publish `beforeAck`
 * made durable, the runtime's ingress). Red before the Aedes patch's storeRetained order (on disk
 * and Redis, every run here; main too): the retained one waited for its store while the next was
 * stored for the sessions and forwarded first.
 */
import { afterAll, describe, expect, it } from "vitest"
import mqtt from "mqtt"
import { EmbeddedBroker } from "@baton/broker-aedes"
import { aedesBroker, aedesPersistence, freshSessions, type Kind } from "./sessions.ts"

const cleanup: Array<() => unknown> = []
afterAll(async () => {
  for (const c of cleanup) await c()
})

describe.each(["memory", "redis", "disk"] as const satisfies ReadonlyArray<Kind>)("%s store", (kind) => {
  it.each([false, true])("live QoS 1, every 3rd retained, one at a time: in publish order (clean subscriber %s)", async (clean) => {
    const { url, close } = await aedesBroker({ persistence: aedesPersistence(kind, cleanup) }, true)
    const sub = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clientId: `rr-${kind}-${clean}`, clean })
    const pub = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clientId: "pub" })
    try {
      await sub.subscribeAsync("p/#", { qos: 1 })
      const n = 600
      const got: Array<number> = []
      const all = new Promise<void>((resolve) =>
        sub.on("message", (_t, payload) => {
          got.push(Number(String(payload)))
          if (got.length === n) resolve()
        })
      )
      for (let i = 0; i < n; i++) await pub.publishAsync("p/x", String(i), { qos: 1, retain: i % 3 === 0 })
      await all
      const firstOut = got.findIndex((x, i) => x !== i)
      expect(firstOut === -1 ? "in order" : `out of order from #${firstOut}: ${got.slice(Math.max(0, firstOut - 2), firstOut + 3).join(", ")}`).toBe("in order")
    } finally {
      pub.end(true)
      sub.end(true)
      await close()
    }
  }, 60_000)
})

describe.each(["disk", "redis"] as const)("EmbeddedBroker, %s sessions, a publish beforeAck made durable", (kind) => {
  it.each([false, true])("live QoS 1, every 3rd retained, one at a time: in publish order (clean subscriber %s)", async (clean) => {
    const broker = await EmbeddedBroker.start({
      host: "127.0.0.1",
      mqttPort: 0,
      sessions: freshSessions(kind, cleanup),
      beforeAck: (_clientId, topic) => (topic.startsWith("i/") ? Promise.resolve() : undefined)
    })
    const url = `mqtt://127.0.0.1:${broker.mqttPort}`
    const sub = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clientId: `rre-${kind}-${clean}`, clean })
    const pub = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clientId: "pub" })
    try {
      await sub.subscribeAsync("i/#", { qos: 1 })
      const n = 600
      const got: Array<number> = []
      const all = new Promise<void>((resolve) =>
        sub.on("message", (_t, payload) => {
          got.push(Number(String(payload)))
          if (got.length === n) resolve()
        })
      )
      for (let i = 0; i < n; i++) await pub.publishAsync("i/x", String(i), { qos: 1, retain: i % 3 === 0 })
      await all
      const firstOut = got.findIndex((x, i) => x !== i)
      expect(firstOut === -1 ? "in order" : `out of order from #${firstOut}: ${got.slice(Math.max(0, firstOut - 2), firstOut + 3).join(", ")}`).toBe("in order")
    } finally {
      pub.end(true)
      sub.end(true)
      await broker.close()
    }
  }, 60_000)
})
