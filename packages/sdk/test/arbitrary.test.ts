import { describe, expect, it } from "vitest"
import { Schema } from "effect"
import { Baton, type Event } from "@baton/sdk"
import { Testkit, UnsupportedSchema, fc } from "@baton/sdk/testkit"
import { Tally } from "./fixtures/tally.ts"

const Item = Schema.Struct({
  sku: Schema.String.check(Schema.isPattern(/^[A-Z]{3}-\d{2,4}$/)),
  qty: Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 9 })),
  price: Schema.Finite.check(Schema.isGreaterThan(0), Schema.isLessThanOrEqualTo(1000))
})
const Order = Baton.event(
  "order",
  Schema.Struct({
    id: Schema.NonEmptyString.check(Schema.isMaxLength(12)),
    trimmed: Schema.Trimmed,
    status: Schema.Literals(["new", "paid", "shipped"]),
    items: Schema.Array(Item).check(Schema.isMinLength(1), Schema.isMaxLength(4)),
    note: Schema.optionalKey(Schema.String),
    coupon: Schema.optional(Schema.NullOr(Schema.String)),
    express: Schema.Boolean,
    // Exclusive bounds: only 1 and 2.
    tiny: Schema.Int.check(Schema.isGreaterThan(0), Schema.isLessThan(3)),
    pair: Schema.Tuple([Schema.Int, Schema.String]),
    tags: Schema.Record(Schema.String, Schema.Number),
    // A filter with no constraint for generators: its values are filtered.
    even: Schema.Int.check(Schema.makeFilter((n: number) => n % 2 === 0, { expected: "an even number" })),
    payment: Schema.Union([Schema.Struct({ kind: Schema.Literal("card"), last4: Schema.String.check(Schema.isPattern(/^\d{4}$/)) }), Schema.Struct({ kind: Schema.Literal("cash") })])
  })
)

describe("Testkit.arbitrary: fast-check arbitraries from event schemas", () => {
  it("every generated value is of the schema's type, and survives encoding and decoding", () => {
    for (const [name, schema, arbitrary] of [
      ["order", Order.schema, Testkit.arbitrary(Order)],
      ["tally", Tally.schema, Testkit.arbitrary(Tally)],
      ["item", Item, Testkit.arbitrary(Item)]
    ] as const) {
      const is = Schema.is(schema)
      const roundTrip = (v: unknown) => Schema.decodeUnknownSync(schema)(JSON.parse(JSON.stringify(Schema.encodeUnknownSync(schema)(v))))
      fc.assert(
        fc.property(arbitrary, (value) => {
          expect(is(value), `${name}: ${JSON.stringify(value)}`).toBe(true)
          expect(roundTrip(value)).toEqual(JSON.parse(JSON.stringify(value)))
        }),
        { numRuns: 200 }
      )
    }
  })

  it("covers the schema: every literal, both union members, optional keys present and absent", () => {
    const values = fc.sample(Testkit.arbitrary(Order), 300)
    expect(new Set(values.map((v) => v.status))).toEqual(new Set(["new", "paid", "shipped"]))
    expect(new Set(values.map((v) => v.payment.kind))).toEqual(new Set(["card", "cash"]))
    expect(values.some((v) => "note" in v) && values.some((v) => !("note" in v))).toBe(true)
    expect(Math.max(...values.map((v) => v.items.length))).toBe(4)
    expect(new Set(values.map((v) => v.tiny))).toEqual(new Set([1, 2]))
  })

  it("a schema it cannot generate is one error naming the event and the field", () => {
    const cases: ReadonlyArray<readonly [Event, string]> = [
      [Baton.event("dated", Schema.Struct({ at: Schema.Date })), "event 'dated' at at: the testkit cannot generate a value of a declared type"],
      [Baton.event("big", Schema.Struct({ n: Schema.Struct({ v: Schema.BigInt }) })), "event 'big' at n.v: the testkit cannot generate"],
      [Baton.event("empty", Schema.Struct({ n: Schema.Int.check(Schema.isBetween({ minimum: 0.2, maximum: 0.8 })) })), "event 'empty' at n: no integer lies between 0.2 and 0.8"]
    ]
    for (const [event, message] of cases) {
      expect(() => Testkit.arbitrary(event)).toThrow(UnsupportedSchema)
      expect(() => Testkit.arbitrary(event)).toThrow(message)
    }
  })
})
