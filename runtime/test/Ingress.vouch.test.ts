/**
 * The ingress vouches for the initiating events it accepts (`Initiating.vouch`): a processor
 * reading one with the same declaration takes its data as the ingress decoded it instead of
 * decoding it again. What is trusted must be what was validated: for every schema (with checks
 * only, or with transformations) and every input, a processor reads the vouched envelope exactly
 * as it reads the same envelope from JSON (unvouched, decoded in full), and the SDK's `checksOnly`
 * (which decides which schemas are vouched for) only holds for schemas whose decoded data decodes
 * again to itself.
 */
import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { Effect, Exit, Result, Schema } from "effect"
import { Envelope, type App, type AppContext } from "@baton/core"
import { Baton, checksOnly, type RawEnvelope } from "@baton/sdk"
import * as Ingress from "../src/Ingress.ts"

const Item = Schema.Struct({ sku: Schema.NonEmptyString, qty: Schema.Number.check(Schema.isInt(), Schema.isGreaterThan(0)) })
const word = fc.stringMatching(/^[a-z0-9 ]{0,6}$/)
const item = fc.record({ sku: word, qty: fc.oneof(fc.integer({ min: -2, max: 5 }), fc.double({ noNaN: true, min: -2, max: 5 })) })
const anything = fc.jsonValue({ maxDepth: 2 })

interface Case {
  readonly name: string
  readonly schema: Schema.Codec<any, any>
  readonly input: fc.Arbitrary<unknown>
  /** Whether it has checks only (vouched for), as `checksOnly` must say. */
  readonly checksOnly: boolean
}

const cases: ReadonlyArray<Case> = [
  // Checks on an array and in a struct: the shape of the order flow's place-order.
  {
    name: "order",
    schema: Schema.Struct({ customerId: Schema.NonEmptyString, items: Schema.Array(Item).check(Schema.isMinLength(1)), note: Schema.optionalKey(Schema.String) }),
    input: fc.oneof(fc.record({ customerId: word, items: fc.array(item, { maxLength: 3 }), note: fc.option(word, { nil: undefined }), extra: fc.option(word, { nil: undefined }) }, { requiredKeys: ["customerId", "items"] }), anything),
    checksOnly: true
  },
  { name: "union of literals", schema: Schema.Struct({ kind: Schema.Literals(["a", "b"]), n: Schema.Finite }), input: fc.oneof(fc.record({ kind: fc.constantFrom("a", "b", "c"), n: fc.double() }), anything), checksOnly: true },
  { name: "record", schema: Schema.Record(Schema.String, Schema.Number.check(Schema.isGreaterThan(0))), input: fc.oneof(fc.dictionary(word, fc.integer({ min: -1, max: 3 })), anything), checksOnly: true },
  // Transformations: what the ingress decoded is not what a reader decodes.
  { name: "number from string", schema: Schema.Struct({ n: Schema.NumberFromString }), input: fc.oneof(fc.record({ n: fc.oneof(fc.integer().map(String), word) }), anything), checksOnly: false },
  { name: "trimmed", schema: Schema.Struct({ s: Schema.Trim }), input: fc.oneof(fc.record({ s: fc.stringMatching(/^ ?[a-z]{0,3} ?$/) }), anything), checksOnly: false },
  {
    name: "array of transformed",
    schema: Schema.Struct({ items: Schema.Array(Schema.Struct({ n: Schema.NumberFromString })).check(Schema.isMinLength(1)) }),
    input: fc.oneof(fc.record({ items: fc.array(fc.record({ n: fc.integer().map(String) }), { maxLength: 2 }) }), anything),
    checksOnly: false
  }
]

const context = { migrate: async () => {} } as unknown as AppContext

/** An app with one initiating event of `schema` and a processor reading it; `read` gives what the processor's handler gets. */
const appOf = async (c: Case) => {
  const Start = Baton.initiating("start", c.schema)
  let got: unknown
  const reader = Baton.processor({ name: "reader", on: Start, handle: (e) => Effect.sync(() => ((got = e.data), [])) })
  const app: App = await Baton.app({ name: "a", initiating: [Start], processors: [reader] }).make(context)
  const read = (envelope: RawEnvelope): Exit.Exit<unknown, unknown> => {
    got = undefined
    return Exit.map(Effect.runSyncExit(reader.handle(envelope, undefined) as Effect.Effect<unknown, unknown>), () => got)
  }
  return { contracts: Ingress.contractsOf([app]), read, contract: app.initiating[0]! }
}

describe("what the ingress vouches for", () => {
  it("checksOnly: for every schema and input it decodes, its output decodes again to itself (as JSON too) when it says so, and says so for checks", () => {
    for (const c of cases) {
      expect(checksOnly(c.schema.ast), c.name).toBe(c.checksOnly)
      const decode = Schema.decodeUnknownResult(c.schema)
      fc.assert(
        fc.property(c.input, (input) => {
          const first = decode(input)
          if (Result.isFailure(first) || !checksOnly(c.schema.ast)) return
          // As JSON: what a reader gets from the inbox or the broker (JSON has no -0: 0 on both sides).
          const json: unknown = JSON.parse(JSON.stringify(first.success))
          const again = decode(json)
          expect(Result.isSuccess(again) && again.success).toEqual(json)
          expect(Schema.encodeSync(c.schema)(first.success)).toEqual(first.success)
        }),
        { numRuns: 150 }
      )
    }
  })

  it("for every schema and input: a processor reads an accepted envelope as it reads the same envelope from JSON, decoded in full", async () => {
    for (const c of cases) {
      const { contracts, read, contract } = await appOf(c)
      // Vouched for exactly when its schema has checks only.
      expect(contract.vouch !== undefined, c.name).toBe(c.checksOnly)
      fc.assert(
        fc.property(c.input, (input) => {
          const verdict = Ingress.judge(contracts, { topic: "initiate/start", payload: Buffer.from(JSON.stringify(input) ?? "null") }, 1 << 20)
          if (verdict._tag !== "Accepted") return
          expect(Envelope.vouchedBy(verdict.envelope) !== undefined).toBe(c.checksOnly)
          const fromJson = JSON.parse(Envelope.encode(verdict.envelope)) as RawEnvelope
          const trusted = read(verdict.envelope)
          const decoded = read(fromJson)
          expect(Exit.isSuccess(trusted)).toBe(Exit.isSuccess(decoded))
          if (Exit.isSuccess(trusted) && Exit.isSuccess(decoded)) expect(trusted.value).toEqual(decoded.value)
        }),
        { numRuns: 150 }
      )
    }
  })
})
