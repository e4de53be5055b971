/** Shipping: picks a shipping method, ships, announces `order-shipped` with a tracking id. */
import type { Envelope, Processor } from "@baton/core"
import { names, type Item, type OrderFulfilled, type OrderShipped } from "./Contract.ts"
import type { Deps } from "./Deps.ts"

/** Parcels of more than 10 units go by freight; others by standard post. */
export const method = (items: ReadonlyArray<Item>): "standard" | "freight" =>
  items.reduce((n, i) => n + i.qty, 0) > 10 ? "freight" : "standard"

export const make = ({ store, clock }: Deps): Processor => {
  const db = store.db
  const existing = db.prepare("SELECT method, tracking_id FROM shipments WHERE order_id = ?")
  const insert = db.prepare("INSERT INTO shipments (order_id, method, tracking_id, at) VALUES (?, ?, ?, ?)")
  return {
    name: "shipping",
    consumes: [names.orderFulfilled],
    handle: (event: Envelope.Envelope) => {
      const f = event.data as OrderFulfilled
      return store.transaction(() => {
        const row = existing.get(f.orderId)
        const shipped: OrderShipped =
          row !== undefined
            ? { orderId: f.orderId, method: String(row.method), trackingId: String(row.tracking_id) }
            : { orderId: f.orderId, method: method(f.items), trackingId: `TRK-${clock.newId().slice(0, 8).toUpperCase()}` }
        if (row === undefined) insert.run(shipped.orderId, shipped.method, shipped.trackingId, clock.now().toISOString())
        return [{ type: names.orderShipped, data: shipped }]
      })
    }
  }
}
