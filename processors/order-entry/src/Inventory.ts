/** Inventory: decrements stock; what is not in stock is back-ordered, never refused. */
import { Effect } from "effect"
import type { Envelope, Processor } from "@baton/core"
import { Postgres } from "@baton/store"
import { names, type InventoryUpdated, type OrderCreated, type StockLine } from "./Contract.ts"
import type { Deps } from "./Deps.ts"

/** Takes `qty` units from `onHand`; the rest is back-ordered. */
export const allocate = (sku: string, onHand: number, qty: number): StockLine => {
  const taken = Math.min(Math.max(onHand, 0), qty)
  return { sku, qty, taken, backordered: qty - taken, remaining: onHand - taken }
}

export const make = ({ store }: Deps): Processor => {
  const done = store.query("SELECT lines FROM stock_allocations WHERE order_id = ?")
  // Locks the row on PostgreSQL: another instance's order for the same SKU waits for this one's commit.
  const lock = store.query(`SELECT sku FROM stock WHERE sku = ?${Postgres.forUpdate(store.dialect)}`)
  const level = store.query("SELECT on_hand FROM stock WHERE sku = ?")
  const update = store.query("UPDATE stock SET on_hand = ?, backordered = backordered + ? WHERE sku = ?")
  const record = store.query("INSERT INTO stock_allocations (order_id, lines) VALUES (?, ?)")

  const announce = (orderId: string, lines: ReadonlyArray<StockLine>) => {
    const data: InventoryUpdated = { orderId, lines, shortfall: lines.reduce((n, l) => n + l.backordered, 0) }
    return [{ type: names.inventoryUpdated, data }]
  }

  return {
    name: "inventory",
    consumes: [names.orderCreated],
    handle: (event: Envelope.Envelope) =>
      Effect.gen(function* () {
        const order = event.data as OrderCreated
        // The stock rows first, in SKU order (instances locking the same rows never deadlock); the
        // allocation record second: an order handled twice at once waits here, then finds it done.
        const skus = [...new Set(order.items.map((i) => i.sku))].sort()
        // (SQLite has one writer: nothing to lock.)
        if (store.dialect === "pg") yield* Effect.forEach(skus, (sku) => lock.all(sku), { discard: true })
        const seen = yield* done.get(order.orderId)
        if (seen !== undefined) return announce(order.orderId, JSON.parse(String(seen.lines)) as Array<StockLine>)
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
  }
}
