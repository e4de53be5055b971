/**
 * Back-pressure at inbox scheduling: a processor whose work is held up while a client floods the
 * runtime over MQTT (the embedded broker, an ephemeral port). At most `BATON_MAX_SCHEDULED` of its
 * messages are in memory (the `baton_in_flight` gauge); the rest wait in its durable inbox, and once
 * its work goes on, every message is processed, once.
 */
import { describe, expect, it } from "vitest"
import { Effect } from "effect"
import type { Envelope, Processor } from "@baton/core"
import { connect, sleep, startRuntime } from "./support.ts"

const bound = 16
const orders = 300

const order = (i: number) => JSON.stringify({ customerId: `bp-${i % 20}`, email: "b@example.com", items: [{ sku: `BOOK-${(i % 5) + 1}`, qty: 1, price: 9.5 }], payment: { card: "4242424242424242" } })

describe("back-pressure: inbox scheduling", () => {
  it(`keeps at most BATON_MAX_SCHEDULED (${bound}) messages of a held-up processor in memory under a flood of ${orders}, loses none, and runs them all once it goes on`, async () => {
    let open!: () => void
    const gate = new Promise<void>((resolve) => (open = resolve))
    const handled = new Map<string, number>()
    const gated: Processor = {
      name: "gated-audit",
      consumes: ["place-order"],
      prepare: () => Effect.promise(() => gate),
      handle: (event: Envelope.Envelope) =>
        Effect.sync(() => {
          handled.set(event.id, (handled.get(event.id) ?? 0) + 1)
          return []
        })
    }
    const h = await startRuntime({ maxScheduled: bound }, { processors: () => [gated] })
    const client = await connect(h.url)
    const store = h.runtime.store
    const count = (status: string) => store.run(store.query("SELECT COUNT(*) AS n FROM inbox WHERE processor = ? AND status = ?").get("gated-audit", status)).then((r) => Number(r?.n ?? 0))
    const inFlight = async () => {
      const text = await (await fetch(`http://127.0.0.1:${h.runtime.httpPort}/metrics`)).text()
      return Number(/^baton_in_flight\{processor="gated-audit"\} (\d+)/m.exec(text)?.[1] ?? Number.NaN)
    }
    let sampling = true
    let highest = 0
    const samples = (async () => {
      while (sampling) {
        highest = Math.max(highest, await inFlight())
        await sleep(20)
      }
    })()
    try {
      await Promise.all(Array.from({ length: orders }, (_, i) => client.publishAsync("initiate/place-order", order(i), { qos: 1 })))
      // Every order reaches the held-up processor's inbox; only the bound is taken into memory.
      for (let t = 0; (await count("pending")) < orders; t++) {
        if (t > 600) throw new Error(`only ${await count("pending")} of ${orders} messages reached the inbox`)
        await sleep(50)
      }
      expect(await inFlight(), "messages in memory while held up").toBe(bound)
      expect(highest, "never more than the bound in memory").toBeLessThanOrEqual(bound)
      expect(handled.size, "nothing ran while held up").toBe(0)
      open()
      for (let t = 0; (await count("done")) < orders; t++) {
        if (t > 1200) throw new Error(`only ${await count("done")} of ${orders} messages processed after the hold was lifted`)
        await sleep(50)
      }
      await h.runtime.idle()
      expect(await count("pending"), "nothing left waiting").toBe(0)
      expect(handled.size, "every message processed").toBe(orders)
      expect(highest, "never more than the bound in memory").toBeLessThanOrEqual(bound)
    } finally {
      open()
      sampling = false
      await samples
      await client.endAsync()
      await h.stop()
    }
  }, 120_000)
})
