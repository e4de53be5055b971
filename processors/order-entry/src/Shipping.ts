/** Shipping: picks a shipping method, ships, announces `order-shipped` with a tracking id. */
import { Baton, Effect } from "@baton/sdk"
import { events, type Item, type OrderShipped } from "./Contract.ts"
import type { Deps } from "./Deps.ts"
import * as Reference from "./Reference.ts"

/** Parcels of more than 10 units go by freight; others by standard post. */
export const method = (items: ReadonlyArray<Item>): "standard" | "freight" =>
  items.reduce((n, i) => n + i.qty, 0) > 10 ? "freight" : "standard"

export const make = ({ query, clock }: Deps) => {
  // A redelivery, or another instance that shipped the order first, inserts nothing: the shipment
  // it would announce is the one recorded (its tracking id the order's own, `Reference`), so the
  // insert's answer decides nothing and is not waited for (PostgreSQL: it goes out with the commit).
  const insert = query("INSERT INTO shipments (order_id, method, tracking_id, at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING")
  return Baton.processor({
    name: "shipping",
    on: events.orderFulfilled,
    // Its one row is its order's (`shipments` by order id): a lane per message (Processor.ownRows).
    ownRows: true,
    handle: (event) => {
      const f = event.data
      const shipped: OrderShipped = { orderId: f.orderId, method: method(f.items), trackingId: `TRK-${Reference.of(f.orderId, 0).toUpperCase()}` }
      return Effect.as(insert.write(shipped.orderId, shipped.method, shipped.trackingId, clock.now().toISOString()), [events.orderShipped.make(shipped)])
    }
  })
}
