/** Warehouse: keeps its view of stock from `inventory-updated` and re-orders SKUs that run low. */
import { Baton, type Next } from "@baton/sdk"
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

/** The lock key of a SKU's `warehouse_stock` row (Processor.lockKeys). */
export const stockKey = (sku: string): string => `warehouse_stock/${sku}`

export const make = ({ query, dialect, clock }: Deps) => {
  // Atomic: of two instances handling the same order, the second waits for the first's commit and inserts nothing.
  const seen = query("INSERT INTO warehouse_seen (order_id) VALUES (?) ON CONFLICT DO NOTHING RETURNING order_id")
  // Sets a SKU's level and reads the rest of its row, in one statement: the update locks the row on
  // PostgreSQL (SQLite has one writer: nothing to lock) and answers its latest version (what a
  // concurrent order committed meanwhile). The level is the order's to set: what it leaves.
  const setLevel = query("UPDATE warehouse_stock SET level = ? WHERE sku = ? RETURNING threshold, reorder_qty, pending_reorder")
  // PostgreSQL: `seen` and the first SKU's `setLevel` in one statement and one round trip (an
  // order took three statements and two round trips: `seen`, a SELECT ... FOR UPDATE, the update).
  // Its one row says whether the order was new (`fresh`), with the SKU's row when it has one; the
  // update applies only when the order was new. SQLite runs no data-modifying WITH: two statements.
  const seenAndLevel =
    dialect === "pg"
      ? query(
          "WITH seen AS (INSERT INTO warehouse_seen (order_id) VALUES (?) ON CONFLICT DO NOTHING RETURNING order_id), u AS (UPDATE warehouse_stock SET level = ? WHERE sku = ? AND EXISTS (SELECT 1 FROM seen) RETURNING threshold, reorder_qty, pending_reorder) SELECT (SELECT COUNT(*) FROM seen) AS fresh, u.threshold, u.reorder_qty, u.pending_reorder FROM (SELECT 1 AS one) AS o LEFT JOIN u ON true"
        )
      : undefined
  const pending = query("UPDATE warehouse_stock SET pending_reorder = 1 WHERE sku = ?")
  const reorder = query("INSERT INTO reorders (sku, qty, order_id, at) VALUES (?, ?, ?, ?)")
  const levelOf = (row: Readonly<Record<string, unknown>> | undefined): Level | undefined =>
    row === undefined || row.threshold == null ? undefined : { level: 0, threshold: Number(row.threshold), reorderQty: Number(row.reorder_qty), pendingReorder: Number(row.pending_reorder) === 1 }

  return Baton.processor({
    name: "warehouse",
    on: events.inventoryUpdated,
    // It locks its SKUs' `warehouse_stock` rows: several updates share a group commit on PostgreSQL (Processor.lockKeys).
    lockKeys: (event) => event.data.lines.map((l) => stockKey(l.sku)),
    handle: function* (event) {
      const update = event.data
      // What each SKU's level becomes: what the order's last line of it leaves.
      const levels = new Map<string, number>()
      for (const line of update.lines) levels.set(line.sku, line.remaining)
      // The SKUs' rows set and read in SKU order (no deadlock between instances): a concurrent order
      // for the same SKU sees this one's pending re-order instead of ordering again.
      const skus = [...levels.keys()].sort()
      const rows = new Map<string, Level>()
      for (const [i, sku] of skus.entries()) {
        let row: Readonly<Record<string, unknown>> | undefined
        if (i > 0) row = yield* setLevel.get(levels.get(sku), sku)
        else if (seenAndLevel !== undefined) {
          row = yield* seenAndLevel.get(update.orderId, levels.get(sku), sku)
          if (Number(row?.fresh) === 0) return []
        } else {
          if ((yield* seen.run(update.orderId)) === 0) return []
          row = yield* setLevel.get(levels.get(sku), sku)
        }
        const level = levelOf(row)
        if (level !== undefined) rows.set(sku, level)
      }
      if (skus.length === 0 && (yield* seen.run(update.orderId)) === 0) return []
      const out: Array<Next> = []
      for (const line of update.lines) {
        const row = rows.get(line.sku)
        if (row === undefined) continue
        const s: Level = { ...row, level: line.remaining }
        if (!shouldReorder(s)) continue
        yield* pending.run(line.sku)
        rows.set(line.sku, { ...row, pendingReorder: true })
        yield* reorder.run(line.sku, s.reorderQty, update.orderId, clock.now().toISOString())
        out.push(events.stockReordered.make({ sku: line.sku, qty: s.reorderQty, level: s.level, threshold: s.threshold, orderId: update.orderId }, { key: line.sku }))
      }
      return out
    }
  })
}
