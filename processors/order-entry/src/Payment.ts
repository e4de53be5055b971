/**
 * Payment: charges the card; `payment-applied` on approval, `payment-denied` with a reason (also
 * when the charge fails for good in the broker topology).
 */
import { Result } from "effect"
import { Baton, Effect, forUpdate } from "@baton/sdk"
import { commands, events, type OrderCreated } from "./Contract.ts"
import type { Deps } from "./Deps.ts"
import * as Reference from "./Reference.ts"

/** The test card that the (simulated) card network declines. */
export const declinedCard = "4000000000000002"
/** The test card whose charge fails with a processing error (the gateway is down): not a denial. */
export const failingCard = "4000000000000119"

/** The gateway failed: retrying may help, and it is not the customer's fault. */
export class GatewayError extends Error {
  override readonly name = "GatewayError"
}

export const luhn = (card: string): boolean => {
  if (!/^[0-9]{12,19}$/.test(card)) return false
  let sum = 0
  for (let i = 0; i < card.length; i++) {
    let d = Number(card[card.length - 1 - i])
    if (i % 2 === 1) {
      d *= 2
      if (d > 9) d -= 9
    }
    sum += d
  }
  return sum % 10 === 0
}

export type Decision = { readonly approved: true } | { readonly approved: false; readonly reason: string }

export const decide = (card: string): Decision =>
  !luhn(card)
    ? { approved: false, reason: "invalid card number (fails the Luhn check)" }
    : card === declinedCard
      ? { approved: false, reason: "card declined by issuer" }
      : { approved: true }

export const make = ({ query, dialect, clock }: Deps) => {
  const existing = query(`SELECT approved, "authorization", reason FROM payments WHERE order_id = ?${forUpdate(dialect)}`)
  // The order's payment (locked, as `existing`) and the card in the vault, in one statement: one
  // row whose payment columns are null when there is none yet.
  const paymentAndCard = query(
    `SELECT p.approved, p."authorization", p.reason, v.card FROM (SELECT 1 AS one) AS o LEFT JOIN (SELECT order_id, approved, "authorization", reason FROM payments WHERE order_id = ?${forUpdate(dialect)}) AS p ON 1 = 1 LEFT JOIN payment_vault AS v ON v.token = ?`
  )
  const values = `INSERT INTO payments (order_id, approved, amount, "authorization", reason, at) VALUES (?, ?, ?, ?, ?, ?)`
  // Atomic against another instance charging the same order: the first insert wins. PostgreSQL: the
  // other's fails its transaction as a lost conflict (40001, `order_entry_payment_recorded`), which
  // runs again at once and announces the payment recorded; so the insert is not waited for (it
  // goes out with the commit). SQLite (one writer): an insert that finds one there reads it.
  const insert = query(`${values} ON CONFLICT DO NOTHING RETURNING order_id`)
  const record = dialect === "pg" ? query(`${values} ON CONFLICT (order_id) DO UPDATE SET approved = order_entry_payment_recorded()`) : undefined

  const announce = (order: OrderCreated, approved: boolean, authorization: string | null, reason: string | null) =>
    approved
      ? [
          events.paymentApplied.make({
            orderId: order.orderId,
            customerId: order.customerId,
            email: order.email,
            amount: order.total,
            authorization: authorization ?? "",
            items: order.items
          })
        ]
      : [events.paymentDenied.make({ orderId: order.orderId, customerId: order.customerId, email: order.email, amount: order.total, reason: reason ?? "" })]
  const announceRow = (order: OrderCreated, row: Readonly<Record<string, unknown>>) =>
    announce(order, Number(row.approved) === 1, row.authorization === null ? null : String(row.authorization), row.reason === null ? null : String(row.reason))

  return Baton.processor({
    name: "payment",
    // The order; in the mediator topology, with the card of a restarted workflow's corrected input.
    on: commands.chargeOrder,
    // Its rows are its order's (`payments` by order id; the vault only read): a lane per message (Processor.ownRows).
    ownRows: true,
    // The charge failed for good (the gateway kept failing): the order cannot go on, so it is denied,
    // which asks the customer for another card and gives its stock back. (In the mediator topology
    // the command fails instead, and the workflow waits, failed, for a restart.) The reason leaves
    // out the error, which may name the card. Data that is no order denies nothing.
    failed: (event) => Result.match(commands.chargeOrder.read(event), { onFailure: () => [], onSuccess: (order) => announce(order, false, null, "the payment could not be processed") }),
    handle: function* (event) {
      const order = event.data
      const row = yield* paymentAndCard.get(order.orderId, order.paymentToken)
      if (row?.approved != null) return announceRow(order, row)
      // A mediator restarted with a corrected card sends it along; otherwise the vault has it.
      const number = order.card ?? row?.card ?? undefined
      if (number === failingCard) return yield* Effect.fail(new GatewayError(`payment gateway error charging ${order.orderId} (test card ${failingCard})`))
      const decision: Decision = number === undefined ? { approved: false, reason: "unknown payment token" } : decide(String(number))
      const authorization = decision.approved ? `auth_${Reference.of(order.orderId, 16)}` : null
      const reason = decision.approved ? null : decision.reason
      const payment = [order.orderId, decision.approved ? 1 : 0, order.total, authorization, reason, clock.now().toISOString()]
      if (record !== undefined) return yield* Effect.as(record.write(...payment), announce(order, decision.approved, authorization, reason))
      if ((yield* insert.run(...payment)) === 0) {
        // Another instance recorded this order's payment meanwhile: announce what it decided.
        const won = yield* existing.get(order.orderId)
        if (won !== undefined) return announceRow(order, won)
      }
      return announce(order, decision.approved, authorization, reason)
    }
  })
}
