import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { Result, Schema, SchemaAST } from "effect"
import { Envelope, PlainSchema } from "@baton/core"

/**
 * Schemas of what `PlainSchema.compile` knows (and of a few nodes it does not: a union, a
 * transformation, a record, a tuple), each with values that fit it: `schema`, and `fits`, an
 * arbitrary of its valid values (some with keys it does not declare).
 */
type Spec = { readonly schema: Schema.Top; readonly fits: fc.Arbitrary<unknown> }

const leaf = (schema: Schema.Top, fits: fc.Arbitrary<unknown>): Spec => ({ schema, fits })
const leaves: ReadonlyArray<Spec> = [
  leaf(Schema.String, fc.string({ maxLength: 4 })),
  leaf(Schema.NonEmptyString, fc.string({ minLength: 1, maxLength: 4 })),
  leaf(Schema.String.check(Schema.isPattern(/^[ab]+$/)), fc.stringMatching(/^[ab]{1,3}$/)),
  leaf(Schema.Number, fc.oneof(fc.double(), fc.integer())),
  leaf(Schema.Finite, fc.double({ noNaN: true, noDefaultInfinity: true })),
  leaf(Schema.Int, fc.integer()),
  leaf(Schema.Number.check(Schema.isInt(), Schema.isGreaterThan(0), Schema.isLessThanOrEqualTo(100)), fc.integer({ min: 1, max: 100 })),
  leaf(Schema.Boolean, fc.boolean()),
  leaf(Schema.Null, fc.constant(null)),
  leaf(Schema.Unknown, fc.anything()),
  leaf(Schema.Literal("a"), fc.constant("a")),
  // -0 too: `-0 === 0`, and the schema gives the input's zero as it is.
  leaf(Schema.Literal(0), fc.constantFrom(0, -0)),
  leaf(Schema.Literal(-0), fc.constantFrom(0, -0)),
  // Not known to it: the schema's own parse every time.
  leaf(Schema.Union([Schema.String, Schema.Number]), fc.oneof(fc.string(), fc.integer())),
  leaf(Schema.NumberFromString, fc.integer().map(String)),
  leaf(Schema.Record(Schema.String, Schema.Number), fc.dictionary(fc.string({ maxLength: 2 }), fc.integer(), { maxKeys: 2 })),
  leaf(Schema.Tuple([Schema.String]), fc.tuple(fc.string()))
]

/**
 * A struct's check that looks at a key it does not declare: the schema runs a check on the value it
 * gives (decoding: a copy without that key), but an encoding check (a struct's or an array's checks,
 * once flipped) on the value it is given.
 */
const noExtra = Schema.makeFilter((o: object) => !Object.hasOwn(o, "extra") || "no key 'extra'")

/** Field names: an inherited one (`toString`, `in` every object) among them. */
const fieldNames = ["a", "b", "c", "toString"] as const

const spec: fc.Arbitrary<Spec> = fc.letrec<{ spec: Spec }>((tie) => ({
  spec: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constantFrom(...leaves),
    tie("spec").map((item) => ({ schema: Schema.Array(item.schema), fits: fc.array(item.fits, { maxLength: 3 }) })),
    tie("spec").map((item) => ({ schema: Schema.Array(item.schema).check(Schema.isMinLength(1)), fits: fc.array(item.fits, { minLength: 1, maxLength: 3 }) })),
    fc
      .tuple(fc.uniqueArray(fc.tuple(fc.constantFrom(...fieldNames), tie("spec"), fc.boolean()), { minLength: 1, maxLength: 3, selector: ([name]) => name }), fc.boolean())
      .map(([fields, checked]) => ({
        schema: ((struct: Schema.Top) => (checked ? (struct as Schema.Struct<{}>).check(noExtra) : struct))(
          Schema.Struct(Object.fromEntries(fields.map(([name, s, optional]) => [name, optional ? Schema.optionalKey(s.schema) : s.schema])))
        ),
        // Keys in any order, the optional ones maybe left out, and maybe one it does not declare.
        fits: fc
          .tuple(
            fc.tuple(...fields.map(([name, s, optional]) => (optional ? fc.option(s.fits.map((v) => [name, v] as const), { nil: undefined }) : s.fits.map((v) => [name, v] as const)))),
            fc.option(fc.tuple(fc.constant("extra"), fc.anything()), { nil: undefined }),
            fc.boolean()
          )
          .map(([entries, extra, reversed]) => {
            const all: ReadonlyArray<readonly [string, unknown] | undefined> = [...entries, extra]
            const present = all.filter((e): e is readonly [string, unknown] => e !== undefined)
            return Object.fromEntries(reversed ? present.reverse() : present)
          })
      }))
  )
})).spec

