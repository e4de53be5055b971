/**
 * A persistent connection taking over a clean one whose discard of the client id's earlier session
 * is still going on reads its restore stream's first message before waiting for the discard (Aedes
 * patch, connect.js restoreStored). In Aedes' memory store that stream is a copy of the session's
 * list of stored messages, the very objects the discard then numbers (outgoingUpdate sets their
 * messageId) and clears: the restore, once the discard ended, took each one's id as kept by the
 * session (client._kept) before its update failed ("no such packet"), and no PUBACK ever freed it.
 * 3,000 here (all 3,000 kept); at 66,000, 65,470 were kept, each new message's id (qos-packet.js,
 * freshId) looked at up to 65,535 of them for the connection's life, and 3,000 new messages took
 * 3.3 s instead of 1.3 s (one run each, on a loaded machine). Now the restore skips, before its ids, what the
 * kept ids' read after the discard no longer finds.
 */
import { afterAll, describe, expect, it } from "vitest"
import mqtt from "mqtt"
import { aedesBroker, aedesPersistence, aedesPublish, type Kind } from "./sessions.ts"
import { until } from "./waits.ts"

const cleanup: Array<() => unknown> = []
afterAll(async () => {
  for (const c of cleanup) await c()
})

describe.each(["memory"] as Array<Kind>)("a persistent takeover of a clean discard of 3,000 stored messages (%s store)", (kind) => {
  it("the new connection keeps no id of the discarded messages (client._kept), and gets its new one", async () => {
    const { aedes, url, clients, close } = await aedesBroker({ persistence: aedesPersistence(kind, cleanup) })
    const clientId = `kept-stale-${kind}`
    const opts = { protocolVersion: 4 as const, reconnectPeriod: 0, clientId }
    try {
      const first = await mqtt.connectAsync(url, { ...opts, clean: false })
      await first.subscribeAsync("k/#", { qos: 1 })
      await first.endAsync()
      const n = 3_000
      for (let i = 0; i < n; i++) await aedesPublish(aedes, `m${i}`, 1)
      // The discard's first clear waits until the persistent connection has read its first stored message.
      let open!: () => void
      const gate = new Promise<void>((r) => (open = r))
      const store = (aedes as unknown as { persistence: { outgoingClearMessageId: (client: { clean: boolean }, packet: unknown) => Promise<unknown> } }).persistence
      const clear = store.outgoingClearMessageId.bind(store)
      store.outgoingClearMessageId = async (client, packet) => {
        if (client.clean) await gate
        return clear(client, packet)
      }
      const discards = () => (aedes as unknown as { _discards?: Map<string, unknown> })._discards
      const clean = mqtt.connect(url, { ...opts, clean: true })
      clients.push(clean)
      await new Promise<void>((resolve) => clean.once("connect", () => resolve()))
      const p = mqtt.connect(url, { ...opts, clean: false })
      clients.push(p)
      let got = 0
      p.on("message", () => got++)
      await new Promise<void>((resolve) => p.once("connect", () => resolve()))
      const during = discards()?.has(clientId) === true
      await p.subscribeAsync("k/#", { qos: 1 })
      await new Promise((r) => setTimeout(r, 100))
      open()
      await until(() => discards()?.has(clientId) !== true, 60_000)
      await aedesPublish(aedes, "new", 1)
      await until(() => got === 1, 20_000)
      const conns = Object.values((aedes as unknown as { clients: Record<string, { _kept: Set<number> | null }> }).clients)
      const kept = conns.map((c) => c._kept?.size ?? 0)
      expect({ during, got, kept }).toEqual({ during: true, got: 1, kept: [0] })
    } finally {
      await close()
    }
  }, 60_000)
})
