/**
 * Broadcasting (docs/concepts.md, section 6): a live order-statistics counter added beside the
 * order-entry app without touching it. The producers do not know it exists; it subscribes to
 * events they already announce and keeps its own table, announcing `order-stats-updated`.
 */
import type { App, Processor } from "@baton/core"
import { ddl, type Store } from "@baton/store"
import { Effect } from "effect"

export interface Stats {
  readonly placed: number
  readonly paid: number
  readonly denied: number
  readonly shipped: number
  /** Sum of approved payments. */
  readonly revenue: number
}

const metric: Readonly<Record<string, keyof Stats>> = { "order-created": "placed", "payment-applied": "paid", "payment-denied": "denied", "order-shipped": "shipped" }

export const make = async (deps: { readonly store: Store }): Promise<App> => {
  const { store } = deps
  await store.migrate([
    {
      name: "order-stats/001-table",
      sql: ddl(
        (t) => `CREATE TABLE order_stats (metric TEXT PRIMARY KEY, value ${t.real} NOT NULL${t.rowid});
        INSERT INTO order_stats (metric, value) VALUES ('placed', 0), ('paid', 0), ('denied', 0), ('shipped', 0), ('revenue', 0);`
      )
    }
  ])
  // Atomic in SQL: instances counting at the same time on PostgreSQL each add their own.
  const add = store.query("UPDATE order_stats SET value = value + ? WHERE metric = ?")
  const all = store.query("SELECT metric, value FROM order_stats")
  const counter: Processor = {
    name: "order-stats",
    consumes: Object.keys(metric),
    handle: (event) =>
      Effect.gen(function* () {
        const name = metric[event.type]
        if (name === undefined) return []
        yield* add.run(1, name)
        if (event.type === "payment-applied") yield* add.run(Number((event.data as { amount?: number }).amount ?? 0), "revenue")
        const stats = Object.fromEntries((yield* all.all()).map((r) => [String(r.metric), Number(r.value)])) as unknown as Stats
        return [{ type: "order-stats-updated", data: stats, key: "order-stats" }]
      })
  }
  return { name: "order-stats", initiating: [], processors: [counter] }
}