/** Anything but a value that fits: one of its fields changed or removed, one of its items changed, or anything at all. */
const misfit = (fits: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> =>
  fc.oneof(
    fc.tuple(fits, fc.anything(), fc.boolean(), fc.nat()).map(([v, other, remove, at]) => {
      if (Array.isArray(v)) return v.length === 0 ? [other] : v.map((x, i) => (i === at % v.length ? other : x))
      if (typeof v !== "object" || v === null) return other
      const copy: Record<string, unknown> = { ...v }
      const keys = Object.keys(copy)
      if (keys.length === 0) return other
      const key = keys[at % keys.length]!
      if (remove) delete copy[key]
      else copy[key] = other
      return copy
    }),
    fc.anything()
  )

/** A value's shape with its keys in order (`toStrictEqual` does not look at their order). */
const ordered = (value: unknown): unknown =>
  Array.isArray(value) ? value.map(ordered) : typeof value === "object" && value !== null ? Object.entries(value).map(([k, v]) => [k, ordered(v)]) : value

/** The paths in `out` to objects that are the input's own (not copies): a parse copies every struct and array, and takes an `Unknown`'s value as it is. */
const sharedWith = (input: unknown, out: unknown): ReadonlyArray<string> => {
  const theirs = new Set<unknown>()
  const collect = (v: unknown) => {
    if (typeof v !== "object" || v === null || theirs.has(v)) return
    theirs.add(v)
    for (const x of Object.values(v)) collect(x)
  }
  collect(input)
  const paths: Array<string> = []
  const walk = (v: unknown, path: string) => {
    if (typeof v !== "object" || v === null) return
    if (theirs.has(v)) paths.push(path)
    else for (const [k, x] of Object.entries(v)) walk(x, `${path}.${k}`)
  }
  walk(out, "")
  return paths
}

/**
 * For all schemas and values: where the compiled parse of the schema's AST (or of its flipped AST,
 * an encode) takes a value, the schema's own parse takes it too and gives an equal value, its keys
 * in the same order, copied where the schema's copies; where the schema's takes one, the compiled
 * parse (when there is one) does.
 */
const parsesAsSchema = (side: "decode" | "encode") =>
  fc.assert(
    fc.property(
      spec.chain((s) => fc.tuple(fc.constant(s), fc.oneof(s.fits, misfit(s.fits)))),
      ([s, input]) => {
        const ast = side === "decode" ? s.schema.ast : SchemaAST.flip(s.schema.ast)
        const compiled = PlainSchema.compile(ast)
        const own = (side === "decode" ? Schema.decodeUnknownResult(s.schema as Schema.Codec<unknown, unknown>) : Schema.encodeUnknownResult(s.schema as Schema.Codec<unknown, unknown>))(input, { errors: "all" })
        if (compiled === undefined) return
        const fast = PlainSchema.attempt(compiled, input)
        if (fast === PlainSchema.refused) {
          expect(Result.isFailure(own)).toBe(true)
          return
        }
        expect(Result.isSuccess(own)).toBe(true)
        if (Result.isSuccess(own)) {
          expect(fast).toStrictEqual(own.success)
          expect(ordered(fast)).toStrictEqual(ordered(own.success))
          expect(sharedWith(input, fast)).toEqual(sharedWith(input, own.success))
        }
      }
    ),
    { numRuns: 3000 }
  )

describe("PlainSchema", () => {
  it("decodes as the schema does, for all schemas and values", () => parsesAsSchema("decode"))
  it("encodes as the schema does, for all schemas and values", () => parsesAsSchema("encode"))

  it("Envelope.decode gives what the schema's decode with every issue gives, for all schemas and values", () =>
    fc.assert(
      fc.property(
        spec.chain((s) => fc.tuple(fc.constant(s), fc.oneof(s.fits, misfit(s.fits)))),
        ([s, input]) => {
          const schema = s.schema as Schema.Codec<unknown, unknown>
          const own = Result.mapError(Schema.decodeUnknownResult(schema)(input, { errors: "all" }), (e) => Envelope.formatIssues(e.issue))
          const decoded = Envelope.decode(schema)(input)
          expect(decoded).toStrictEqual(own)
          if (Result.isSuccess(decoded) && Result.isSuccess(own)) expect(ordered(decoded.success)).toStrictEqual(ordered(own.success))
        }
      ),
      { numRuns: 2000 }
    ))

  it("compiles the structs, arrays, checked leaves and optional keys events are made of; not a union, a transformation, a record or a tuple", () => {
    const Item = Schema.Struct({ sku: Schema.NonEmptyString, qty: Schema.Number.check(Schema.isInt(), Schema.isGreaterThan(0)), price: Schema.Finite })
    const Order = Schema.Struct({ id: Schema.String, items: Schema.Array(Item).check(Schema.isMinLength(1)), note: Schema.optionalKey(Schema.String), data: Schema.Unknown })
    expect(PlainSchema.compile(Order.ast)).toBeDefined()
    expect(PlainSchema.compile(SchemaAST.flip(Order.ast))).toBeDefined()
    for (const s of [Schema.Union([Schema.String, Schema.Number]), Schema.NumberFromString, Schema.Record(Schema.String, Schema.Number), Schema.Tuple([Schema.String]), Schema.Struct({ n: Schema.NumberFromString })])
      expect(PlainSchema.compile(s.ast)).toBeUndefined()
    const parse = PlainSchema.compile(Order.ast)!
    const input = { data: { x: 1 }, extra: true, items: [{ price: 1.5, qty: 2, sku: "s" }], id: "o" }
    const out = PlainSchema.attempt(parse, input)
    // Copied, in the schema's key order, without what it does not declare.
    expect(JSON.stringify(out)).toBe('{"id":"o","items":[{"sku":"s","qty":2,"price":1.5}],"data":{"x":1}}')
    expect((out as { items: unknown }).items).not.toBe(input.items)
    expect(PlainSchema.attempt(parse, { ...input, items: [] })).toBe(PlainSchema.refused)
    expect(PlainSchema.attempt(parse, { ...input, items: [{ price: 1, qty: 0.5, sku: "s" }] })).toBe(PlainSchema.refused)
    // A getter that throws: refused, for the schema's own parse to say what it makes of it.
    expect(PlainSchema.attempt(parse, Object.defineProperty({ ...input }, "id", { get: () => { throw new Error("no") }, enumerable: true }))).toBe(PlainSchema.refused)
  })
})
