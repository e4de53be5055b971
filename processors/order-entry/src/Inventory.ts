/** Inventory: decrements stock; what is not in stock is back-ordered, never refused. */
import type { Envelope, Processor } from "@baton/core"
import { names, type InventoryUpdated, type OrderCreated, type StockLine } from "./Contract.ts"
import type { Deps } from "./Deps.ts"

/** Takes `qty` units from `onHand`; the rest is back-ordered. */
export const allocate = (sku: string, onHand: number, qty: number): StockLine => {
  const taken = Math.min(Math.max(onHand, 0), qty)
  return { sku, qty, taken, backordered: qty - taken, remaining: onHand - taken }
}

export const make = ({ store }: Deps): Processor => {
  const db = store.db
  const done = db.prepare("SELECT lines FROM stock_allocations WHERE order_id = ?")
  const level = db.prepare("SELECT on_hand FROM stock WHERE sku = ?")
  const update = db.prepare("UPDATE stock SET on_hand = ?, backordered = backordered + ? WHERE sku = ?")
  const record = db.prepare("INSERT INTO stock_allocations (order_id, lines) VALUES (?, ?)")

  const announce = (orderId: string, lines: ReadonlyArray<StockLine>) => {
    const data: InventoryUpdated = { orderId, lines, shortfall: lines.reduce((n, l) => n + l.backordered, 0) }
    return [{ type: names.inventoryUpdated, data }]
  }

  return {
    name: "inventory",
    consumes: [names.orderCreated],
    handle: (event: Envelope.Envelope) => {
      const order = event.data as OrderCreated
      return store.transaction(() => {
        const seen = done.get(order.orderId)
        if (seen !== undefined) return announce(order.orderId, JSON.parse(String(seen.lines)) as Array<StockLine>)
        const lines = order.items.map((item) => {
          const row = level.get(item.sku)
          const line = allocate(item.sku, row === undefined ? 0 : Number(row.on_hand), item.qty)
          update.run(line.remaining, line.backordered, item.sku)
          return line
        })
        record.run(order.orderId, JSON.stringify(lines))
        return announce(order.orderId, lines)
      })
    }
  }
}
