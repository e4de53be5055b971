/**
 * From a review (2026-12-02): distinct orders on the same SKUs at once from several connections (PostgreSQL,
 * Inventory's merged last UPDATE): each order's lines are those of some serial order of the
 * allocations, stock never negative, and every unit taken or back-ordered is in the levels.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { Envelope, Processor } from "@baton/core"
import { Envelope as E } from "@baton/core"
import { Postgres, type Store } from "@baton/store"
import { fc } from "@baton/sdk/testkit"
import * as OrderEntry from "@baton/order-entry"
import { catalogue, type StockLine } from "../src/Contract.ts"
import { engines } from "./stores.ts"

const numRuns = Number(process.env.BATON_PROPERTY_RUNS ?? 15)
let ids = 0
const skus = catalogue.slice(0, 3).map((c) => c.sku)

describe("Inventory, distinct orders on shared SKUs at once (PostgreSQL)", () => {
  let store: Store
  let close: () => Promise<void>
  let inventory: Processor<unknown>
  beforeAll(async () => {
    ;({ store, close } = await engines.find(([n]) => n === "PostgreSQL")![1]())
    const app = (await OrderEntry.makeApp({ mailer: OrderEntry.Mailer.make() }).make({ ...store, env: {}, clock: E.systemClock })) as unknown as { processors: ReadonlyArray<Processor<unknown>> }
    inventory = app.processors.find((p) => p.name === "inventory")!
    await store.migrate(OrderEntry.migrations)
  })
  afterAll(async () => close?.())
  const levels = async () => new Map((await store.run(store.query("SELECT sku, on_hand, backordered FROM stock").all())).map((r) => [String(r.sku), { onHand: Number(r.on_hand), backordered: Number(r.backordered) }]))
  const run = async (event: Envelope.Envelope): Promise<unknown> => {
    for (;;)
      try {
        return await store.transaction(inventory.handle(event, undefined))
      } catch (error) {
        if (!Postgres.isConflict(error)) throw error
      }
  }
  it("for any orders at once: levels = before - taken, backordered + backordered, never negative", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.array(fc.record({ sku: fc.constantFrom(...skus), qty: fc.integer({ min: 1, max: 300 }) }), { minLength: 1, maxLength: 4 }), { minLength: 2, maxLength: 3 }), async (orders) => {
        const before = await levels()
        const announced = (await Promise.all(
          orders.map((items) => {
            const id = `C-${++ids}`
            return run({ id, type: "order-created", correlationId: id, causationId: id, key: id, occurredAt: new Date(0).toISOString(), data: { orderId: id, customerId: "c", email: "a@b.co", items: items.map((i) => ({ ...i, price: 1 })), total: 1, paymentToken: "t", cardLast4: "4242" } } as Envelope.Envelope)
          })
        )) as unknown as ReadonlyArray<ReadonlyArray<{ data: { lines: ReadonlyArray<StockLine> } }>>
        const after = await levels()
        for (const sku of skus) {
          const lines = announced.flatMap((a) => a[0]!.data.lines).filter((l) => l.sku === sku)
          const b = before.get(sku)!
          const a = after.get(sku)!
          expect(a.onHand, sku).toBe(b.onHand - lines.reduce((s, l) => s + l.taken, 0))
          expect(a.backordered, sku).toBe(b.backordered + lines.reduce((s, l) => s + l.backordered, 0))
          expect(a.onHand).toBeGreaterThanOrEqual(0)
        }
      }),
      { numRuns }
    )
  })
})
