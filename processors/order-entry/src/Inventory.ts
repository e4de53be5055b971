/**
 * Inventory: decrements stock; what is not in stock is back-ordered, never refused. On
 * `payment-denied` it gives the order's allocation back (the compensating step, once per order).
 */
import { Effect } from "effect"
import type { Envelope, Processor } from "@baton/core"
import { Postgres } from "@baton/store"
import { names, type InventoryReleased, type InventoryUpdated, type OrderCreated, type PaymentDenied, type StockLine } from "./Contract.ts"
import type { Deps } from "./Deps.ts"

/** Takes `qty` units from `onHand`; the rest is back-ordered. */
export const allocate = (sku: string, onHand: number, qty: number): StockLine => {
  const taken = Math.min(Math.max(onHand, 0), qty)
  return { sku, qty, taken, backordered: qty - taken, remaining: onHand - taken }
}

const linesOf = (row: Readonly<Record<string, unknown>>): Array<StockLine> => JSON.parse(String(row.lines)) as Array<StockLine>

export const make = ({ store, clock }: Deps): Processor => {
  const done = store.query("SELECT lines FROM stock_allocations WHERE order_id = ?")
  // Locks the row on PostgreSQL: another instance's order for the same SKU waits for this one's commit.
  const lock = store.query(`SELECT sku FROM stock WHERE sku = ?${Postgres.forUpdate(store.dialect)}`)
  const level = store.query("SELECT on_hand FROM stock WHERE sku = ?")
  const update = store.query("UPDATE stock SET on_hand = ?, backordered = backordered + ? WHERE sku = ?")
  const record = store.query("INSERT INTO stock_allocations (order_id, lines) VALUES (?, ?)")
  const released = store.query("SELECT lines FROM stock_releases WHERE order_id = ?")
  // Atomic: of two releases of one order at once, the second waits for the first's commit and inserts nothing.
  const tombstone = store.query("INSERT INTO stock_releases (order_id, lines, at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING RETURNING order_id")
  const giveBack = store.query("UPDATE stock SET on_hand = on_hand + ?, backordered = backordered - ? WHERE sku = ?")

  // The stock rows in SKU order (instances locking the same rows never deadlock). (SQLite has one writer: nothing to lock.)
  const lockStock = (skus: ReadonlyArray<string>) =>
    store.dialect === "pg" ? Effect.forEach([...new Set(skus)].sort(), (sku) => lock.all(sku), { discard: true }) : Effect.void

  const announce = (orderId: string, lines: ReadonlyArray<StockLine>) => {
    const data: InventoryUpdated = { orderId, lines, shortfall: lines.reduce((n, l) => n + l.backordered, 0) }
    return [{ type: names.inventoryUpdated, data }]
  }
  const announceRelease = (orderId: string, lines: ReadonlyArray<StockLine>) => {
    const data: InventoryReleased = { orderId, lines }
    return [{ type: names.inventoryReleased, data }]
  }

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

  return {
    name: "inventory",
    consumes: [names.orderCreated, names.paymentDenied],
    handle: (event: Envelope.Envelope) => (event.type === names.paymentDenied ? release(event.data as PaymentDenied) : allocateOrder(event.data as OrderCreated))
  }
}
