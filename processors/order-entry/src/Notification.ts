/**
 * Notification: e-mails the customer on `order-created` (confirmation), `payment-denied` (ask for
 * another payment method) and `order-fulfilled` (ready to ship); announces `email-sent` each time.
 * The mail is sent before the transaction (at least once through SMTP); the record of it is
 * written in the transaction (exactly once in the store).
 */
import type { Envelope, Processor } from "@baton/core"
import { names, type EmailSent, type OrderCreated, type OrderFulfilled, type PaymentDenied } from "./Contract.ts"
import type { Deps } from "./Deps.ts"
import type { Mail, Sent } from "./Mailer.ts"

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

type Prepared = { readonly letter: Letter; readonly sent: Sent } | undefined

export const make = ({ store, mailer, clock }: Deps): Processor<Prepared> => {
  const db = store.db
  const insert = db.prepare(
    "INSERT OR IGNORE INTO emails (cause_id, order_id, recipient, template, message_id, message, at) VALUES (?, ?, ?, ?, ?, ?, ?)"
  )
  const existing = db.prepare("SELECT order_id, recipient, template, message_id FROM emails WHERE cause_id = ?")
  return {
    name: "notification",
    consumes: [names.orderCreated, names.paymentDenied, names.orderFulfilled],
    prepare: async (event) => {
      const l = letter(event)
      if (l === undefined || existing.get(event.id) !== undefined) return undefined
      return { letter: l, sent: await mailer.send(l) }
    },
    handle: (event, prepared) => {
      if (prepared !== undefined) {
        const { letter: l, sent } = prepared
        insert.run(event.id, l.orderId, l.to, l.template, sent.messageId, sent.message ?? null, clock.now().toISOString())
      }
      const row = existing.get(event.id)
      if (row === undefined) return []
      const data: EmailSent = { orderId: String(row.order_id), to: String(row.recipient), template: String(row.template), messageId: String(row.message_id) }
      return [{ type: names.emailSent, data }]
    }
  }
}
