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
