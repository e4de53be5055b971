/** Shipping: picks a shipping method, ships, announces `order-shipped` with a tracking id. */
import { Baton, Effect } from "@baton/sdk"
import { events, type Item, type OrderShipped } from "./Contract.ts"
import type { Deps } from "./Deps.ts"
import * as Reference from "./Reference.ts"

/** Parcels of more than 10 units go by freight; others by standard post. */
export const method = (items: ReadonlyArray<Item>): "standard" | "freight" =>
  items.reduce((n, i) => n + i.qty, 0) > 10 ? "freight" : "standard"

export const make = ({ query, clock }: Deps) => {
  const existing = query("SELECT method, tracking_id FROM shipments WHERE order_id = ?")
  // Atomic against another instance shipping the same order: the first insert wins, the other reads it.
  const insert = query("INSERT INTO shipments (order_id, method, tracking_id, at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING order_id")
  const shippedOf = (orderId: string, row: Readonly<Record<string, unknown>>): OrderShipped => ({ orderId, method: String(row.method), trackingId: String(row.tracking_id) })
  return Baton.processor({
    name: "shipping",
    on: events.orderFulfilled,
    // Its one row is its order's (`shipments` by order id): a lane per message (Processor.ownRows).
    ownRows: true,
    handle: (event) =>
      Effect.gen(function* () {
        const f = event.data
        // Inserted first (one statement in the usual case); a redelivery, or another instance that
        // shipped it first, inserts nothing and reads the shipment recorded.
        let shipped: OrderShipped = { orderId: f.orderId, method: method(f.items), trackingId: `TRK-${Reference.of(f.orderId, 0).toUpperCase()}` }
        if ((yield* insert.run(shipped.orderId, shipped.method, shipped.trackingId, clock.now().toISOString())) === 0) {
          const won = yield* existing.get(f.orderId)
          if (won !== undefined) shipped = shippedOf(f.orderId, won)
        }
        return [events.orderShipped.make(shipped)]
      })
  })
}
