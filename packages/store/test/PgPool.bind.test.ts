/**
 * `bindExecute`, PgPool's own Bind and Execute of a described statement: the bytes pg's serializer
 * writes for them, whatever the parameters; and on a real PostgreSQL server, the rows of a
 * statement's later runs (through it) equal those of its first (through pg's own), in a
 * transaction's batch and alone, and a value pg cannot bind fails the statement as before.
 */
import { createRequire } from "node:module"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import { Effect } from "effect"
import pg from "pg"
import { freshSchema } from "@baton/testkit/postgres"
import { bindExecute, make, type Pipelined } from "../src/PgPool.ts"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 50)

const pgRequire = createRequire(createRequire(import.meta.url).resolve("pg"))
const { serialize } = pgRequire("pg-protocol") as {
  readonly serialize: {
    readonly bind: (config: { portal: string; statement: string; values: ReadonlyArray<unknown>; binary: boolean; valueMapper: (value: unknown) => unknown }) => Buffer
    readonly execute: () => Buffer
    readonly sync: () => Buffer
  }
}
const { prepareValue } = pgRequire("./utils.js") as { readonly prepareValue: (value: unknown) => unknown }

/** What pg writes for a Bind of `name` to `values` (unnamed portal, text results), Execute and maybe Sync. */
const pgBytes = (name: string, values: ReadonlyArray<unknown>, sync: boolean): Buffer =>
  Buffer.concat([
    serialize.bind({ portal: "", statement: name, values, binary: false, valueMapper: prepareValue }),
    serialize.execute(),
    ...(sync ? [serialize.sync()] : [])
  ])

/** Texts of 1-, 2-, 3- and 4-byte characters, around `bindExecute`'s short text (48 characters). */
const mixed = (maxLength: number) => fc.string({ unit: fc.constantFrom("a", "~", "\u007f", "\u0080", "é", "\u07ff", "\u0800", "中", "😀"), maxLength })
/** Any parameter a statement may get: texts (ASCII, any Unicode, lone surrogates, short and long), numbers, bytes, dates, arrays, JSON. */
const param: fc.Arbitrary<unknown> = fc.oneof(
  fc.string({ maxLength: 60 }),
  mixed(60),
  fc.string({ unit: fc.constantFrom("a", "\ud800", "\udc00"), maxLength: 8 }),
  fc.string({ unit: "binary", maxLength: 60 }),
  fc.string({ unit: "grapheme", minLength: 40, maxLength: 300 }),
  fc.integer(),
  fc.double(),
  fc.bigInt(),
  fc.boolean(),
  fc.constantFrom(null, undefined),
  fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)),
  fc.uint8Array({ maxLength: 40 }),
  fc.date({ noInvalidDate: true }),
  fc.array(fc.oneof(fc.integer(), fc.string({ maxLength: 6 }), fc.constant(null)), { maxLength: 5 }),
  fc.jsonValue().map((v) => ({ v })),
  fc.string({ maxLength: 10 }).map((s) => ({ toPostgres: () => s }))
)

