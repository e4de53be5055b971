import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { repair, validate, type PlaceTrade } from "@baton/trading"

const known = (a: string) => /^ACC-[1-9]$/.test(a)
const trade = (t: Partial<PlaceTrade>): PlaceTrade => ({ account: "ACC-1", symbol: "AAPL", side: "buy", quantity: 10, ...t })

describe("trading advisor logic", () => {
  it("validates a trade and reports every problem", () => {
    expect(validate(trade({}), known)).toEqual({ trade: { account: "ACC-1", symbol: "AAPL", side: "buy", quantity: 10 } })
    expect(validate(trade({ account: "ACC-99", symbol: "aapl", quantity: "7" }), known)).toEqual({
      problems: ["unknown account ACC-99", 'unknown symbol "aapl"', 'quantity must be a number, got "7"']
    })
    expect(validate(trade({ quantity: -3 }), known)).toEqual({ problems: ["quantity must be a positive whole number, got -3"] })
    expect(validate(trade({ quantity: 1.5 }), known)).toMatchObject({ problems: [expect.stringContaining("whole number")] })
  })

  it("repairs a numeric-string quantity, a lower-case symbol and a known alias", () => {
    expect(repair(trade({ quantity: " 12 " }), known)).toEqual({ data: trade({ quantity: 12 }), changes: ['quantity " 12 " -> 12'] })
    expect(repair(trade({ symbol: "msft" }), known)?.data).toEqual(trade({ symbol: "MSFT" }))
    expect(repair(trade({ symbol: "googl", quantity: "3" }), known)?.data).toEqual(trade({ symbol: "GOOG", quantity: 3 }))
    expect(repair(trade({ symbol: "Amazon" }), known)?.data).toEqual(trade({ symbol: "AMZN" }))
  })

  it("does not repair what it cannot tell: an unknown account, a negative quantity, an unknown symbol", () => {
    expect(repair(trade({ account: "ACC-404", quantity: "5" }), known)).toBeUndefined()
    expect(repair(trade({ quantity: -3 }), known)).toBeUndefined()
    expect(repair(trade({ symbol: "xyz" }), known)).toBeUndefined()
    expect(repair(trade({ quantity: "-4" }), known)).toBeUndefined()
  })

  it("for any trade, a repair is valid, and a valid trade needs no repair", () => {
    const arb = fc.record({
      account: fc.constantFrom("ACC-1", "ACC-9", "ACC-404"),
      symbol: fc.constantFrom("AAPL", "aapl", "googl", "Alphabet", "XYZ", " msft "),
      side: fc.constantFrom<"buy" | "sell">("buy", "sell"),
      quantity: fc.oneof(fc.integer({ min: -5, max: 50 }), fc.integer({ min: -5, max: 50 }).map(String), fc.constant("ten"))
    })
    fc.assert(
      fc.property(arb, (t) => {
        const fixed = repair(t, known)
        if (fixed !== undefined) expect(validate(fixed.data, known)).toHaveProperty("trade")
        if ("trade" in validate(t, known)) expect(fixed).toBeUndefined()
      })
    )
  })
})
