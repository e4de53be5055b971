/**
 * `runtime.idle()` means idle: orders of the reference app published over MQTT to the embedded
 * broker (an ephemeral port) on SQLite, each acknowledged (committed to the ingress log); once
 * `idle()` resolves, the outbox holds nothing and no inbox row is pending, at once, without waiting
 * for a timer (SQLite's deferred delete of sent entries ran before it resolved).
 */
import { describe, expect, it } from "vitest"
import { collect, connect, startRuntime } from "./support.ts"

const order = (i: number) => JSON.stringify({ customerId: `idle-${i % 7}`, email: "i@example.com", items: [{ sku: `BOOK-${(i % 5) + 1}`, qty: 1, price: 9.5 }], payment: { card: "4242424242424242" } })

describe("runtime.idle()", () => {
  it("resolves with the outbox empty and no inbox row pending (embedded broker, SQLite)", async () => {
    const h = await startRuntime()
    const client = await connect(h.url)
    // A subscriber to the events: without one, nothing is written to the outbox for the wire (audience).
    const events = await collect(client, ["events/#"])
    const store = h.runtime.store
    const count = (sql: string) => store.run(store.query(sql).get()).then((r) => Number(r?.n ?? 0))
    try {
      for (let round = 0; round < 5; round++) {
        await Promise.all(Array.from({ length: 40 }, (_, i) => client.publishAsync("initiate/place-order", order(round * 40 + i), { qos: 1 })))
        await h.runtime.idle()
        const left = { outbox: await count("SELECT COUNT(*) AS n FROM outbox"), pending: await count("SELECT COUNT(*) AS n FROM inbox WHERE status = 'pending'") }
        expect(left, `after round ${round}`).toEqual({ outbox: 0, pending: 0 })
      }
      expect(await count("SELECT COUNT(*) AS n FROM inbox WHERE status = 'done'"), "the orders ran").toBeGreaterThan(200)
      expect(events.received.length, "their events went out").toBeGreaterThan(200)
    } finally {
      await client.endAsync()
      await h.stop()
    }
  })
})