describe("PgPool.bindExecute", () => {
  it("for all parameters: the bytes pg writes (Bind, Execute, Sync)", () =>
    fc.assert(
      fc.property(fc.nat({ max: 2_500 }).map((n) => `baton_${n}`), fc.array(param, { maxLength: 12 }), fc.boolean(), (name, values, sync) => {
        expect(bindExecute(name, values, sync).equals(pgBytes(name, values, sync))).toBe(true)
      }),
      { numRuns: runs * 20 }
    ))

  it("a value pg cannot turn into text throws, as pg's bind does, and the next one is written whole", () => {
    const cyclic: { toPostgres?: () => unknown } = {}
    cyclic.toPostgres = () => cyclic
    expect(() => pgBytes("baton_0", ["a", cyclic], false)).toThrow(/circular/)
    expect(() => bindExecute("baton_0", ["a", cyclic], false)).toThrow(/circular/)
    expect(bindExecute("baton_1", ["b", 2], true).equals(pgBytes("baton_1", ["b", 2], true))).toBe(true)
  })

  // A value's `toPostgres` (or `toJSON`) runs user code in the middle of a Bind: one that sends a
  // statement at once (a pipelined client submits synchronously) binds it there, before the outer
  // one is written. Red with one pair of scratch arrays for both: the inner Bind overwrote the
  // outer's lengths and emptied its values (a "" went as NULL, a text as another, or a TypeError).
  it("for all parameters: a statement bound from inside a value's toPostgres (re-entered, failing or not), both the bytes pg writes", () =>
    fc.assert(
      fc.property(fc.array(param, { maxLength: 6 }), fc.array(param, { maxLength: 6 }), fc.nat({ max: 6 }), fc.boolean(), (outer, inner, at, fails) => {
        const cyclic: { toPostgres?: () => unknown } = {}
        cyclic.toPostgres = () => cyclic
        const innerValues = fails ? [...inner, cyclic] : inner
        const bound: Array<Buffer> = []
        const reentrant = {
          toPostgres: () => {
            try {
              bound.push(bindExecute("baton_1", innerValues, false))
            } catch (error) {
              expect(String(error)).toMatch(/circular/)
            }
            return "r"
          }
        }
        const values = [...outer.slice(0, at), reentrant, ...outer.slice(at)]
        const ours = bindExecute("baton_0", values, true)
        expect(ours.equals(pgBytes("baton_0", values, true))).toBe(true)
        if (!fails) expect(bound[0]!.equals(pgBytes("baton_1", innerValues, false))).toBe(true)
        // And the next statement, on its own.
        expect(bindExecute("baton_2", outer, true).equals(pgBytes("baton_2", outer, true))).toBe(true)
      }),
      { numRuns: runs * 20 }
    ))
})

