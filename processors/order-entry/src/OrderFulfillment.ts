/** OrderFulfillment: on `payment-applied`, picks and packs, announces `order-fulfilled`. */
import { Baton } from "@baton/sdk"
import { events } from "./Contract.ts"
import type { Deps } from "./Deps.ts"

export const make = ({ query, clock }: Deps) => {
  const record = query("INSERT INTO fulfillments (order_id, at) VALUES (?, ?) ON CONFLICT DO NOTHING")
  return Baton.processor({
    name: "order-fulfillment",
    on: events.paymentApplied,
    // Its one row is its order's (`fulfillments` by order id): a lane per message (Processor.ownRows).
    ownRows: true,
    handle: function* (event) {
      const p = event.data
      yield* record.run(p.orderId, clock.now().toISOString())
      return [events.orderFulfilled.make({ orderId: p.orderId, customerId: p.customerId, email: p.email, items: p.items })]
    }
  })
}
