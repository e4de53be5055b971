/**
 * A persistent connection taking over a clean one whose discard of the client id's earlier
 * session is still going on waits for that discard before its restore (Aedes patch, connect.js
 * emptyQueue / discardQueue). Its live messages are held meanwhile; a held QoS 0 one's publisher
 * waits until the restore's stored messages are fixed (client.js, hold / _storedRead). Were they
 * fixed only after the discard, every QoS 0 publish to the session would wait the whole discard,
 * and once Aedes' concurrency (100) of them waited, every other publish of the broker too: a
 * client subscribed to an unrelated topic got nothing until the discard ended. The session still
 * gets its held messages, in order, and none of the discarded session's.
 */
import { afterAll, describe, expect, it } from "vitest"
import mqtt from "mqtt"
import { aedesBroker, aedesPersistence, aedesPublish, type Kind } from "./sessions.ts"
import { until } from "./waits.ts"

const cleanup: Array<() => unknown> = []
afterAll(async () => {
  for (const c of cleanup) await c()
})

describe.each(["memory", "disk"] as Array<Kind>)("QoS 0 traffic while a persistent takeover waits for a clean discard (%s store)", (kind) => {
  it("another client's message and the session's QoS 0 publishes complete in a small part of the discard's time", async () => {
    const { aedes, url, clients, close } = await aedesBroker({ persistence: aedesPersistence(kind, cleanup) })
    const clientId = `discard-held-${kind}`
    const opts = { protocolVersion: 4 as const, reconnectPeriod: 0 }
    try {
      const first = await mqtt.connectAsync(url, { ...opts, clean: false, clientId })
      await first.subscribeAsync("k/#", { qos: 1 })
      await first.endAsync()
      for (let i = 0; i < 2000; i++) await aedesPublish(aedes, `m${i}`, 1)
      // The discard made slow (a loaded store): 1 ms a clear.
      const store = (aedes as unknown as { persistence: { outgoingClearMessageId: (client: { clean: boolean }, packet: unknown) => Promise<unknown> } }).persistence
      const clear = store.outgoingClearMessageId.bind(store)
      store.outgoingClearMessageId = async (client, packet) => {
        if (client.clean) await new Promise((r) => setTimeout(r, 1))
        return clear(client, packet)
      }
      const other = await mqtt.connectAsync(url, { ...opts, clean: true, clientId: `other-${kind}` })
      clients.push(other)
      const otherGot: Array<string> = []
      other.on("message", (_t, p) => otherGot.push(p.toString()))
      await other.subscribeAsync("x/1", { qos: 0 })
      const discards = () => (aedes as unknown as { _discards?: Map<string, unknown> })._discards
      const t0 = performance.now()
      const clean = mqtt.connect(url, { ...opts, clean: true, clientId })
      clients.push(clean)
      await new Promise<void>((resolve) => clean.once("connect", () => resolve()))
      const p = mqtt.connect(url, { ...opts, clean: false, clientId })
      clients.push(p)
      const pGot: Array<string> = []
      p.on("message", (_t, m) => pGot.push(m.toString()))
      await new Promise<void>((resolve) => p.once("connect", () => resolve()))
      await p.subscribeAsync("k/#", { qos: 0 })
      const discarding = discards()?.has(clientId) === true
      // 150 QoS 0 messages for the session (held), then one for the other client.
      const t1 = performance.now()
      let published = 0
      for (let i = 0; i < 150; i++) void aedesPublish(aedes, `q${i}`, 0).then(() => published++)
      let otherAt = -1
      void aedesPublish(aedes, "unrelated", 0, "x/1")
      void until(() => otherGot.includes("unrelated"), 20_000).then(() => (otherAt = performance.now() - t1))
      await until(() => discards()?.has(clientId) !== true, 20_000)
      const discard = performance.now() - t0
      await until(() => otherAt >= 0 && pGot.length >= 150, 10_000)
      // A quarter of it: room for a stall of a loaded machine, far below a message that waited for
      // the discard (about all of it).
      expect(
        { discarding, published, otherGot, small: otherAt >= 0 && otherAt < discard * 0.25, session: pGot },
        `the other client got its message ${otherAt.toFixed(0)} ms after the publishes, the discard took ${discard.toFixed(0)} ms`
      ).toEqual({ discarding: true, published: 150, otherGot: ["unrelated"], small: true, session: Array.from({ length: 150 }, (_, i) => `q${i}`) })
    } finally {
      await close()
    }
  }, 60_000)
})
