/**
 * Notification: e-mails the customer on `order-created` (confirmation), `payment-denied` (ask for
 * another payment method) and `order-fulfilled` (ready to ship); announces `email-sent` each time.
 * The mediator also sends it `order-shipped` with the customer's address (shipped).
 * The mail is sent before the transaction (at least once through SMTP), or without SMTP only
 * rendered, in it (no `prepare`: a mediator's command runs in the mediator's transaction); the
 * record of it is written in the transaction (exactly once in the store).
 */
import { Effect, type DataOf } from "@baton/sdk"
import { commands, events, names, type OrderCreated, type OrderFulfilled, type PaymentDenied } from "./Contract.ts"
import type { Deps } from "./Deps.ts"
import * as Mailer from "./Mailer.ts"
import type { Mail } from "./Mailer.ts"

export type Template = "order-confirmation" | "payment-method-declined" | "ready-to-ship" | "shipped"

export interface Letter extends Mail {
  readonly template: Template
  readonly orderId: string
}

/** The events it reads: what it mails on, and the mediator's "shipped" command. */
export type Mailable =
  | { readonly type: typeof names.orderCreated; readonly data: Omit<OrderCreated, "paymentToken" | "cardLast4"> }
  | { readonly type: typeof names.paymentDenied; readonly data: PaymentDenied }
  | { readonly type: typeof names.orderFulfilled; readonly data: OrderFulfilled }
  | { readonly type: typeof names.orderShipped; readonly data: DataOf<typeof commands.notifyShipped> }

/** The letter for an event, or undefined when the event asks for none. */
export const letter = (event: Mailable): Letter | undefined => {
  switch (event.type) {
    case names.orderCreated: {
      const o = event.data
      return {
        template: "order-confirmation",
        orderId: o.orderId,
        to: o.email,
        subject: `Order ${o.orderId} received`,
        text: `Thank you for your order ${o.orderId}: ${o.items.map((i) => `${i.qty} x ${i.sku}`).join(", ")}, total ${o.total.toFixed(2)}.`
      }
    }
    case names.paymentDenied: {
      const p = event.data
      return {
        template: "payment-method-declined",
        orderId: p.orderId,
        to: p.email,
        subject: `Order ${p.orderId}: please use another payment method`,
        text: `We could not charge your card for order ${p.orderId} (${p.reason}). Please choose another payment method.`
      }
    }
    case names.orderFulfilled: {
      const f = event.data
      return { template: "ready-to-ship", orderId: f.orderId, to: f.email, subject: `Order ${f.orderId} is ready to ship`, text: `Your order ${f.orderId} is packed and ready to ship.` }
    }
    case names.orderShipped: {
      // The mediator's "shipped" e-mail: the shipment with the customer's address added.
      const s = event.data
      if (s.email === undefined) return undefined
      return { template: "shipped", orderId: s.orderId, to: s.email, subject: `Order ${s.orderId} has shipped`, text: `Your order ${s.orderId} is on its way by ${s.method} post, tracking ${s.trackingId}.` }
    }
  }
}

export const make = ({ sql, query, mailer, clock }: Deps) => {
  const insert = query(
    "INSERT INTO emails (cause_id, order_id, recipient, template, message_id, message, at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING order_id, recipient, template, message_id"
  )
  // A mail whose message id is its cause's (`Sent.perCause`, without SMTP): a record written before
  // is the one this would write (the letter is the event's, the id the cause's), so the insert
  // needs no answer and rides along with the transaction's next statement on PostgreSQL (one round
  // trip less per mail, 2 per order).
  const insertBlind = query("INSERT INTO emails (cause_id, order_id, recipient, template, message_id, message, at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")
  const existing = query("SELECT order_id, recipient, template, message_id FROM emails WHERE cause_id = ?")
  const sentOf = (row: Readonly<Record<string, unknown>> | undefined) =>
    row === undefined ? undefined : { orderId: String(row.order_id), to: String(row.recipient), template: String(row.template), messageId: String(row.message_id) }
  return Mailer.processor({
    name: "notification",
    on: [events.orderCreated, events.paymentDenied, events.orderFulfilled, commands.notifyShipped],
    // `order-shipped` comes only as the mediator's command: no subscription to the event.
    topics: [names.orderCreated, names.paymentDenied, names.orderFulfilled].map((type) => `events/${type}`),
    mailer,
    store: { sql },
    letter,
    record: (event, l, sent) =>
      sent.perCause === true
        ? Effect.as(insertBlind.run(event.id, l.orderId, l.to, l.template, sent.messageId, sent.message ?? null, clock.now().toISOString()), { orderId: l.orderId, to: l.to, template: l.template, messageId: sent.messageId })
        : Effect.map(insert.get(event.id, l.orderId, l.to, l.template, sent.messageId, sent.message ?? null, clock.now().toISOString()), sentOf),
    recorded: (event) => Effect.map(existing.get(event.id), sentOf),
    sent: events.emailSent,
    // Without SMTP: no read before the mail is rendered (2 statements and 2 round trips less per
    // order), and it is rendered in the transaction: no `prepare`, so the mediator's e-mail
    // commands run in its transaction too (`Consumer.call`; workflows/s 1.41x).
    renderAgain: true,
    // Its rows are its cause's (`emails` by `cause_id`): its two messages an order need not each
    // commit alone on PostgreSQL (BEGINs per order 2.2 -> 1.6, orders/s 1.05x).
    ownRows: true
  })
}
