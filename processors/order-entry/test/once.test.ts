/**
 * The processors' own guards against an event handled again (a redelivery, or two instances at
 * once): for any sequence of deliveries, each effect applied once and the same events announced,
 * on SQLite and on PostgreSQL (where the guards are merged into fewer statements: Inventory's
 * claim, Warehouse's seen-and-level, OrderPlacement's id in the insert, Notification's mail
 * rendered again without a read first and recorded without an answer). BATON_PROPERTY_RUNS raises the runs.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Effect } from "effect"
import type { Envelope, Processor } from "@baton/core"
import { Envelope as E } from "@baton/core"
import type { Store } from "@baton/store"
import { fc } from "@baton/sdk/testkit"
import * as OrderEntry from "@baton/order-entry"
import { catalogue, type StockLine } from "../src/Contract.ts"
import { allocate } from "../src/Inventory.ts"
import { orderId } from "../src/OrderPlacement.ts"
import { engines } from "./stores.ts"

const numRuns = Number(process.env.BATON_PROPERTY_RUNS ?? 25)

/** What the runtime does with a message: `prepare` outside, `handle` in one transaction. */
const run = async <P>(store: Store, p: Processor<P>, event: Envelope.Envelope) => {
  const prepared = p.prepare === undefined ? (undefined as P) : await Effect.runPromise(p.prepare(event))
  return store.transaction(p.handle(event, prepared))
}

let ids = 0
const envelope = (type: string, data: unknown, id = `e${++ids}`): Envelope.Envelope => ({ id, type, correlationId: id, causationId: id, key: "k", occurredAt: new Date(0).toISOString(), data })


/** A delivery of order `order`'s event: the first of its kind, again later, or twice at once. */
type Step = { readonly order: number; readonly kind: "created" | "denied"; readonly twice: boolean }
const skus = catalogue.slice(0, 3).map((c) => c.sku)

