/**
 * Retained QoS 1 messages of one topic, published one at a time (each after its
 * PUBACK, Aedes' own order), leave the last one retained. Red before the Aedes patch's
 * storeRetained order on disk now and then (2 of 6 runs with the CPU loaded, main; a stale value
 * for good, e.g. r/117 kept message 11 of 30): the stores of one topic ran side by side and
 * completed in any order.
 */
import { afterAll, describe, expect, it } from "vitest"
import mqtt from "mqtt"
import { aedesBroker, aedesPersistence, type Kind } from "./sessions.ts"

const cleanup: Array<() => unknown> = []
afterAll(async () => {
  for (const c of cleanup) await c()
})

describe.each(["disk", "redis"] as const satisfies ReadonlyArray<Kind>)("%s store", (kind) => {
  it("retained QoS 1 messages of one topic, one at a time: the last one stays retained", async () => {
    const { url, close } = await aedesBroker({ persistence: aedesPersistence(kind, cleanup) }, true)
    const pub = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clientId: "pub" })
    try {
      const wrong: Array<string> = []
      for (let round = 0; round < 120; round++) {
        for (let i = 0; i < 30; i++) await pub.publishAsync(`r/${round}`, String(i), { qos: 1, retain: true })
      }
      // The stores may still run (the PUBACKs came first): read until every topic has its last
      // message, for up to 20 s; a stale one stays stale.
      for (let attempt = 0; attempt < 40; attempt++) {
        await new Promise((r) => setTimeout(r, 500))
        const late = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0 })
        const got = new Map<string, string>()
        late.on("message", (t, p) => got.set(t, String(p)))
        await late.subscribeAsync("r/#", { qos: 1 })
        await new Promise((r) => setTimeout(r, 300))
        late.end(true)
        wrong.length = 0
        for (let round = 0; round < 120; round++) if (got.get(`r/${round}`) !== "29") wrong.push(`r/${round}: ${got.get(`r/${round}`)}`)
        if (wrong.length === 0) break
      }
      expect(wrong).toEqual([])
    } finally {
      pub.end(true)
      await close()
    }
  }, 60_000)
})
