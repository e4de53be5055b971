/**
 * The order workflow of the mediator topology (docs/concepts.md, section 2), as data. The commands go
 * to the same processors the broker topology runs; each takes its command as the event type it
 * already understands, and its results are what it would have announced.
 */
import { Schema } from "effect"
import { WorkflowData, type Workflow } from "@baton/sdk"
import { events, names, type PaymentDenied } from "./Contract.ts"

type Data = Workflow.Data
const { need, find } = WorkflowData

const order = (d: Data) => need(d, events.orderCreated)
/** The card of the input, which a restart may have corrected. */
const Card = Schema.Struct({ payment: Schema.Struct({ card: Schema.String }) })
const card = (d: Data) => WorkflowData.input(d, Card).payment.card

export const workflow: Workflow.Workflow = {
  name: names.placeOrder,
  domain: "order",
  steps: [
    { name: "create-order", commands: [{ name: "create-order", channel: "order-placement", type: names.placeOrder, data: (d) => d.input }] },
    {
      name: "payment-and-inventory",
      commands: [
        { name: "email-customer", channel: "notification", type: names.orderCreated, data: order },
        // The card travels with the command (never broadcast), so a restart can patch it.
        { name: "apply-payment", channel: "payment", type: names.orderCreated, data: (d) => ({ ...order(d), card: card(d) }) },
        { name: "adjust-inventory", channel: "inventory", type: names.orderCreated, data: order }
      ],
      decide: (d) => (find(d, events.paymentDenied) === undefined ? undefined : "denied")
    },
    {
      name: "fulfil-and-restock",
      commands: [
        { name: "fulfill-order", channel: "order-fulfillment", type: names.paymentApplied, data: (d) => need(d, events.paymentApplied) },
        { name: "order-stock", channel: "warehouse", type: names.inventoryUpdated, data: (d) => need(d, events.inventoryUpdated) }
      ]
    },
    {
      name: "ship",
      commands: [
        { name: "ship-order", channel: "shipping", type: names.orderFulfilled, data: (d) => need(d, events.orderFulfilled) },
        { name: "email-customer", channel: "notification", type: names.orderFulfilled, data: (d) => need(d, events.orderFulfilled) }
      ]
    },
    {
      name: "notify-shipped",
      commands: [
        {
          name: "email-customer",
          channel: "notification",
          type: names.orderShipped,
          data: (d) => ({ ...need(d, events.orderShipped), email: order(d).email, customerId: order(d).customerId })
        }
      ]
    }
  ],
  branches: {
    // The compensating step: the stock taken at step 2 goes back (once per order, whatever the resends).
    denied: [
      {
        name: "release-stock-and-ask-for-another-card",
        commands: [
          { name: "release-inventory", channel: "inventory", type: names.paymentDenied, data: (d) => need(d, events.paymentDenied) },
          { name: "email-customer", channel: "notification", type: names.paymentDenied, data: (d) => need(d, events.paymentDenied) }
        ]
      }
    ]
  },
  // A failed order an operator discards gives its stock back, like a declined one (Inventory's release is
  // once per order, and takes nothing back when nothing was taken). No order, no stock: nothing to send.
  onDiscard: [
    {
      name: "release-inventory",
      channel: "inventory",
      type: names.paymentDenied,
      when: (d) => find(d, events.orderCreated) !== undefined,
      data: (d): PaymentDenied => ({ orderId: order(d).orderId, customerId: order(d).customerId, email: order(d).email, amount: order(d).total, reason: "workflow discarded" })
    }
  ],
  reply: { after: "create-order", data: (d) => ({ orderId: order(d).orderId, total: order(d).total }) },
  summary: (d) => {
    const created = find(d, events.orderCreated)
    const shipped = find(d, events.orderShipped)
    return { ...(created === undefined ? {} : { orderId: created.orderId }), ...(shipped === undefined ? {} : { trackingId: shipped.trackingId }) }
  }
}

/** The order domain's entries in the simple mediator's rule table. */
export const rules: ReadonlyArray<Workflow.Rule> = [{ type: names.placeOrder, kind: "complex", workflow: workflow.name }]
