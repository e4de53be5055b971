/**
 * The order-entry app through the public testkit, as a user's test would be: any order the
 * PlaceOrder schema admits, its SKUs from the catalogue. BATON_PROPERTY_RUNS raises the runs.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Testkit, fc, type App, type Flow } from "@baton/sdk/testkit"
import app from "../src/app.ts"
import { catalogue, events, type PlaceOrder } from "../src/Contract.ts"
import { declinedCard, failingCard, luhn } from "../src/Payment.ts"

const numRuns = Number(process.env.BATON_PROPERTY_RUNS ?? 10)

/** A card the Luhn check passes: 11 to 18 digits and their check digit. */
const luhnCard = fc.stringMatching(/^[0-9]{11,18}$/).map((body) => [..."0123456789"].map((d) => body + d).find(luhn)!)
/** Any card the schema admits, a valid one, or the issuer's declined one (not the failing gateway's: retried for long). */
const card = fc.oneof(Testkit.arbitrary(events.placeOrder).map((o) => o.payment.card), luhnCard, fc.constant(declinedCard)).filter((c) => c !== failingCard)
const order: fc.Arbitrary<PlaceOrder> = fc
  .tuple(Testkit.arbitrary(events.placeOrder), fc.array(fc.constantFrom(...catalogue.map((c) => c.sku)), { minLength: 1, maxLength: 8 }), card)
  .map(([o, skus, c]) => ({ ...o, items: o.items.map((item, n) => ({ ...item, sku: skus[n % skus.length]!, qty: item.qty })), payment: { card: c } }))

type Stock = Map<string, { onHand: number; backordered: number }>

describe("order-entry, on the real runtime (Testkit.start)", () => {
  let kit: App
  beforeAll(async () => {
    kit = await Testkit.start(app, { env: { BATON_SMTP_URL: "" } })
  })
  afterAll(async () => {
    await kit?.stop()
  })

  const stock = async (): Promise<Stock> =>
    new Map((await kit.query("SELECT sku, on_hand, backordered FROM stock")).map((r) => [String(r.sku), { onHand: Number(r.on_hand), backordered: Number(r.backordered) }]))
  /** The stock after an allocation: each line takes what is on hand, the rest is back-ordered. */
  const allocated = (before: Stock, o: PlaceOrder): Stock => {
    const after: Stock = new Map([...before].map(([sku, s]) => [sku, { ...s }]))
    for (const item of o.items) {
      const s = after.get(item.sku)!
      const taken = Math.min(Math.max(s.onHand, 0), item.qty)
      after.set(item.sku, { onHand: s.onHand - taken, backordered: s.backordered + item.qty - taken })
    }
    return after
  }
  const noCardIn = (flow: Flow, c: string) => {
    for (const e of flow.events) expect(JSON.stringify(e.data), `${e.type} carries the card`).not.toContain(c)
  }

  it("for any order: created once, paid or denied as the card says, shipped or its stock given back, the card in no event", async () => {
    await fc.assert(
      fc.asyncProperty(order, async (o) => {
        const before = await stock()
        const flow = await kit.flow(await kit.publish(events.placeOrder, o), { timeoutMs: 15_000 })
        noCardIn(flow, o.payment.card)
        if (!Number.isFinite(o.items.reduce((sum, i) => sum + i.qty * i.price * 100, 0))) {
          // Prices and quantities past any total: refused with the reason, nothing stored or taken.
          expect(flow.rejections.map((r) => [r.processor, r.reason])).toEqual([["order-placement", expect.stringContaining("total is too large")]])
          expect(flow.count(events.orderCreated)).toBe(0)
          expect(await stock()).toEqual(before)
          return
        }
        expect(flow.rejections).toEqual([])
        expect(flow.count(events.orderCreated)).toBe(1)
        const created = flow.data(events.orderCreated)[0]!
        expect(created.cardLast4).toBe(o.payment.card.slice(-4))
        const approved = luhn(o.payment.card) && o.payment.card !== declinedCard
        expect([flow.count(events.paymentApplied), flow.count(events.paymentDenied)]).toEqual(approved ? [1, 0] : [0, 1])
        if (approved) {
          expect(flow.count(events.orderFulfilled)).toBe(1)
          expect(flow.data(events.orderShipped)).toEqual([expect.objectContaining({ orderId: created.orderId })])
          expect(flow.count(events.inventoryReleased)).toBe(0)
          expect(await stock()).toEqual(allocated(before, o))
        } else {
          // The compensating step: the allocation, if it was made, given back.
          expect(flow.count(events.inventoryReleased)).toBe(1)
          expect(flow.count(events.orderShipped)).toBe(0)
          expect(await stock()).toEqual(before)
        }
        // One e-mail per mailing event: confirmation, then ready-to-ship or declined.
        expect(flow.count(events.emailSent)).toBe(2)
        expect(await kit.query("SELECT COUNT(*) AS n FROM orders WHERE id = ?", created.orderId)).toEqual([{ n: 1 }])
      }),
      // No shrinking: the runs share the app's stock, and a failing flow takes its timeout each time.
      { numRuns, endOnFailure: true }
    )
  })

  it("a declined card: payment-denied with the issuer's reason, the stock released, the customer asked for another card", async () => {
    const o: PlaceOrder = { customerId: "c-declined", email: "d@example.com", items: [{ sku: "BOOK-2", qty: 3, price: 5 }], payment: { card: declinedCard } }
    const before = await stock()
    const flow = await kit.flow(await kit.publish(events.placeOrder, o), { timeoutMs: 15_000 })
    expect(flow.data(events.paymentDenied)).toEqual([expect.objectContaining({ reason: "card declined by issuer", amount: 15 })])
    expect(flow.count(events.inventoryReleased)).toBe(1)
    expect(await stock()).toEqual(before)
    expect(flow.data(events.emailSent).map((m) => m.template).sort()).toEqual(["order-confirmation", "payment-method-declined"])
    noCardIn(flow, declinedCard)
  })
})
