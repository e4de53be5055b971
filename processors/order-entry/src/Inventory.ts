/**
 * Inventory: decrements stock; what is not in stock is back-ordered, never refused. On
 * `payment-denied` it gives the order's allocation back (the compensating step, once per order).
 */
import { Schema } from "effect"
import { Baton, Effect, forUpdate } from "@baton/sdk"
import { events, names, StockLine, type OrderCreated, type PaymentDenied } from "./Contract.ts"
import type { Deps } from "./Deps.ts"

/** Takes `qty` units from `onHand`; the rest is back-ordered. */
export const allocate = (sku: string, onHand: number, qty: number): StockLine => {
  const taken = Math.min(Math.max(onHand, 0), qty)
  return { sku, qty, taken, backordered: qty - taken, remaining: onHand - taken }
}

/** An allocation's lines, as its row keeps them (JSON). */
const linesOf = (row: Readonly<Record<string, unknown>>): ReadonlyArray<StockLine> => decodeLines(String(row.lines))
const decodeLines = Schema.decodeUnknownSync(Schema.fromJsonString(Schema.Array(StockLine)))

export const make = ({ query, dialect, clock }: Deps) => {
  const done = query("SELECT lines FROM stock_allocations WHERE order_id = ?")
  // Locks the row on PostgreSQL: another instance's order for the same SKU waits for this one's commit.
  const lock = query(`SELECT sku FROM stock WHERE sku = ?${forUpdate(dialect)}`)
  const level = query("SELECT on_hand FROM stock WHERE sku = ?")
  const update = query("UPDATE stock SET on_hand = ?, backordered = backordered + ? WHERE sku = ?")
  const record = query("INSERT INTO stock_allocations (order_id, lines) VALUES (?, ?)")
  const released = query("SELECT lines FROM stock_releases WHERE order_id = ?")
  // Atomic: of two releases of one order at once, the second waits for the first's commit and inserts nothing.
  const tombstone = query("INSERT INTO stock_releases (order_id, lines, at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING RETURNING order_id")
  const giveBack = query("UPDATE stock SET on_hand = on_hand + ?, backordered = backordered - ? WHERE sku = ?")

  // The stock rows in SKU order (instances locking the same rows never deadlock). (SQLite has one writer: nothing to lock.)
  const lockStock = (skus: ReadonlyArray<string>) =>
    dialect === "pg" ? Effect.forEach([...new Set(skus)].sort(), (sku) => lock.all(sku), { discard: true }) : Effect.void

  const announce = (orderId: string, lines: ReadonlyArray<StockLine>) => [
    events.inventoryUpdated.make({ orderId, lines, shortfall: lines.reduce((n, l) => n + l.backordered, 0) })
  ]
  const announceRelease = (orderId: string, lines: ReadonlyArray<StockLine>) => [events.inventoryReleased.make({ orderId, lines })]

  const allocateOrder = (order: OrderCreated) =>
    Effect.gen(function* () {
      // The stock rows first; the allocation record second: an order handled twice at once waits
      // here, then finds it done.
      yield* lockStock(order.items.map((i) => i.sku))
      const seen = yield* done.get(order.orderId)
      if (seen !== undefined) return announce(order.orderId, linesOf(seen))
      // Its payment was denied before it reached us (the two run in parallel): take nothing. The
      // empty allocation makes a redelivery of the order find it done.
      if ((yield* released.get(order.orderId)) !== undefined) {
        yield* record.run(order.orderId, "[]")
        return announce(order.orderId, [])
      }
      const lines = yield* Effect.forEach(order.items, (item) =>
        Effect.gen(function* () {
          const row = yield* level.get(item.sku)
          const line = allocate(item.sku, row === undefined ? 0 : Number(row.on_hand), item.qty)
          yield* update.run(line.remaining, line.backordered, item.sku)
          return line
        })
      )
      yield* record.run(order.orderId, JSON.stringify(lines))
      return announce(order.orderId, lines)
    })

  /**
   * Once per order, whichever denial (or redelivery) comes first; a later one announces the same
   * release. (Messages of one order run one at a time, in order, so an allocation and a release of
   * the same order never interleave.)
   */
  const release = (denied: PaymentDenied) =>
    Effect.gen(function* () {
      const allocation = yield* done.get(denied.orderId)
      const lines = allocation === undefined ? [] : linesOf(allocation)
      // The tombstone before the stock: it is what makes the release happen once. Already there
      // (a second denial, a redelivery): announce the release it recorded.
      if ((yield* tombstone.run(denied.orderId, JSON.stringify(lines), clock.now().toISOString())) === 0) {
        const won = yield* released.get(denied.orderId)
        return announceRelease(denied.orderId, won === undefined ? lines : linesOf(won))
      }
      yield* lockStock(lines.map((l) => l.sku))
      yield* Effect.forEach(lines, (l) => giveBack.run(l.taken, l.backordered, l.sku), { discard: true })
      return announceRelease(denied.orderId, lines)
    })

  return Baton.processor({
    name: "inventory",
    on: [events.orderCreated, events.paymentDenied],
    handle: (event) => (event.type === names.paymentDenied ? release(event.data) : allocateOrder(event.data))
  })
}
