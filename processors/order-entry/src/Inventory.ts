/**
 * Inventory: decrements stock; what is not in stock is back-ordered, never refused. On
 * `payment-denied` it gives the order's allocation back (the compensating step, once per order).
 */
import { Schema } from "effect"
import { Baton, Effect, forUpdate } from "@baton/sdk"
import { events, names, StockLine, type OrderCreated, type PaymentDenied } from "./Contract.ts"
import type { Deps } from "./Deps.ts"
import * as Warehouse from "./Warehouse.ts"

/** Takes `qty` units from `onHand`; the rest is back-ordered. */
export const allocate = (sku: string, onHand: number, qty: number): StockLine => {
  const taken = Math.min(Math.max(onHand, 0), qty)
  return { sku, qty, taken, backordered: qty - taken, remaining: onHand - taken }
}

/** The lock key of a SKU's `stock` row (Processor.lockKeys). */
export const stockKey = (sku: string): string => `stock/${sku}`

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
  // PostgreSQL: the order's allocation claimed (its record inserted first, empty; a redelivery, or
  // another instance allocating it meanwhile, inserts nothing: that one waits here for the first's
  // commit), whether it was released before, and the first SKU's stock row locked and read, in one
  // statement and one round trip (of the two of `level` and `history`; the record's lines are then
  // set by a write that rides along). The row is locked only when the order takes stock (new and
  // not released). SQLite runs no data-modifying WITH, and has one writer: `level` and `history`.
  const claim =
    dialect === "pg"
      ? query(
          `WITH claim AS (INSERT INTO stock_allocations (order_id, lines) VALUES (?, '[]') ON CONFLICT DO NOTHING RETURNING (SELECT lines FROM stock_releases WHERE order_id = ?) AS released) SELECT (SELECT COUNT(*) FROM claim) AS fresh, (SELECT released FROM claim) AS released, (SELECT on_hand FROM stock WHERE sku = ? AND EXISTS (SELECT 1 FROM claim WHERE released IS NULL) FOR UPDATE) AS on_hand`
        )
      : undefined
  const setLines = query("UPDATE stock_allocations SET lines = ? WHERE order_id = ?")
  // PostgreSQL: the last line's `update` and `setLines` in one statement, which answers nothing and
  // rides along with the transaction's next (PgPool's `isBlindWrite`): one statement an order less.
  const updateAndSetLines =
    dialect === "pg" ? query("WITH s AS (UPDATE stock SET on_hand = ?, backordered = backordered + ? WHERE sku = ?) UPDATE stock_allocations SET lines = ? WHERE order_id = ?") : undefined
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

  const allocateOrder = Effect.fnUntraced(function* (order: OrderCreated) {
    // The stock rows first, locked in SKU order (instances locking the same rows never deadlock)
    // and read with their levels; the allocation record second: an order handled twice at once
    // waits here, then finds it done. On PostgreSQL the record comes first (`claim`, with the
    // first row): the second of an order handled twice at once waits there, then finds it done.
    const onHand = new Map<string, number>()
    const skus = [...new Set(order.items.map((i) => i.sku))].sort()
    const claimed = claim !== undefined && skus.length > 0 ? yield* claim.get(order.orderId, order.orderId, skus[0]) : undefined
    if (claimed !== undefined) {
      if (Number(claimed.fresh) === 0) {
        // Allocated before (and committed: a concurrent claim waits for the first's commit).
        const allocation = yield* done.get(order.orderId)
        return announce(order.orderId, allocation === undefined ? [] : linesOf(allocation))
      }
      // Its payment was denied before it reached us: nothing taken, the empty record kept.
      if (claimed.released != null) return announce(order.orderId, [])
      onHand.set(skus[0]!, claimed.on_hand == null ? 0 : Number(claimed.on_hand))
    }
    for (const sku of claimed === undefined ? skus : skus.slice(1)) {
      const row = yield* level.get(sku)
      onHand.set(sku, row === undefined ? 0 : Number(row.on_hand))
    }
    if (claimed === undefined) {
      const seen = yield* history.get(order.orderId, order.orderId)
      if (seen?.allocated != null) return announce(order.orderId, decodeLines(String(seen.allocated)))
      // Its payment was denied before it reached us (the two run in parallel): take nothing. The
      // empty allocation makes a redelivery of the order find it done.
      if (seen?.released != null) {
        yield* record.run(order.orderId, "[]")
        return announce(order.orderId, [])
      }
    }
    const lines = order.items.map((item) => {
      const line = allocate(item.sku, onHand.get(item.sku) ?? 0, item.qty)
      onHand.set(item.sku, line.remaining)
      return line
    })
    // The stock rows in the order's line order; the last with the record's lines when one statement takes both.
    const both = claimed === undefined || lines.length === 0 ? undefined : updateAndSetLines
    for (const line of both === undefined ? lines : lines.slice(0, -1)) yield* update.run(line.remaining, line.backordered, line.sku)
    const last = lines.at(-1)
    if (claimed === undefined) yield* record.run(order.orderId, JSON.stringify(lines))
    else if (both !== undefined && last !== undefined) yield* both.run(last.remaining, last.backordered, last.sku, JSON.stringify(lines), order.orderId)
    else yield* setLines.run(JSON.stringify(lines), order.orderId)
    return announce(order.orderId, lines)
  })

  /**
   * Once per order, whichever denial (or redelivery) comes first; a later one announces the same
   * release. (Messages of one order run one at a time, in order, so an allocation and a release of
   * the same order never interleave.)
   */
  const release = Effect.fnUntraced(function* (denied: PaymentDenied) {
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
    // An order locks its SKUs' stock rows: several orders share a group commit on PostgreSQL
    // (Processor.lockKeys). A denial's SKUs are those of the allocation it reads: not known before.
    // The warehouse's rows of its SKUs too: its `inventory-updated` (same SKUs) then runs in this
    // transaction on one instance on PostgreSQL (Consumer.chain: on keys its group locked first).
    lockKeys: (event) => (event.type === names.paymentDenied ? undefined : event.data.items.flatMap((i) => [stockKey(i.sku), Warehouse.stockKey(i.sku)])),
    handle: (event) => (event.type === names.paymentDenied ? release(event.data) : allocateOrder(event.data))
  })
}
