/** The order-entry app's events (docs/concepts.md, section 1): names, and each one's schema. */
import { Baton, Schema, Sensitive } from "@baton/sdk"

export const Item = Schema.Struct({
  sku: Schema.NonEmptyString,
  // At most a million units a line: the stock's counters stay exact (a sum of quantities past 2^53
  // would lose units), found by the order-entry property test through the testkit.
  qty: Schema.Number.check(Schema.isInt({ message: "must be a whole number" }), Schema.isGreaterThan(0), Schema.isLessThanOrEqualTo(1_000_000, { message: "must be at most 1000000" })),
  price: Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0))
})
export type Item = typeof Item.Type

export const PlaceOrder = Schema.Struct({
  customerId: Schema.NonEmptyString,
  email: Schema.String.check(Schema.isPattern(/^[^@\s]+@[^@\s]+\.[^@\s]+$/, { message: "must be an e-mail address" })),
  items: Schema.Array(Item).check(Schema.isMinLength(1, { message: "must hold at least one item" })),
  payment: Schema.Struct({
    // Masked in every rejection, log line and HTTP answer.
    card: Schema.String.check(Schema.isPattern(/^[0-9]{12,19}$/, { message: "must be 12 to 19 digits" })).annotate(Sensitive.annotation)
  })
})
export type PlaceOrder = typeof PlaceOrder.Type

export const names = {
  placeOrder: "place-order",
  orderCreated: "order-created",
  emailSent: "email-sent",
  paymentApplied: "payment-applied",
  paymentDenied: "payment-denied",
  inventoryUpdated: "inventory-updated",
  inventoryReleased: "inventory-released",
  stockReordered: "stock-reordered",
  orderFulfilled: "order-fulfilled",
  orderShipped: "order-shipped"
} as const

export const OrderCreated = Schema.Struct({
  orderId: Schema.String,
  customerId: Schema.String,
  email: Schema.String,
  items: Schema.Array(Item),
  total: Schema.Finite,
  /** The card stays in the payment vault; events carry a token and the last four digits only. */
  paymentToken: Schema.String,
  cardLast4: Schema.String
})
export type OrderCreated = typeof OrderCreated.Type

export const PaymentApplied = Schema.Struct({
  orderId: Schema.String,
  customerId: Schema.String,
  email: Schema.String,
  amount: Schema.Finite,
  authorization: Schema.String,
  items: Schema.Array(Item)
})
export type PaymentApplied = typeof PaymentApplied.Type

export const PaymentDenied = Schema.Struct({
  orderId: Schema.String,
  customerId: Schema.String,
  email: Schema.String,
  amount: Schema.Finite,
  reason: Schema.String
})
export type PaymentDenied = typeof PaymentDenied.Type

export const StockLine = Schema.Struct({ sku: Schema.String, qty: Schema.Finite, taken: Schema.Finite, backordered: Schema.Finite, remaining: Schema.Finite })
export type StockLine = typeof StockLine.Type

export const InventoryUpdated = Schema.Struct({
  orderId: Schema.String,
  lines: Schema.Array(StockLine),
  /** Units back-ordered over all lines; 0 when everything was in stock. */
  shortfall: Schema.Finite
})
export type InventoryUpdated = typeof InventoryUpdated.Type

/** A denied order's allocation given back (the compensating step): each line's `taken` to stock, its `backordered` off the back-orders. */
export const InventoryReleased = Schema.Struct({
  orderId: Schema.String,
  /** The allocation's lines; none when the denial arrived before the order (nothing was taken, nor will be). */
  lines: Schema.Array(StockLine)
})
export type InventoryReleased = typeof InventoryReleased.Type

export const StockReordered = Schema.Struct({ sku: Schema.String, qty: Schema.Finite, level: Schema.Finite, threshold: Schema.Finite, orderId: Schema.String })
export type StockReordered = typeof StockReordered.Type

export const OrderFulfilled = Schema.Struct({ orderId: Schema.String, customerId: Schema.String, email: Schema.String, items: Schema.Array(Item) })
export type OrderFulfilled = typeof OrderFulfilled.Type

export const OrderShipped = Schema.Struct({ orderId: Schema.String, method: Schema.String, trackingId: Schema.String })
export type OrderShipped = typeof OrderShipped.Type

export const EmailSent = Schema.Struct({ orderId: Schema.String, to: Schema.String, template: Schema.String, messageId: Schema.String })
export type EmailSent = typeof EmailSent.Type

/** The app's events: the initiating one (partitioned by customer) and those its processors announce. */
export const events = {
  placeOrder: Baton.initiating(names.placeOrder, PlaceOrder, { key: (order) => order.customerId }),
  orderCreated: Baton.event(names.orderCreated, OrderCreated),
  emailSent: Baton.event(names.emailSent, EmailSent),
  paymentApplied: Baton.event(names.paymentApplied, PaymentApplied),
  paymentDenied: Baton.event(names.paymentDenied, PaymentDenied),
  inventoryUpdated: Baton.event(names.inventoryUpdated, InventoryUpdated),
  inventoryReleased: Baton.event(names.inventoryReleased, InventoryReleased),
  stockReordered: Baton.event(names.stockReordered, StockReordered),
  orderFulfilled: Baton.event(names.orderFulfilled, OrderFulfilled),
  orderShipped: Baton.event(names.orderShipped, OrderShipped)
} as const

/**
 * What the order workflow adds to an event it sends as a command (mediator topology): the same
 * type, read with a wider schema by the processor that takes it.
 */
export const commands = {
  /** To payment: the order, with the card of a restarted workflow's corrected input. */
  chargeOrder: Baton.event(names.orderCreated, Schema.Struct({ ...OrderCreated.fields, card: Schema.optionalKey(Schema.String.annotate(Sensitive.annotation)) })),
  /** To notification: the shipment, with the customer's address for the "shipped" e-mail. */
  notifyShipped: Baton.event(names.orderShipped, Schema.Struct({ ...OrderShipped.fields, email: Schema.optionalKey(Schema.String), customerId: Schema.optionalKey(Schema.String) }))
} as const

/** The seeded catalogue: BOOK-1 to BOOK-5, 1,000 units each. */
export const catalogue: ReadonlyArray<{ readonly sku: string; readonly title: string; readonly units: number }> = [1, 2, 3, 4, 5].map(
  (n) => ({ sku: `BOOK-${n}`, title: `Book ${n}`, units: 1000 })
)
