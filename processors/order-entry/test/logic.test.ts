import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { Inventory, Mailer, Notification, OrderPlacement, Payment, Shipping, Warehouse } from "@baton/order-entry"

/** Appends the Luhn check digit to a digit string. */
const withCheckDigit = (body: string): string => {
  for (let d = 0; d <= 9; d++) if (Payment.luhn(`${body}${d}`)) return `${body}${d}`
  throw new Error("unreachable")
}

describe("Payment", () => {
  it("approves valid cards, declines the issuer's test card, denies Luhn failures", () => {
    expect(Payment.decide("4242424242424242")).toEqual({ approved: true })
    expect(Payment.decide(Payment.declinedCard)).toEqual({ approved: false, reason: "card declined by issuer" })
    expect(Payment.decide("4242424242424241")).toMatchObject({ approved: false, reason: expect.stringContaining("Luhn") })
  })

  it("accepts every number with a correct check digit and refuses every other digit", () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[1-9][0-9]{11,17}$/), (body) => {
        const card = withCheckDigit(body)
        expect(Payment.luhn(card)).toBe(true)
        const last = Number(card.at(-1))
        for (let d = 0; d <= 9; d++) if (d !== last) expect(Payment.luhn(`${body}${d}`)).toBe(false)
      })
    )
  })
})

describe("Inventory.allocate", () => {
  it("takes what is on hand and back-orders the rest, never going below zero", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2000 }), fc.integer({ min: 1, max: 3000 }), (onHand, qty) => {
        const line = Inventory.allocate("BOOK-1", onHand, qty)
        expect(line.taken + line.backordered).toBe(qty)
        expect(line.remaining).toBeGreaterThanOrEqual(0)
        expect(line.remaining).toBe(onHand - line.taken)
        expect(line.backordered > 0).toBe(qty > onHand)
      })
    )
  })
})

describe("Warehouse.shouldReorder", () => {
  it("re-orders under the threshold unless a re-order is pending", () => {
    expect(Warehouse.shouldReorder({ level: 99, threshold: 100, reorderQty: 500, pendingReorder: false })).toBe(true)
    expect(Warehouse.shouldReorder({ level: 99, threshold: 100, reorderQty: 500, pendingReorder: true })).toBe(false)
    expect(Warehouse.shouldReorder({ level: 100, threshold: 100, reorderQty: 500, pendingReorder: false })).toBe(false)
  })
})

describe("OrderPlacement", () => {
  it("totals to the cent and finds unknown SKUs", () => {
    expect(OrderPlacement.total([{ sku: "BOOK-1", qty: 2, price: 12.5 }, { sku: "BOOK-2", qty: 3, price: 0.1 }])).toBe(25.3)
    expect(OrderPlacement.unknownSkus([{ sku: "BOOK-1", qty: 1, price: 1 }, { sku: "X", qty: 1, price: 1 }], new Set(["BOOK-1"]))).toEqual(["X"])
    expect(OrderPlacement.orderId(42)).toBe("ORD-000042")
  })
})

describe("Shipping.method", () => {
  it("sends big parcels by freight", () => {
    expect(Shipping.method([{ sku: "BOOK-1", qty: 11, price: 1 }])).toBe("freight")
    expect(Shipping.method([{ sku: "BOOK-1", qty: 10, price: 1 }])).toBe("standard")
  })
})

describe("Notification.letter", () => {
  it("writes the letter of each event that asks for one", () => {
    const base = { orderId: "ORD-1", customerId: "c", email: "a@b.co" }
    expect(Notification.letter({ type: "order-created", data: { ...base, items: [], total: 0 } })?.template).toBe("order-confirmation")
    expect(Notification.letter({ type: "payment-denied", data: { ...base, amount: 1, reason: "r" } })?.template).toBe("payment-method-declined")
    expect(Notification.letter({ type: "order-fulfilled", data: { ...base, items: [] } })?.template).toBe("ready-to-ship")
    expect(Notification.letter({ type: "order-shipped", data: { orderId: "ORD-1", method: "standard", trackingId: "TRK-1" } })).toBeUndefined()
  })
})

describe("Mailer", () => {
  it("sends no card number, whatever a letter echoes", async () => {
    const mailer = Mailer.make()
    await fc.assert(
      fc.asyncProperty(fc.stringMatching(/^[0-9]{12,19}$/), fc.constantFrom("", " ", "-"), async (card, sep) => {
        const typed = (card.match(/.{1,4}/g) ?? []).join(sep)
        const letter = Notification.letter({ type: "payment-denied", data: { orderId: "ORD-1", customerId: "c", email: "a@b.co", amount: 1, reason: `card ${typed} declined` } })!
        const { message } = await mailer.send({ ...letter, subject: `${letter.subject} (${typed})` })
        const sent = JSON.parse(message!) as { subject: string; text: string }
        expect(`${sent.subject} ${sent.text}`).not.toContain(typed)
        expect(sent.text).toContain(`card ****${card.slice(-4)} declined`)
        expect(sent.subject).toContain(`(****${card.slice(-4)})`)
      }),
      { numRuns: 20 }
    )
  })
})
