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
  // The same lock, reading the level it guards (one statement and one round trip for both).
  const level = query(`SELECT on_hand FROM stock WHERE sku = ?${forUpdate(dialect)}`)
  // Whether the order was allocated or released already, in one statement.
  const history = query("SELECT (SELECT lines FROM stock_allocations WHERE order_id = ?) AS allocated, (SELECT lines FROM stock_releases WHERE order_id = ?) AS released")
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
      // The stock rows first, locked in SKU order (instances locking the same rows never deadlock)
      // and read with their levels; the allocation record second: an order handled twice at once
      // waits here, then finds it done.
      const onHand = new Map<string, number>()
      for (const sku of [...new Set(order.items.map((i) => i.sku))].sort()) {
        const row = yield* level.get(sku)
        onHand.set(sku, row === undefined ? 0 : Number(row.on_hand))
      }
      const seen = yield* history.get(order.orderId, order.orderId)
      if (seen?.allocated != null) return announce(order.orderId, decodeLines(String(seen.allocated)))
      // Its payment was denied before it reached us (the two run in parallel): take nothing. The
      // empty allocation makes a redelivery of the order find it done.
      if (seen?.released != null) {
        yield* record.run(order.orderId, "[]")
        return announce(order.orderId, [])
      }
      const lines = yield* Effect.forEach(order.items, (item) =>
        Effect.gen(function* () {
          const line = allocate(item.sku, onHand.get(item.sku) ?? 0, item.qty)
          onHand.set(item.sku, line.remaining)
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
