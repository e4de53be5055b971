/** OrderFulfillment: on `payment-applied`, picks and packs, announces `order-fulfilled`. */
import type { Envelope, Processor } from "@baton/core"
import { names, type OrderFulfilled, type PaymentApplied } from "./Contract.ts"
import type { Deps } from "./Deps.ts"

export const make = ({ store, clock }: Deps): Processor => {
  const record = store.db.prepare("INSERT OR IGNORE INTO fulfillments (order_id, at) VALUES (?, ?)")
  return {
    name: "order-fulfillment",
    consumes: [names.paymentApplied],
    handle: (event: Envelope.Envelope) => {
      const p = event.data as PaymentApplied
      record.run(p.orderId, clock.now().toISOString())
      const data: OrderFulfilled = { orderId: p.orderId, customerId: p.customerId, email: p.email, items: p.items }
      return [{ type: names.orderFulfilled, data }]
    }
  }
}
