/**
 * Notification: e-mails the customer on `order-created` (confirmation), `payment-denied` (ask for
 * another payment method) and `order-fulfilled` (ready to ship); announces `email-sent` each time.
 * The mediator also sends it `order-shipped` with the customer's address (shipped).
 * The mail is sent before the transaction (at least once through SMTP); the record of it is
 * written in the transaction (exactly once in the store).
 */
import { Effect } from "effect"
import type { Envelope } from "@baton/core"
import { names, type EmailSent, type OrderCreated, type OrderFulfilled, type OrderShipped, type PaymentDenied } from "./Contract.ts"
import type { Deps } from "./Deps.ts"
import * as Mailer from "./Mailer.ts"
import type { Mail } from "./Mailer.ts"

export type Template = "order-confirmation" | "payment-method-declined" | "ready-to-ship" | "shipped"

export interface Letter extends Mail {
  readonly template: Template
  readonly orderId: string
}

/** The letter for an event, or undefined when the event asks for none. */
export const letter = (event: Pick<Envelope.Envelope, "type" | "data">): Letter | undefined => {
  switch (event.type) {
    case names.orderCreated: {
      const o = event.data as OrderCreated
      return {
        template: "order-confirmation",
        orderId: o.orderId,
        to: o.email,
        subject: `Order ${o.orderId} received`,
        text: `Thank you for your order ${o.orderId}: ${o.items.map((i) => `${i.qty} x ${i.sku}`).join(", ")}, total ${o.total.toFixed(2)}.`
      }
    }
    case names.paymentDenied: {
      const p = event.data as PaymentDenied
      return {
        template: "payment-method-declined",
        orderId: p.orderId,
        to: p.email,
        subject: `Order ${p.orderId}: please use another payment method`,
        text: `We could not charge your card for order ${p.orderId} (${p.reason}). Please choose another payment method.`
      }
    }
    case names.orderFulfilled: {
      const f = event.data as OrderFulfilled
      return { template: "ready-to-ship", orderId: f.orderId, to: f.email, subject: `Order ${f.orderId} is ready to ship`, text: `Your order ${f.orderId} is packed and ready to ship.` }
    }
    case names.orderShipped: {
      // The mediator's "shipped" e-mail: the shipment with the customer's address added.
      const s = event.data as OrderShipped & { readonly email?: string }
      if (s.email === undefined) return undefined
      return { template: "shipped", orderId: s.orderId, to: s.email, subject: `Order ${s.orderId} has shipped`, text: `Your order ${s.orderId} is on its way by ${s.method} post, tracking ${s.trackingId}.` }
    }
    default:
      return undefined
  }
}

export const make = ({ store, mailer, clock }: Deps) => {
  const insert = store.query(
    "INSERT INTO emails (cause_id, order_id, recipient, template, message_id, message, at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
  )
  const existing = store.query("SELECT order_id, recipient, template, message_id FROM emails WHERE cause_id = ?")
  return Mailer.processor({
    name: "notification",
    consumes: [names.orderCreated, names.paymentDenied, names.orderFulfilled],
    mailer,
    store,
    letter,
    record: (event, l, sent) => insert.run(event.id, l.orderId, l.to, l.template, sent.messageId, sent.message ?? null, clock.now().toISOString()),
    recorded: (event) =>
      Effect.map(existing.get(event.id), (row) => {
        if (row === undefined) return undefined
        const data: EmailSent = { orderId: String(row.order_id), to: String(row.recipient), template: String(row.template), messageId: String(row.message_id) }
        return data
      })
  })
}
