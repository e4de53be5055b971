/**
 * OrderPlacement's order ids, made from the sequence number in the insert itself (on SQLite from
 * what its AUTOINCREMENT would give, on PostgreSQL from the sequence): for any orders placed,
 * placed again, deleted (the newest among them) or written by other means with a larger number
 * (past six digits), a new order takes the number after the largest ever used, never one used
 * before, and its id is that number as `orderId` writes it; an order placed again keeps its id
 * (and uses a number up, as its insert always has).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Effect } from "effect"
import type { Envelope, Processor } from "@baton/core"
import { Envelope as E } from "@baton/core"
import type { Store } from "@baton/store"
import { fc } from "@baton/sdk/testkit"
import * as OrderEntry from "@baton/order-entry"
import { catalogue } from "../src/Contract.ts"
import { orderId } from "../src/OrderPlacement.ts"
import { engines } from "./stores.ts"

const numRuns = Number(process.env.BATON_PROPERTY_RUNS ?? 25)

type Step =
  | { readonly kind: "place" }
  | { readonly kind: "again"; readonly which: number }
  | { readonly kind: "delete"; readonly which: number | "newest" }
  | { readonly kind: "elsewhere"; readonly ahead: number }

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.constant({ kind: "place" } as const),
  fc.nat().map((which) => ({ kind: "again", which }) as const),
  fc.oneof(fc.nat(), fc.constant("newest" as const)).map((which) => ({ kind: "delete", which }) as const),
  fc.oneof(fc.integer({ min: 1, max: 3 }), fc.constant(1_000_000)).map((ahead) => ({ kind: "elsewhere", ahead }) as const)
)

let ids = 0
const placeOrder = (): Envelope.Envelope => {
  const id = `ids-${++ids}`
  const data = { customerId: "c", email: "a@b.co", items: [{ sku: catalogue[0]!.sku, qty: 1, price: 2 }], payment: { card: "4242424242424242" } }
  return { id, type: "place-order", correlationId: id, causationId: id, key: id, occurredAt: new Date(0).toISOString(), data }
}

for (const [engine, open] of engines)
  describe(`order ids on ${engine}`, () => {
    let store: Store
    let close: () => Promise<void>
    let placement: Processor<unknown>
    beforeAll(async () => {
      ;({ store, close } = await open())
      const app = await OrderEntry.makeApp({ mailer: OrderEntry.Mailer.make() }).make({ ...store, env: {}, clock: E.systemClock })
      placement = (app.processors as ReadonlyArray<Processor<unknown>>).find((p) => p.name === "order-placement")!
      await store.migrate(OrderEntry.migrations)
    })
    afterAll(async () => close?.())

    const place = async (event: Envelope.Envelope) => {
      const [created] = await store.transaction(placement.handle(event, undefined))
      return (created!.data as { readonly orderId: string }).orderId
    }
    const remove = (id: string) =>
      store.transaction(Effect.andThen(store.query("DELETE FROM order_items WHERE order_id = ?").run(id), store.query("DELETE FROM orders WHERE id = ?").run(id)))

    it("a new order takes the number after the largest ever used; its id is that number's; an order placed again keeps its id", async () => {
      // The largest number used before a run (the table is not emptied between runs): the engine's own record of it.
      const largest = store.query(
        store.dialect === "pg"
          ? "SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS n FROM orders_seq_seq"
          : "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'orders'), 0) AS n"
      )
      await fc.assert(
        fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 12 }), async (steps) => {
          let highest = Number((await store.run(largest.get()))!.n)
          // The orders placed in this run and still there, oldest first: their event and id.
          const present: Array<{ readonly event: Envelope.Envelope; readonly id: string }> = []
          for (const s of steps) {
            if (s.kind === "place") {
              const event = placeOrder()
              const id = await place(event)
              highest += 1
              expect(id).toBe(orderId(highest))
              const rows = await store.run(store.query("SELECT seq FROM orders WHERE id = ?").all(id))
              expect(rows.map((r) => Number(r.seq))).toEqual([highest])
              present.push({ event, id })
            } else if (s.kind === "again") {
              const order = present[s.which % Math.max(1, present.length)]
              if (order !== undefined) {
                expect(await place(order.event)).toBe(order.id)
                // Its insert found the order there, and used a number up (as PostgreSQL's `nextval`
                // does, and SQLite's AUTOINCREMENT did with the provisional id): never given after.
                highest += 1
              }
            } else if (s.kind === "delete") {
              const at = s.which === "newest" ? present.length - 1 : s.which % Math.max(1, present.length)
              const order = present[at]
              if (order !== undefined) {
                await remove(order.id)
                present.splice(at, 1)
              }
            } else {
              // An order written by other means, with a number of its own past the largest, then deleted:
              // a number used, as far as the sequence goes.
              const seq = highest + s.ahead
              const id = `other-${seq}`
              await store.transaction(
                store
                  .query(
                    store.dialect === "pg"
                      ? "SELECT setval(pg_get_serial_sequence('orders', 'seq'), ?)"
                      : "INSERT INTO orders (seq, id, correlation_id, customer_id, email, total, payment_token, created_at) VALUES (?, ?, ?, 'c', 'a@b.co', 1, 't', 'now')"
                  )
                  .run(...(store.dialect === "pg" ? [seq] : [seq, id, id]))
              )
              if (store.dialect === "sqlite") await remove(id)
              highest = seq
            }
          }
        }),
        { numRuns }
      )
    })
  })
