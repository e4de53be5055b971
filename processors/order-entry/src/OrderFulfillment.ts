/** OrderFulfillment: on `payment-applied`, picks and packs, announces `order-fulfilled`. */
import { Effect } from "effect"
import type { Envelope, Processor } from "@baton/core"
import { names, type OrderFulfilled, type PaymentApplied } from "./Contract.ts"
import type { Deps } from "./Deps.ts"

export const make = ({ store, clock }: Deps): Processor => {
  const record = store.query("INSERT INTO fulfillments (order_id, at) VALUES (?, ?) ON CONFLICT DO NOTHING")
  return {
    name: "order-fulfillment",
    consumes: [names.paymentApplied],
    handle: (event: Envelope.Envelope) =>
      Effect.gen(function* () {
        const p = event.data as PaymentApplied
        yield* record.run(p.orderId, clock.now().toISOString())
        const data: OrderFulfilled = { orderId: p.orderId, customerId: p.customerId, email: p.email, items: p.items }
        return [{ type: names.orderFulfilled, data }]
      })
  }
}
