import type { Envelope } from "@baton/core"

/**
 * What each processor of the reference order workflow answers to a command, for tests: `order` is
 * the data `order-created` carries (and the payment events extend).
 */
export const resultsFor =
  (order: { readonly orderId: string } & Record<string, unknown>) =>
  (name: string, approve: boolean): ReadonlyArray<{ type: string; data: unknown }> => {
    switch (name) {
      case "create-order":
        return [{ type: "order-created", data: order }]
      case "apply-payment":
        return approve ? [{ type: "payment-applied", data: { ...order, amount: 2, authorization: "a" } }] : [{ type: "payment-denied", data: { ...order, amount: 2, reason: "declined" } }]
      case "adjust-inventory":
        return [{ type: "inventory-updated", data: { orderId: order.orderId, lines: [], shortfall: 0 } }]
      case "fulfill-order":
        return [{ type: "order-fulfilled", data: order }]
      case "ship-order":
        return [{ type: "order-shipped", data: { orderId: order.orderId, method: "standard", trackingId: "TRK-1" } }]
      case "order-stock":
        return []
      default:
        return [{ type: "email-sent", data: { orderId: order.orderId } }]
    }
  }

/** The reference order (a workflow's input), and its `order-created` as order placement announces it. */
export const order = { orderId: "ORD-1", customerId: "c1", email: "c1@example.com", items: [{ sku: "BOOK-1", qty: 1, price: 2 }], total: 2, payment: { card: "4242424242424242" } }
export const created = { ...order, paymentToken: "tok_1", cardLast4: "4242" }

/** The answers for the reference order. */
export const resultsOf = resultsFor(created)

/** An input of the workflow `wf-1`. */
export const envelope = (id: string, type: string, data: unknown): Envelope.Envelope => ({
  id,
  type,
  key: "wf-1",
  correlationId: "wf-1",
  causationId: id,
  occurredAt: new Date(0).toISOString(),
  data
})
