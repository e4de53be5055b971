/** Warehouse: keeps its view of stock from `inventory-updated` and re-orders SKUs that run low. */
import type { Envelope, Processor } from "@baton/core"
import { names, type InventoryUpdated, type StockReordered } from "./Contract.ts"
import type { Deps } from "./Deps.ts"

export interface Level {
  readonly level: number
  readonly threshold: number
  readonly reorderQty: number
  readonly pendingReorder: boolean
}

/** Re-order when the level falls under the threshold and no re-order is on its way. */
export const shouldReorder = (s: Level): boolean => s.level < s.threshold && !s.pendingReorder

export const make = ({ store, clock }: Deps): Processor => {
  const db = store.db
  const seen = db.prepare("INSERT OR IGNORE INTO warehouse_seen (order_id) VALUES (?)")
  const get = db.prepare("SELECT level, threshold, reorder_qty, pending_reorder FROM warehouse_stock WHERE sku = ?")
  const setLevel = db.prepare("UPDATE warehouse_stock SET level = ? WHERE sku = ?")
  const pending = db.prepare("UPDATE warehouse_stock SET pending_reorder = 1 WHERE sku = ?")
  const reorder = db.prepare("INSERT INTO reorders (sku, qty, order_id, at) VALUES (?, ?, ?, ?)")

  return {
    name: "warehouse",
    consumes: [names.inventoryUpdated],
    handle: (event: Envelope.Envelope) => {
      const update = event.data as InventoryUpdated
      return store.transaction(() => {
        if (seen.run(update.orderId).changes === 0) return []
        const out: Array<{ type: string; data: StockReordered; key: string }> = []
        for (const line of update.lines) {
          const row = get.get(line.sku)
          if (row === undefined) continue
          setLevel.run(line.remaining, line.sku)
          const s: Level = { level: line.remaining, threshold: Number(row.threshold), reorderQty: Number(row.reorder_qty), pendingReorder: row.pending_reorder === 1 }
          if (!shouldReorder(s)) continue
          pending.run(line.sku)
          reorder.run(line.sku, s.reorderQty, update.orderId, clock.now().toISOString())
          out.push({ type: names.stockReordered, key: line.sku, data: { sku: line.sku, qty: s.reorderQty, level: s.level, threshold: s.threshold, orderId: update.orderId } })
        }
        return out
      })
    }
  }
}
