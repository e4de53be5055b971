/**
 * Broadcasting (docs/concepts.md, section 6), written with the public API only (`@baton/sdk`): a
 * live order-statistics counter added beside the order-entry app without touching it. The
 * producers do not know it exists; it subscribes to events they already announce, read through
 * its own schemas (only the fields it needs), and keeps its own table, announcing
 * `order-stats-updated`.
 */
import { Baton, ddl, Schema } from "@baton/sdk"

const Anything = Schema.Struct({})
export const OrderCreated = Baton.event("order-created", Anything)
/** Of a payment, the counter reads only its amount. */
export const PaymentApplied = Baton.event("payment-applied", Schema.Struct({ amount: Schema.optionalKey(Schema.Finite) }))
export const PaymentDenied = Baton.event("payment-denied", Anything)
export const OrderShipped = Baton.event("order-shipped", Anything)

export const StatsData = Schema.Struct({
  placed: Schema.Finite,
  paid: Schema.Finite,
  denied: Schema.Finite,
  shipped: Schema.Finite,
  /** Sum of approved payments. */
  revenue: Schema.Finite
})
export type Stats = typeof StatsData.Type
export const OrderStatsUpdated = Baton.event("order-stats-updated", StatsData)

const metric = {
  [OrderCreated.type]: "placed",
  [PaymentApplied.type]: "paid",
  [PaymentDenied.type]: "denied",
  [OrderShipped.type]: "shipped"
} as const satisfies Readonly<Record<string, keyof Stats>>

export const migrations = [
  {
    name: "order-stats/001-table",
    sql: ddl(
      (t) => `CREATE TABLE order_stats (metric TEXT PRIMARY KEY, value ${t.real} NOT NULL${t.rowid});
        INSERT INTO order_stats (metric, value) VALUES ('placed', 0), ('paid', 0), ('denied', 0), ('shipped', 0), ('revenue', 0);`
    )
  }
]

export default Baton.app("order-stats", (ctx) => {
  // Atomic in SQL: instances counting at the same time on PostgreSQL each add their own.
  const add = ctx.query("UPDATE order_stats SET value = value + ? WHERE metric = ?")
  const all = ctx.query("SELECT metric, value FROM order_stats")
  const counter = Baton.processor({
    name: "order-stats",
    on: [OrderCreated, PaymentApplied, PaymentDenied, OrderShipped],
    handle: function* (event) {
      yield* add.run(1, metric[event.type])
      if (event.type === PaymentApplied.type) yield* add.run(event.data.amount ?? 0, "revenue")
      const value = new Map((yield* all.all()).map((r) => [String(r.metric), Number(r.value)]))
      const of = (name: keyof Stats) => value.get(name) ?? 0
      return [OrderStatsUpdated.make({ placed: of("placed"), paid: of("paid"), denied: of("denied"), shipped: of("shipped"), revenue: of("revenue") }, { key: "order-stats" })]
    }
  })
  return {
    name: "order-stats",
    initiating: [],
    events: [OrderCreated, PaymentApplied, PaymentDenied, OrderShipped, OrderStatsUpdated],
    migrations,
    processors: [counter]
  }
})