for (const [engine, open] of engines)
  describe(`order-entry's guards on ${engine}`, () => {
    let store: Store
    let close: () => Promise<void>
    let app: { readonly processors: ReadonlyArray<Processor<unknown>> }
    beforeAll(async () => {
      ;({ store, close } = await open())
      app = (await OrderEntry.makeApp({ mailer: OrderEntry.Mailer.make() }).make({ ...store, env: {}, clock: E.systemClock })) as unknown as typeof app
      await store.migrate(OrderEntry.migrations)
    })
    afterAll(async () => close?.())
    const processor = (name: string) => app.processors.find((p) => p.name === name)!
    /** Runs a step's event once, or twice at once: what each run announced. */
    const both = async (p: Processor<unknown>, event: Envelope.Envelope, twice: boolean) =>
      twice ? Promise.all([run(store, p, event), run(store, p, event)]) : [await run(store, p, event)]
    /** `both`, where a run again announces the same. */
    const deliver = async (p: Processor<unknown>, event: Envelope.Envelope, twice: boolean) => {
      const [a, b] = await both(p, event, twice)
      if (b !== undefined) expect(b).toEqual(a)
      return a!
    }
    const levels = async (table: string, column: string) =>
      new Map((await store.run(store.query(`SELECT sku, ${column} AS v FROM ${table}`).all())).map((r) => [String(r.sku), Number(r.v)]))

    it("inventory: for any orders, created and denied in any order, again or twice at once: stock taken and given back once each, the same events announced", async () => {
      const inventory = processor("inventory")
      let round = 0
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.array(fc.record({ sku: fc.constantFrom(...skus), qty: fc.integer({ min: 1, max: 400 }) }), { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 4 }),
          fc.array(fc.record({ order: fc.nat(3), kind: fc.constantFrom("created" as const, "denied" as const), twice: fc.boolean() }), { minLength: 1, maxLength: 12 }),
          async (orders, steps: ReadonlyArray<Step>) => {
            round++
            const onHand = await levels("stock", "on_hand")
            const backordered = await levels("stock", "backordered")
            // The model: each order's allocation (undefined before it), and its release.
            const allocations = new Map<number, ReadonlyArray<StockLine>>()
            const releases = new Map<number, ReadonlyArray<StockLine>>()
            const events = new Map<number, { created: Envelope.Envelope; denied: Envelope.Envelope }>()
            for (const step of steps) {
              const n = step.order % orders.length
              const id = `INV-${round}-${n}`
              const items = orders[n]!.map((i) => ({ ...i, price: 1 }))
              if (!events.has(n))
                events.set(n, {
                  created: envelope("order-created", { orderId: id, customerId: "c", email: "a@b.co", items, total: 1, paymentToken: "t", cardLast4: "4242" }),
                  denied: envelope("payment-denied", { orderId: id, customerId: "c", email: "a@b.co", amount: 1, reason: "card declined by issuer" })
                })
              const announced = await deliver(inventory, events.get(n)![step.kind], step.twice)
              if (step.kind === "created") {
                if (!allocations.has(n)) {
                  const lines = releases.has(n)
                    ? []
                    : items.map((i) => {
                        const line = allocate(i.sku, onHand.get(i.sku)!, i.qty)
                        onHand.set(i.sku, line.remaining)
                        backordered.set(i.sku, backordered.get(i.sku)! + line.backordered)
                        return line
                      })
                  allocations.set(n, lines)
                }
                const lines = allocations.get(n)!
                expect(announced).toEqual([{ type: "inventory-updated", data: { orderId: id, lines, shortfall: lines.reduce((s, l) => s + l.backordered, 0) } }])
              } else {
                if (!releases.has(n)) {
                  const lines = allocations.get(n) ?? []
                  for (const l of lines) {
                    onHand.set(l.sku, onHand.get(l.sku)! + l.taken)
                    backordered.set(l.sku, backordered.get(l.sku)! - l.backordered)
                  }
                  releases.set(n, lines)
                }
                expect(announced).toEqual([{ type: "inventory-released", data: { orderId: id, lines: releases.get(n)! } }])
              }
            }
            expect(await levels("stock", "on_hand")).toEqual(onHand)
            expect(await levels("stock", "backordered")).toEqual(backordered)
          }
        ),
        { numRuns }
      )
    })

    it("warehouse: for any stock updates, again later or twice at once: the levels the latest new one left, each re-order once, nothing announced again", async () => {
      const warehouse = processor("warehouse")
      // Two SKUs: updates of one SKU often follow each other (a redelivery must not set an old level).
      const line = fc.record({ sku: fc.constantFrom(...skus.slice(0, 2)), remaining: fc.integer({ min: -5, max: 300 }) })
      let round = 0
      await fc.assert(
        fc.asyncProperty(fc.array(fc.array(line, { maxLength: 3 }), { minLength: 1, maxLength: 4 }), fc.array(fc.record({ update: fc.nat(3), twice: fc.boolean() }), { minLength: 1, maxLength: 10 }), async (updates, steps) => {
          round++
          const level = await levels("warehouse_stock", "level")
          const pending = await levels("warehouse_stock", "pending_reorder")
          const thresholds = await levels("warehouse_stock", "threshold")
          const seen = new Set<number>()
          const events = new Map<number, Envelope.Envelope>()
          let reorders = 0
          const before = Number((await store.run(store.query("SELECT COUNT(*) AS n FROM reorders").get()))!.n)
          for (const step of steps) {
            const n = step.update % updates.length
            const id = `WH-${round}-${n}`
            const lines = updates[n]!.map((l) => ({ sku: l.sku, qty: 1, taken: 1, backordered: 0, remaining: l.remaining }))
            if (!events.has(n)) events.set(n, envelope("inventory-updated", { orderId: id, lines, shortfall: 0 }))
            // Twice at once: one run applies it, the other (waiting for its commit) nothing.
            const runs = await both(warehouse, events.get(n)!, step.twice)
            const announced = runs.flat()
            const expected: Array<string> = []
            if (!seen.has(n)) {
              seen.add(n)
              for (const l of lines) {
                level.set(l.sku, l.remaining)
                if (l.remaining < thresholds.get(l.sku)! && pending.get(l.sku) !== 1) {
                  pending.set(l.sku, 1)
                  reorders++
                  expected.push(l.sku)
                }
              }
            }
            expect(announced.map((e) => (e.data as { sku: string }).sku)).toEqual(expected)
          }
          expect(await levels("warehouse_stock", "level")).toEqual(level)
          expect(await levels("warehouse_stock", "pending_reorder")).toEqual(pending)
          expect(Number((await store.run(store.query("SELECT COUNT(*) AS n FROM reorders").get()))!.n) - before).toBe(reorders)
        }),
        { numRuns }
      )
    })

    it("order placement and notification: for any orders (any lines, short or long) placed and mailed again or twice at once: one order, its lines and its card once each, one mail, its id made from its sequence number, the same events announced", async () => {
      const placement = processor("order-placement")
      const notification = processor("notification")
      const line = fc.record({ sku: fc.constantFrom(...skus), qty: fc.integer({ min: 1, max: 50 }), price: fc.constantFrom(0.5, 2, 12.25) })
      await fc.assert(
        fc.asyncProperty(
          // Mostly short orders; some longer than PostgreSQL's one-statement placement takes (16 lines).
          fc.array(fc.oneof({ weight: 4, arbitrary: fc.array(line, { minLength: 1, maxLength: 3 }) }, { weight: 1, arbitrary: fc.array(line, { minLength: 17, maxLength: 20 }) }), { minLength: 5, maxLength: 5 }),
          fc.array(fc.record({ order: fc.nat(4), twice: fc.boolean(), mail: fc.boolean() }), { minLength: 1, maxLength: 10 }),
          async (orders, steps) => {
            const placed = new Map<number, { readonly event: Envelope.Envelope; readonly created: unknown; mail?: unknown }>()
            for (const step of steps) {
              const first = placed.get(step.order)
              const items = orders[step.order]!
              const card = ["4242424242424242", "4000000000000002"][step.order % 2]!
              const event = first?.event ?? envelope("place-order", { customerId: "c", email: "a@b.co", items, payment: { card } })
              const [created] = await deliver(placement, event, step.twice)
              if (first !== undefined) expect(created).toEqual(first.created)
              const entry = first ?? { event, created }
              placed.set(step.order, entry)
              const id = (created!.data as { orderId: string }).orderId
              const rows = await store.run(store.query("SELECT seq, id FROM orders WHERE correlation_id = ?").all(event.correlationId))
              expect(rows.map((r) => String(r.id))).toEqual([orderId(Number(rows[0]!.seq))])
              expect(rows[0]!.id).toBe(id)
              // Its lines as placed (line numbers from 0), and its card in the vault under the token it announced.
              const lines = await store.run(store.query("SELECT line, sku, qty, price FROM order_items WHERE order_id = ? ORDER BY line").all(id))
              expect(lines.map((r) => ({ line: Number(r.line), sku: r.sku, qty: Number(r.qty), price: Number(r.price) }))).toEqual(items.map((i, n) => ({ line: n, ...i })))
              const token = (created!.data as { paymentToken: string }).paymentToken
              expect((await store.run(store.query("SELECT card FROM payment_vault WHERE token = ?").all(token))).map((r) => r.card)).toEqual([card])
              if (step.mail) {
                const mailed = await deliver(notification, { ...envelope("order-created", created!.data), id: `mail-${event.id}` }, step.twice)
                entry.mail ??= mailed
                expect(mailed).toEqual(entry.mail)
                // The one record, and the mail announced is the one recorded.
                const recorded = await store.run(store.query("SELECT message_id FROM emails WHERE cause_id = ?").all(`mail-${event.id}`))
                expect(recorded.map((r) => r.message_id)).toEqual([(mailed[0]!.data as { messageId: string }).messageId])
              }
            }
          }
        ),
        { numRuns }
      )
    })
  })
