/**
 * A persistent session's QoS 2 messages released together (several PUBRELs stored before their
 * PUBCOMPs), on every sessions store: none is left in the session once completed, none is sent
 * again at its next connection. Aedes' memory store (aedes-persistence, patches/
 * aedes-persistence@11.0.0.patch) matched a PUBREL (no brokerId) with the PUBREL stored before it
 * and took its id: the last message stayed queued and went out again, as a new one, at the
 * session's reconnect. The Redis store: pubrelClearRedis.int.test.ts.
 */
import { afterAll, describe, expect, it } from "vitest"
import mqtt from "mqtt"
import { aedesBroker, aedesPersistence, aedesPublish } from "./sessions.ts"
import { until } from "./waits.ts"

const cleanup: Array<() => unknown> = []
afterAll(async () => {
  for (const c of cleanup) await c()
})

type Store = { outgoingStream: (client: { id: string }) => AsyncIterable<unknown> }

describe("a persistent session's QoS 2 messages released together", () => {
  it.each(["memory", "disk", "redis"] as const)("%s sessions store: completed, none is left in the session nor sent again at its reconnect", async (kind) => {
    const persistence = aedesPersistence(kind, cleanup)
    const b = await aedesBroker(persistence === undefined ? {} : { persistence })
    try {
      const opts = { protocolVersion: 4 as const, reconnectPeriod: 0, clean: false, clientId: "pubrel-together" }
      const one = await mqtt.connectAsync(b.url, opts)
      b.clients.push(one)
      await one.subscribeAsync("k/1", { qos: 2 })
      let pubcomps = 0
      one.on("packetsend", (p) => {
        if (p.cmd === "pubcomp") pubcomps++
      })
      const n = 5
      for (let i = 0; i < n; i++) await aedesPublish(b.aedes, String(i), 2)
      await until(() => pubcomps >= n)
      // The PUBCOMPs handled (the broker reads a connection's packets in turn: it answers this one after them).
      await one.subscribeAsync("k/2", { qos: 0 })
      const store = (b.aedes as unknown as { persistence: Store }).persistence
      const left: Array<unknown> = []
      for await (const p of store.outgoingStream({ id: "pubrel-together" })) left.push(p)
      await one.endAsync()
      const two = mqtt.connect(b.url, opts)
      b.clients.push(two)
      const again: Array<string> = []
      // The PUBLISH packets (mqtt.js emits a QoS 2 message at its PUBREL).
      two.on("packetreceive", (p) => {
        if (p.cmd === "publish") again.push(p.payload.toString())
      })
      await new Promise((r) => two.once("connect", r))
      await aedesPublish(b.aedes, "after", 2)
      await until(() => again.includes("after"))
      expect({ left, again }).toEqual({ left: [], again: ["after"] })
    } finally {
      await b.close()
    }
  }, 30_000)
})
