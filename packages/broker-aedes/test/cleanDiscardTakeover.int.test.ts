/**
 * A clean connection discards its client id's earlier persistent session: each stored message is
 * given an id of the connection's numbering (outgoingUpdate), then cleared by it
 * (outgoingClearMessageId); the discard goes on after the connection is closed. A persistent
 * connection of the same client id taking it over during the discard restored the messages not
 * cleared yet and sent them, and the discard then cleared them (by its own ids, which the new
 * connection's could equal too): sent, never acknowledged, and gone from the store, the session's
 * next connection did not get them (384-951 of 2,000 lost, memory and disk). Now the restore waits
 * for the discard (Aedes patch, connect.js discardQueue), and finds what the discard left: none of
 * the discarded session's messages. The store's clears are slowed by 1 ms for the clean connection
 * (a loaded store), so that the takeover comes during the discard.
 */
import { afterAll, describe, expect, it } from "vitest"
import mqtt from "mqtt"
import { aedesBroker, aedesPersistence, aedesPublish, type Kind } from "./sessions.ts"
import { until } from "./waits.ts"

const cleanup: Array<() => unknown> = []
afterAll(async () => {
  for (const c of cleanup) await c()
})

/** A persistent connection recording the payloads it gets; with `ack` false, it sends no PUBACK. */
const persistent = (url: string, clientId: string, ack: boolean) => {
  const client = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, clean: false, clientId })
  const got: Array<string> = []
  if (!ack) {
    const inner = client as unknown as { _sendPacket: (packet: { cmd: string }, cb?: () => void) => void }
    const send = inner._sendPacket.bind(client)
    inner._sendPacket = (packet, cb) => (packet.cmd === "puback" ? cb?.() : send(packet, cb))
  }
  client.on("message", (_t, p) => got.push(p.toString()))
  return { client, got }
}

describe.each(["disk", "memory"] as Array<Kind>)("a clean connection's discard taken over by a persistent connection (%s store)", (kind) => {
  it("every message the persistent connection was sent and did not acknowledge comes again on the next one", async () => {
    const { aedes, url, clients, close } = await aedesBroker({ persistence: aedesPersistence(kind, cleanup) })
    const clientId = `discard-${kind}`
    try {
      const first = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clean: false, clientId })
      await first.subscribeAsync("k/#", { qos: 1 })
      await first.endAsync()
      const n = 2000
      for (let i = 0; i < n; i++) await aedesPublish(aedes, `m${i}`, 1)
      // The discard made slow (a loaded store), so that the takeover comes during it.
      const store = (aedes as unknown as { persistence: { outgoingClearMessageId: (client: { clean: boolean }, packet: unknown) => Promise<unknown> } }).persistence
      const clear = store.outgoingClearMessageId.bind(store)
      store.outgoingClearMessageId = async (client, packet) => {
        if (client.clean) await new Promise((r) => setTimeout(r, 1))
        return clear(client, packet)
      }
      // The clean connection: its CONNACK, then its discard of the 2,000 stored messages.
      const clean = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, clean: true, clientId })
      clients.push(clean)
      await new Promise<void>((resolve) => clean.once("connect", () => resolve()))
      // Taken over at once, by a persistent connection that acknowledges nothing.
      const b = persistent(url, clientId, false)
      clients.push(b.client)
      await new Promise<void>((resolve) => b.client.once("connect", () => resolve()))
      // It subscribes again (the clean connection dropped the session's filters) and gets a new message.
      await b.client.subscribeAsync("k/#", { qos: 1 })
      await aedesPublish(aedes, "new", 1)
      await until(() => b.got.includes("new"), 10_000)
      // Its restore and the discard are done once nothing new arrives for a while.
      for (let last = -1; b.got.length !== last; ) {
        last = b.got.length
        await new Promise((r) => setTimeout(r, 300))
      }
      b.client.stream.destroy()
      await new Promise((r) => setTimeout(r, 200))
      const c = persistent(url, clientId, true)
      clients.push(c.client)
      await until(() => b.got.every((m) => c.got.includes(m)), 5_000)
      const lost = b.got.filter((m) => !c.got.includes(m))
      expect({ lost: lost.length, first: lost.slice(0, 5) }, `B got ${b.got.length}, C got ${c.got.length}`).toEqual({ lost: 0, first: [] })
      // The clean connection discarded the earlier session: none of its messages went to B.
      expect(b.got).toEqual(["new"])
    } finally {
      await close()
    }
  }, 30_000)
})
