/**
 * The statements each processor sends for a new one-line order (the benchmark's order, approved),
 * as the store counts them (transaction control left out): the app's share of the order flow's
 * statements. A processor that gains a statement here makes every order dearer; one that loses
 * one updates this table. (SQLite's inventory in 3, its allocation recorded by a conditional insert
 * and its history read only when that inserts nothing, was measured and dropped on 2026-12-03: its
 * handler ~3 us an order less of ~20 alone, the order flow's CPU 1.00x over 26 interleaved rounds.)
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { Envelope, Processor } from "@baton/core"
import { Envelope as E } from "@baton/core"
import type { Store } from "@baton/store"
import * as OrderEntry from "@baton/order-entry"
import { engines } from "./stores.ts"

const envelope = (type: string, data: unknown): Envelope.Envelope => {
  const id = crypto.randomUUID()
  return { id, type, correlationId: id, causationId: id, key: "k", occurredAt: new Date().toISOString(), data }
}

/** Per processor (in the order's path), the statements of its first delivery: SQLite, PostgreSQL. */
const expected: Record<string, Record<string, number>> = {
  SQLite: { "order-placement": 3, "notification:order-created": 1, payment: 2, inventory: 4, warehouse: 2, "order-fulfillment": 1, "notification:order-fulfilled": 1, shipping: 1 },
  PostgreSQL: { "order-placement": 1, "notification:order-created": 1, payment: 2, inventory: 2, warehouse: 1, "order-fulfillment": 1, "notification:order-fulfilled": 1, shipping: 1 }
}

const control = /^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE)\b/i

for (const [engine, open] of engines)
  describe(`order-entry's statements on ${engine}`, () => {
    let store: Store
    let close: () => Promise<void>
    let processors: Record<string, Processor<unknown>>
    beforeAll(async () => {
      ;({ store, close } = await open())
      const app = await OrderEntry.makeApp({ mailer: OrderEntry.Mailer.make() }).make({ ...store, env: {}, clock: E.systemClock })
      await store.migrate(OrderEntry.migrations)
      processors = Object.fromEntries(app.processors.map((p) => [p.name, p as Processor<unknown>]))
    })
    afterAll(async () => close?.())

    /** Runs `name`'s handler on `event` in a transaction: what it announced, and the statements it sent (but transaction control). */
    const counted = async (name: string, event: Envelope.Envelope) => {
      const p = processors[name]!
      expect(p.prepare, `${name} prepares nothing`).toBeUndefined()
      const before = new Map(store.breakdown().map((b) => [b.text, b.count]))
      const out = await store.transaction(p.handle(event, undefined))
      const sent = store.breakdown().reduce((n, b) => (control.test(b.text) ? n : n + b.count - (before.get(b.text) ?? 0)), 0)
      return { out, sent }
    }

    it("a new one-line order, approved: each processor's statements", async () => {
      // The catalogue read once, on the first order: warmed before counting.
      await counted("order-placement", envelope("place-order", { customerId: "w", email: "a@b.co", items: [{ sku: "BOOK-1", qty: 1, price: 1 }], payment: { card: "4242424242424242" } }))
      const sent: Record<string, number> = {}
      const step = async (label: string, name: string, type: string, data: unknown, next: string) => {
        const { out, sent: n } = await counted(name, envelope(type, data))
        sent[label] = n
        const e = out.find((o) => o.type === next)
        expect(e, `${name} announces ${next}`).toBeDefined()
        return e!.data
      }
      const created = await step("order-placement", "order-placement", "place-order", { customerId: "c", email: "a@b.co", items: [{ sku: "BOOK-2", qty: 1, price: 9.5 }], payment: { card: "4242424242424242" } }, "order-created")
      await step("notification:order-created", "notification", "order-created", created, "email-sent")
      const applied = await step("payment", "payment", "order-created", created, "payment-applied")
      const updated = await step("inventory", "inventory", "order-created", created, "inventory-updated")
      // Its unit taken, not only announced.
      expect(await store.run(store.query("SELECT on_hand FROM stock WHERE sku = 'BOOK-2'").get())).toEqual({ on_hand: 999 })
      // The warehouse announces nothing for a level above its threshold: counted as it is.
      const { sent: warehouse } = await counted("warehouse", envelope("inventory-updated", updated))
      sent.warehouse = warehouse
      const fulfilled = await step("order-fulfillment", "order-fulfillment", "payment-applied", applied, "order-fulfilled")
      await step("notification:order-fulfilled", "notification", "order-fulfilled", fulfilled, "email-sent")
      await step("shipping", "shipping", "order-fulfilled", fulfilled, "order-shipped")
      expect(sent).toEqual(expected[engine])
    })
  })
