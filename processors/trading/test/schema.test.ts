// @ts-nocheck
import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { Result } from "effect"
import { decode as decoder } from "@baton/sdk"
import { PlaceTradeData } from "@baton/trading"

const decode = decoder(PlaceTradeData)
const pathsOf = (input: unknown) => Result.match(decode(input), { onSuccess: () => [], onFailure: (issues) => [...new Set(issues.map((i) => i.path))].sort() })
const valid = { account: "ACC-1", symbol: "AAPL", side: "buy", quantity: 10 }

describe("trading: the place-trade schema (what the door accepts)", () => {
  it("for any non-empty account and symbol, either side, a numeric or string quantity and a positive limit: accepted as given", () => {
    fc.assert(
      fc.property(
        fc.record({
          account: fc.string({ minLength: 1 }),
          symbol: fc.string({ minLength: 1 }),
          side: fc.constantFrom("buy", "sell"),
          quantity: fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.string()),
          limitPrice: fc.double({ min: Number.MIN_VALUE, noNaN: true, noDefaultInfinity: true })
        }, { requiredKeys: ["account", "symbol", "side", "quantity"] }),
        (t) => {
          expect(Result.getOrThrow(decode(t))).toEqual(t)
        }
      )
    )
  })

  it("refuses each broken field at its path", () => {
    expect(pathsOf({ ...valid, account: "" })).toEqual(["account"])
    expect(pathsOf({ ...valid, symbol: "" })).toEqual(["symbol"])
    expect(pathsOf({ ...valid, side: "hold" })).toEqual(["side"])
    for (const quantity of [null, true, Number.NaN, Number.POSITIVE_INFINITY]) expect(pathsOf({ ...valid, quantity }), `quantity ${quantity}`).toEqual(["quantity"])
    for (const limitPrice of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, "5"]) expect(pathsOf({ ...valid, limitPrice }), `limitPrice ${limitPrice}`).toEqual(["limitPrice"])
    expect(pathsOf({ symbol: "AAPL" }).sort()).toEqual(["account", "quantity", "side"])
  })
})