describe("PgPool: described statements bound by bindExecute, on PostgreSQL", () => {
  let schema: Awaited<ReturnType<typeof freshSchema>>
  beforeAll(async () => {
    schema = await freshSchema()
  })
  afterAll(async () => schema?.drop())

  const select = "SELECT $1::text AS t, $2::int8 AS n, $3::bytea AS b, $4::jsonb AS j, $5::bool AS f, $6::float8 AS d"
  /** A row's parameters: text without NUL (PostgreSQL refuses it), numbers, bytes, JSON, NULLs. */
  const rowParams = fc.tuple(
    fc.option(fc.oneof(fc.string({ maxLength: 60 }), mixed(60), fc.string({ unit: "grapheme", maxLength: 200 })).map((s) => s.replace(/\0/g, "")), { nil: null }),
    fc.option(fc.integer(), { nil: null }),
    fc.option(fc.uint8Array({ maxLength: 30 }).map((a) => Buffer.from(a)), { nil: null }),
    fc.option(fc.record({ k: fc.integer(), s: fc.string({ maxLength: 10 }).map((s) => s.replace(/\0/g, "")) }), { nil: null }),
    fc.option(fc.boolean(), { nil: null }),
    fc.option(fc.double({ noNaN: true, noDefaultInfinity: true }), { nil: null })
  )
  const expected = ([t, n, b, j, f, d]: readonly [string | null, number | null, Buffer | null, object | null, boolean | null, number | null]) => [
    // -0 goes as its text, "0" (pg's `prepareValue`).
    { t, n, b, j, f, d: d === 0 ? 0 : d }
  ]

  it("for all parameters: every run answers the row the parameters make, alone and in a transaction's batch", () =>
    fc.assert(
      fc.asyncProperty(fc.array(rowParams, { minLength: 2, maxLength: 6 }), async (rows) =>
        Effect.runPromise(
          Effect.scoped(
            Effect.gen(function* () {
              const { client } = yield* make({ url: schema.url, poolSize: 1 })
              const conn = (yield* client.reserve) as Pipelined
              // Alone: the first run Parses and Describes, the later ones go through `bindExecute`.
              for (const p of rows) expect(yield* conn.execute(select, p, undefined)).toEqual(expected(p))
              // In a transaction block: one batch (BEGIN and a queued write ride with the read).
              yield* conn.executeUnprepared("CREATE TEMP TABLE IF NOT EXISTS bind_log (t text)", [], undefined)
              conn.queue("BEGIN", [])
              for (const p of rows) {
                conn.queue("INSERT INTO bind_log (t) VALUES ($1)", [p[0]])
                expect(yield* conn.execute(select, p, undefined)).toEqual(expected(p))
              }
              yield* conn.execute("COMMIT", [], undefined)
              const logged = yield* conn.execute("SELECT t FROM bind_log WHERE $1::int4 = 1 ORDER BY ctid", [1], undefined)
              expect(logged.slice(-rows.length)).toEqual(rows.map((p) => ({ t: p[0] })))
              yield* conn.executeUnprepared("DROP TABLE bind_log", [], undefined)
            })
          )
        )
      ),
      { numRuns: runs }
    ), 60_000)

  it("a statement sent from inside a value's toPostgres does not change the outer one's parameters (a \"\" stays a \"\", not NULL)", () =>
    Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const { client } = yield* make({ url: schema.url, poolSize: 1 })
          const conn = (yield* client.reserve) as Pipelined
          const outer = "SELECT $1::text IS NULL AS absent, $1::text AS t, $2::text AS v"
          const inner = "SELECT $1::text AS x"
          // Both described: their next runs go through `bindExecute`.
          expect(yield* conn.execute(outer, ["a", "b"], undefined)).toEqual([{ absent: false, t: "a", v: "b" }])
          expect(yield* conn.execute(inner, ["c"], undefined)).toEqual([{ x: "c" }])
          let sent: Promise<ReadonlyArray<unknown>> | undefined
          // The pipelined client submits a statement at once: the inner one is bound inside the outer's Bind.
          const reentrant = { toPostgres: () => ((sent = Effect.runPromise(conn.execute(inner, [null], undefined))), "r") }
          expect(yield* conn.execute(outer, ["", reentrant], undefined)).toEqual([{ absent: false, t: "", v: "r" }])
          expect(yield* Effect.promise(() => sent!)).toEqual([{ x: null }])
        })
      )
    ))

  // Red without `Prepared`'s own `binary`: the first run asked for binary results (its int8 came
  // back a string) and its parsers read the later runs' text (`bindExecute` asks for text: an
  // int4 7 came back as null).
  it("with pg.defaults.binary set, a statement's later runs answer as its first", async () => {
    const defaults = pg.defaults as { binary: boolean }
    defaults.binary = true
    try {
      await Effect.runPromise(
        Effect.scoped(
          Effect.gen(function* () {
            const { client } = yield* make({ url: schema.url, poolSize: 1 })
            const conn = (yield* client.reserve) as Pipelined
            const sql = "SELECT $1::int4 AS n, $2::text AS t, $3::int8 AS b"
            for (let i = 0; i < 3; i++) expect(yield* conn.execute(sql, [7 + i, "x", 2 ** 40], undefined)).toEqual([{ n: 7 + i, t: "x", b: 2 ** 40 }])
          })
        )
      )
    } finally {
      defaults.binary = false
    }
  })

  it("a value pg cannot bind fails its statement (a later run of it and the connection still work)", () =>
    Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const { client } = yield* make({ url: schema.url, poolSize: 1 })
          const conn = (yield* client.reserve) as Pipelined
          const cyclic: { toPostgres?: () => unknown } = {}
          cyclic.toPostgres = () => cyclic
          const p = ["a", 1, null, null, true, 1.5] as const
          expect(yield* conn.execute(select, p, undefined)).toEqual(expected([...p]))
          const failed = yield* Effect.exit(conn.execute(select, ["a", cyclic, null, null, true, 1.5], undefined))
          expect(failed._tag).toBe("Failure")
          expect(String(failed._tag === "Failure" ? (failed.cause.reasons[0] as { error?: unknown }).error : "")).toMatch(/circular/)
          expect(yield* conn.execute(select, p, undefined)).toEqual(expected([...p]))
          // In a transaction's batch (after a queued BEGIN): the batch fails with it; rolled back, the connection goes on.
          conn.queue("BEGIN", [])
          const inBatch = yield* Effect.exit(conn.execute(select, ["a", cyclic, null, null, true, 1.5], undefined))
          expect(String(inBatch._tag === "Failure" ? (inBatch.cause.reasons[0] as { error?: unknown }).error : "")).toMatch(/circular/)
          yield* conn.execute("ROLLBACK", [], undefined)
          expect(yield* conn.execute(select, p, undefined)).toEqual(expected([...p]))
        })
      )
    ))
})
