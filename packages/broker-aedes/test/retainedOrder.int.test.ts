/**
 * Live QoS 1 messages of one topic, published one at a time (each after its
 * PUBACK), a retained one among them, reach a subscriber (clean or persistent) in publish order,
 * when the PUBACK comes before the publish (Aedes' own order; EmbeddedBroker: a publish `beforeAck`
 * made durable, the runtime's ingress). Red before the Aedes patch's storeRetained order (on disk
 * and Redis, every run here; main too): the retained one waited for its store while the next was
 * stored for the sessions and forwarded first.
 */
import { afterAll, describe, expect, it } from "vitest"
import { EmbeddedBroker } from "@baton/broker-aedes"
import { aedesBroker, aedesPersistence, arrivalOrder, freshSessions, type Kind } from "./sessions.ts"

const cleanup: Array<() => unknown> = []
afterAll(async () => {
  for (const c of cleanup) await c()
})

describe.each(["memory", "redis", "disk"] as const satisfies ReadonlyArray<Kind>)("%s store", (kind) => {
  it.each([false, true])("live QoS 1, every 3rd retained, one at a time: in publish order (clean subscriber %s)", async (clean) => {
    const { url, close } = await aedesBroker({ persistence: aedesPersistence(kind, cleanup) }, true)
    try {
      expect(await arrivalOrder(url, { clientId: `rr-${kind}-${clean}`, clean, filter: "p/#", topic: "p/x", n: 600, retainEvery: 3 })).toBe("in order")
    } finally {
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
    try {
      const url = `mqtt://127.0.0.1:${broker.mqttPort}`
      expect(await arrivalOrder(url, { clientId: `rre-${kind}-${clean}`, clean, filter: "i/#", topic: "i/x", n: 600, retainEvery: 3 })).toBe("in order")
    } finally {
      await broker.close()
    }
  }, 60_000)
})
