/** The order-entry app's events (docs/concepts.md, section 1): names and data shapes. */
import { Sensitive } from "@baton/core"
import { Schema } from "effect"

export const Item = Schema.Struct({
  sku: Schema.NonEmptyString,
  qty: Schema.Number.check(Schema.isInt({ message: "must be a whole number" }), Schema.isGreaterThan(0)),
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

export interface OrderCreated {
  readonly orderId: string
  readonly customerId: string
  readonly email: string
  readonly items: ReadonlyArray<Item>
  readonly total: number
  /** The card stays in the payment vault; events carry a token and the last four digits only. */
  readonly paymentToken: string
  readonly cardLast4: string
}

export interface PaymentApplied {
  readonly orderId: string
  readonly customerId: string
  readonly email: string
  readonly amount: number
  readonly authorization: string
  readonly items: ReadonlyArray<Item>
}

export interface PaymentDenied {
  readonly orderId: string
  readonly customerId: string
  readonly email: string
  readonly amount: number
  readonly reason: string
}

export interface StockLine {
  readonly sku: string
  readonly qty: number
  readonly taken: number
  readonly backordered: number
  readonly remaining: number
}

export interface InventoryUpdated {
  readonly orderId: string
  readonly lines: ReadonlyArray<StockLine>
  /** Units back-ordered over all lines; 0 when everything was in stock. */
  readonly shortfall: number
}

/** A denied order's allocation given back (the compensating step): each line's `taken` to stock, its `backordered` off the back-orders. */
export interface InventoryReleased {
  readonly orderId: string
  /** The allocation's lines; none when the denial arrived before the order (nothing was taken, nor will be). */
  readonly lines: ReadonlyArray<StockLine>
}

export interface StockReordered {
  readonly sku: string
  readonly qty: number
  readonly level: number
  readonly threshold: number
  readonly orderId: string
}

export interface OrderFulfilled {
  readonly orderId: string
  readonly customerId: string
  readonly email: string
  readonly items: ReadonlyArray<Item>
}

export interface OrderShipped {
  readonly orderId: string
  readonly method: string
  readonly trackingId: string
}

export interface EmailSent {
  readonly orderId: string
  readonly to: string
  readonly template: string
  readonly messageId: string
}

/** The seeded catalogue: BOOK-1 to BOOK-5, 1,000 units each. */
export const catalogue: ReadonlyArray<{ readonly sku: string; readonly title: string; readonly units: number }> = [1, 2, 3, 4, 5].map(
  (n) => ({ sku: `BOOK-${n}`, title: `Book ${n}`, units: 1000 })
)
