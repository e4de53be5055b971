/** Warehouse: keeps its view of stock from `inventory-updated` and re-orders SKUs that run low. */
import { Baton, Effect, forUpdate, type Next } from "@baton/sdk"
import { events } from "./Contract.ts"
import type { Deps } from "./Deps.ts"

export interface Level {
  readonly level: number
  readonly threshold: number
  readonly reorderQty: number
  readonly pendingReorder: boolean
}

/** Re-order when the level falls under the threshold and no re-order is on its way. */
export const shouldReorder = (s: Level): boolean => s.level < s.threshold && !s.pendingReorder

export const make = ({ query, dialect, clock }: Deps) => {
  // Atomic: of two instances handling the same order, the second waits for the first's commit and inserts nothing.
  const seen = query("INSERT INTO warehouse_seen (order_id) VALUES (?) ON CONFLICT DO NOTHING RETURNING order_id")
  // Locks the row on PostgreSQL (SQLite has one writer: nothing to lock) and reads it, in one statement.
  const get = query(`SELECT threshold, reorder_qty, pending_reorder FROM warehouse_stock WHERE sku = ?${forUpdate(dialect)}`)
  const setLevel = query("UPDATE warehouse_stock SET level = ? WHERE sku = ?")
  const pending = query("UPDATE warehouse_stock SET pending_reorder = 1 WHERE sku = ?")
  const reorder = query("INSERT INTO reorders (sku, qty, order_id, at) VALUES (?, ?, ?, ?)")

  return Baton.processor({
    name: "warehouse",
    on: events.inventoryUpdated,
    handle: (event) =>
      Effect.gen(function* () {
        const update = event.data
        if ((yield* seen.run(update.orderId)) === 0) return []
        // The SKUs' rows locked (and read) in SKU order (no deadlock between instances): a concurrent
        // order for the same SKU sees this one's pending re-order instead of ordering again.
        const rows = new Map<string, Level>()
        for (const sku of [...new Set(update.lines.map((l) => l.sku))].sort()) {
          const row = yield* get.get(sku)
          if (row !== undefined) rows.set(sku, { level: 0, threshold: Number(row.threshold), reorderQty: Number(row.reorder_qty), pendingReorder: Number(row.pending_reorder) === 1 })
        }
        const out: Array<Next> = []
        for (const line of update.lines) {
          const row = rows.get(line.sku)
          if (row === undefined) continue
          yield* setLevel.run(line.remaining, line.sku)
          const s: Level = { ...row, level: line.remaining }
          if (!shouldReorder(s)) continue
          yield* pending.run(line.sku)
          rows.set(line.sku, { ...row, pendingReorder: true })
          yield* reorder.run(line.sku, s.reorderQty, update.orderId, clock.now().toISOString())
          out.push(events.stockReordered.make({ sku: line.sku, qty: s.reorderQty, level: s.level, threshold: s.threshold, orderId: update.orderId }, { key: line.sku }))
        }
        return out
      })
  })
}
