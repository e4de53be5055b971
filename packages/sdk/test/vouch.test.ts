/**
 * An event's data vouched for by one declaration (`make` encoded it in this process, or the ingress
 * decoded it) is read by another declaration of the same event (a processor's own view, with fields
 * of its own) as it is when that one's schema reads the data to itself (`readsToItself`), and
 * decoded in full otherwise. For every pair of schemas and every data the first accepts, the second
 * reads the vouched envelope exactly as the same envelope unvouched (decoded in full): the same
 * data, key order included, or the same rejection; and where it reads it as it is, it is the very
 * data, not a copy (no decode).
 */
import { describe, expect, it } from "vitest"
import { Result, Schema } from "effect"
import fc from "fast-check"
import { Baton, readsToItself, type RawEnvelope } from "@baton/sdk"
import { of } from "../src/Arbitrary.ts"

/** Leaves; `looser[i]` reads whatever `leaves[i]` accepts. */
const leaves: ReadonlyArray<Schema.Top> = [
  Schema.String,
  Schema.NonEmptyString,
  Schema.String.check(Schema.isMaxLength(2)),
  Schema.Finite,
  Schema.Int,
  Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 3 })),
  Schema.Boolean,
  Schema.Literal("x"),
  Schema.Literal(1),
  Schema.Null
]
const looser: ReadonlyArray<Schema.Top> = [Schema.Unknown, Schema.String, Schema.String, Schema.Number, Schema.Number, Schema.Int, Schema.Unknown, Schema.String, Schema.Number, Schema.Null]

interface Pair {
  readonly theirs: Schema.Top
  readonly ours: Schema.Top
}

const leaf: fc.Arbitrary<Pair> = fc
  .tuple(fc.nat(leaves.length - 1), fc.oneof(fc.constant("same" as const), fc.constant("looser" as const), fc.nat(leaves.length - 1)))
  .map(([i, how]) => ({ theirs: leaves[i]!, ours: how === "same" ? leaves[i]! : how === "looser" ? looser[i]! : leaves[how]! }))

const field = (schema: Schema.Top, optional: boolean): Schema.Top => (optional ? Schema.optionalKey(schema as Schema.Codec<unknown>) : schema)

const { struct } = fc.letrec<{ pair: Pair; struct: Pair; array: Pair }>((tie) => ({
  pair: fc.oneof({ maxDepth: 2, depthIdentifier: "pair" }, leaf, tie("struct"), tie("array")),
  array: tie("pair").map(({ theirs, ours }) => ({ theirs: Schema.Array(theirs as Schema.Codec<unknown>), ours: Schema.Array(ours as Schema.Codec<unknown>) })),
  struct: fc
    .tuple(
      fc.array(fc.record({ pair: tie("pair"), inTheirs: fc.boolean(), inOurs: fc.boolean(), optionalTheirs: fc.boolean(), optionalOurs: fc.boolean() }), { maxLength: 4 }),
      fc.boolean(),
      fc.boolean()
    )
    .map(([fields, reversed, identical]) => {
      const theirs = Schema.Struct(Object.fromEntries(fields.flatMap((f, i) => (f.inTheirs ? [[`f${i}`, field(f.pair.theirs, f.optionalTheirs)]] : []))))
      if (identical) return { theirs, ours: theirs }
      const ours = fields.flatMap((f, i) => (f.inOurs ? [[`f${i}`, field(f.pair.ours, f.optionalOurs)] as const] : []))
      return { theirs, ours: Schema.Struct(Object.fromEntries(reversed ? ours.reverse() : ours)) }
    })
}))

describe("data vouched for by another declaration of the event", () => {
  it("is read exactly as when decoded in full, for every pair of schemas and data, and as it is where the reader's schema reads it to itself", () => {
    let asIs = 0
    fc.assert(
      fc.property(
        // Data as it comes (JSON: plain objects), which the arbitrary's null-prototype records are not.
        struct.chain((pair) => fc.tuple(fc.constant(pair), of(pair.theirs as Schema.Codec<unknown>).map((d) => JSON.parse(JSON.stringify(d)) as unknown))),
        ([{ theirs, ours }, data]) => {
          const maker = Baton.event("t", theirs as Schema.Codec<unknown>)
          const reader = Baton.event("t", ours as Schema.Codec<unknown>)
          const vouched = maker.make(data) as RawEnvelope
          const vouchedRead = reader.read(vouched)
          const fullRead = reader.read({ ...vouched })
          expect(Result.isSuccess(vouchedRead)).toBe(Result.isSuccess(fullRead))
          if (Result.isSuccess(vouchedRead) && Result.isSuccess(fullRead)) {
            expect(vouchedRead.success).toStrictEqual(fullRead.success)
            expect(JSON.stringify(vouchedRead.success)).toBe(JSON.stringify(fullRead.success))
          } else expect(vouchedRead).toStrictEqual(fullRead)
          if (readsToItself(ours.ast, theirs.ast)) {
            if (ours !== theirs) asIs++
            expect(Result.isSuccess(vouchedRead)).toBe(true)
            expect(Result.getOrThrow(vouchedRead)).toBe(vouched.data)
          }
        }
      ),
      { numRuns: 1500 }
    )
    expect(asIs).toBeGreaterThan(50)
  })

  it("a view with an optional field of its own takes the maker's data as it is; a required one, or a stricter check, decodes it", () => {
    const Order = Schema.Struct({ id: Schema.NonEmptyString, total: Schema.Finite, items: Schema.Array(Schema.Struct({ sku: Schema.String, qty: Schema.Int })) })
    const created = Baton.event("order-created", Order)
    const charge = Baton.event("order-created", Schema.Struct({ ...Order.fields, card: Schema.optionalKey(Schema.String) }))
    const needsCard = Baton.event("order-created", Schema.Struct({ ...Order.fields, card: Schema.String }))
    const big = Baton.event("order-created", Schema.Struct({ ...Order.fields, total: Schema.Finite.check(Schema.isGreaterThan(100)) }))
    const made = created.make({ id: "o-1", total: 12, items: [{ sku: "A", qty: 2 }] }) as RawEnvelope
    expect(Result.getOrThrow(charge.read(made))).toBe(made.data)
    expect(Result.isFailure(needsCard.read(made))).toBe(true)
    expect(Result.isFailure(big.read(made))).toBe(true)
  })
})
