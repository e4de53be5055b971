/** Shipping: picks a shipping method, ships, announces `order-shipped` with a tracking id. */
import { Effect } from "effect"
import type { Envelope, Processor } from "@baton/core"
import { names, type Item, type OrderFulfilled, type OrderShipped } from "./Contract.ts"
import type { Deps } from "./Deps.ts"

/** Parcels of more than 10 units go by freight; others by standard post. */
export const method = (items: ReadonlyArray<Item>): "standard" | "freight" =>
  items.reduce((n, i) => n + i.qty, 0) > 10 ? "freight" : "standard"

export const make = ({ store, clock }: Deps): Processor => {
  const existing = store.query("SELECT method, tracking_id FROM shipments WHERE order_id = ?")
  // Atomic against another instance shipping the same order: the first insert wins, the other reads it.
  const insert = store.query("INSERT INTO shipments (order_id, method, tracking_id, at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING order_id")
  const shippedOf = (orderId: string, row: Readonly<Record<string, unknown>>): OrderShipped => ({ orderId, method: String(row.method), trackingId: String(row.tracking_id) })
  return {
    name: "shipping",
    consumes: [names.orderFulfilled],
    handle: (event: Envelope.Envelope) =>
      Effect.gen(function* () {
        const f = event.data as OrderFulfilled
        const row = yield* existing.get(f.orderId)
        if (row !== undefined) return [{ type: names.orderShipped, data: shippedOf(f.orderId, row) }]
        let shipped: OrderShipped = { orderId: f.orderId, method: method(f.items), trackingId: `TRK-${clock.newId().slice(0, 8).toUpperCase()}` }
        if ((yield* insert.run(shipped.orderId, shipped.method, shipped.trackingId, clock.now().toISOString())) === 0) {
          const won = yield* existing.get(f.orderId)
          if (won !== undefined) shipped = shippedOf(f.orderId, won)
        }
        return [{ type: names.orderShipped, data: shipped }]
      })
  }
}
