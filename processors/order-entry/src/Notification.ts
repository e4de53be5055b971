/**
 * Notification: e-mails the customer on `order-created` (confirmation), `payment-denied` (ask for
 * another payment method) and `order-fulfilled` (ready to ship); announces `email-sent` each time.
 */
import type { Envelope, Processor } from "@baton/core"
import { names, type EmailSent, type OrderCreated, type OrderFulfilled, type PaymentDenied } from "./Contract.ts"
import type { Deps } from "./Deps.ts"
import type { Mail } from "./Mailer.ts"

export type Template = "order-confirmation" | "payment-method-declined" | "ready-to-ship"

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
    default:
      return undefined
  }
}

export const make = ({ store, mailer, clock }: Deps): Processor => {
  const db = store.db
  const existing = db.prepare("SELECT order_id, recipient, template, message_id FROM emails WHERE cause_id = ?")
  const insert = db.prepare("INSERT INTO emails (cause_id, order_id, recipient, template, message_id, message, at) VALUES (?, ?, ?, ?, ?, ?, ?)")
  const announce = (data: EmailSent) => [{ type: names.emailSent, data }]
  return {
    name: "notification",
    consumes: [names.orderCreated, names.paymentDenied, names.orderFulfilled],
    handle: async (event: Envelope.Envelope) => {
      const row = existing.get(event.id)
      if (row !== undefined)
        return announce({ orderId: String(row.order_id), to: String(row.recipient), template: String(row.template), messageId: String(row.message_id) })
      const l = letter(event)
      if (l === undefined) return []
      const sent = await mailer.send(l)
      insert.run(event.id, l.orderId, l.to, l.template, sent.messageId, sent.message ?? null, clock.now().toISOString())
      return announce({ orderId: l.orderId, to: l.to, template: l.template, messageId: sent.messageId })
    }
  }
}
