/**
 * Named statements on a real PostgreSQL server through `PgPool`: a statement is described once
 * per connection (Parse and Describe on its first run, Bind and Execute after), so the rows of
 * every later run are built from the description remembered for that connection and name. Each
 * connection names its statements in the order it first meets them, so one name stands for
 * different statements (different columns and types) on two connections.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import { Effect } from "effect"
import { SqlError } from "effect/sql"
import { freshSchema, query } from "@baton/testkit/postgres"
import { blamed, make, type Pipelined } from "../src/PgPool.ts"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 50)

type Row = Record<string, unknown>
/** A statement, and what it answers for its parameters: its rows, or the SQLSTATE of its failure. */
interface Statement {
  readonly sql: string
  readonly params: fc.Arbitrary<ReadonlyArray<unknown>>
  readonly expected: (params: ReadonlyArray<unknown>) => ReadonlyArray<Row> | string
}
const isInt = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v)
const statements: ReadonlyArray<Statement> = [
  {
    // A parameter that is not a number fails at Bind (22P02), before any row.
    sql: "SELECT $1::int8 AS n, $2::text AS label",
    params: fc.tuple(fc.oneof(fc.integer(), fc.constant("x")), fc.string({ maxLength: 8 }).map((s) => s.replace(/\0/g, ""))),
    expected: ([n, label]) => (isInt(n) ? [{ n, label }] : "22P02")
  },
  {
    sql: "SELECT $1::bool AS flag, $2::text AS label, $3::int4 AS small",
    params: fc.tuple(fc.boolean(), fc.constantFrom("a", "b", ""), fc.option(fc.integer({ min: -1000, max: 1000 }), { nil: null })),
    expected: ([flag, label, small]) => [{ flag, label, small }]
  },
  {
    sql: "SELECT $1::int8 + 1 AS next, $2::jsonb AS doc",
    params: fc.tuple(fc.integer({ min: 0, max: 1_000_000 }), fc.integer().map((k) => JSON.stringify({ k }))),
    expected: ([n, doc]) => [{ next: (n as number) + 1, doc: JSON.parse(doc as string) }]
  },
  {
    // Fails while it runs (22012), after its row description.
    sql: "SELECT 10 / $1::int4 AS q",
    params: fc.tuple(fc.integer({ min: -3, max: 3 })),
    expected: ([d]) => (d === 0 ? "22012" : [{ q: Math.trunc(10 / (d as number)) }])
  },
  {
    // Zero, one or several rows.
    sql: "SELECT x, x * 2 AS twice FROM generate_series(1, $1::int4) AS x",
    params: fc.tuple(fc.integer({ min: 0, max: 4 })),
    expected: ([k]) => Array.from({ length: k as number }, (_, i) => ({ x: i + 1, twice: 2 * (i + 1) }))
  },
  {
    // A write without rows (queued in a transaction: it goes out with the next statement); a negative k fails its CHECK (23514).
    sql: "INSERT INTO p_log (k) VALUES ($1)",
    params: fc.tuple(fc.integer({ min: -1, max: 20 })),
    expected: ([k]) => ((k as number) < 0 ? "23514" : [])
  },
  {
    // A value pg cannot turn into text (a cyclic object) fails in the client, before its Bind goes out: "client".
    sql: "SELECT $1::jsonb AS doc, $2::int4 AS n",
    params: fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 9 })).map(([cyclic, n]) => {
      const doc: Record<string, unknown> = { n }
      if (cyclic) doc.self = doc
      return [doc, n]
    }),
    expected: ([doc, n]) => ("self" in (doc as object) ? "client" : [{ doc: { n }, n }])
  },
  {
    // No columns at all (NoData to a Describe).
    sql: "SELECT FROM generate_series(1, $1::int4)",
    params: fc.tuple(fc.integer({ min: 0, max: 2 })),
    expected: ([k]) => Array.from({ length: k as number }, () => ({}))
  }
]

const inserts = statements.findIndex((s) => s.sql.startsWith("INSERT"))

/** A batch of statements on one connection: sent in one write (queued), or one by one; in a transaction or not. */
const batch = fc.record({
  queued: fc.boolean(),
  transaction: fc.boolean(),
  /** In a transaction: its COMMIT sends the queued statements (or a SELECT does, and the COMMIT goes alone). */
  commitSends: fc.boolean(),
  items: fc.array(
    fc.integer({ min: 0, max: statements.length - 1 }).chain((s) => statements[s]!.params.map((params) => ({ s, params }))),
    { minLength: 1, maxLength: 5 }
  )
})

/** The SQLSTATE of a statement's failure; "client" for one raised in pg before the statement went out. */
const sqlState = (error: unknown): string | undefined => {
  const cause = SqlError.isSqlError(error) ? (error.reason as { readonly cause?: unknown }).cause : error
  return cause instanceof TypeError ? "client" : (cause as { readonly code?: string } | undefined)?.code
}

const logged = (conn: Pipelined) => Effect.map(conn.execute("SELECT count(*) AS n FROM p_log", [], undefined), (rows) => rows[0]!.n as number)

/**
 * Runs a batch and checks every statement's rows, or that the batch fails with its first failure,
 * blamed on it; and the rows it wrote: in a transaction all or none, outside one those of each
 * statement that succeeded (each its own transaction, also after one that failed).
 */
const check = (conn: Pipelined, b: { readonly queued: boolean; readonly transaction: boolean; readonly commitSends: boolean; readonly items: ReadonlyArray<{ readonly s: number; readonly params: ReadonlyArray<unknown> }> }) =>
  Effect.gen(function* () {
    const expected = b.items.map(({ s, params }) => statements[s]!.expected(params))
    const before = yield* logged(conn)
    if (b.transaction) conn.queue("BEGIN", [])
    yield* run(conn, b, expected)
    const failed = expected.some((e) => typeof e === "string")
    // A COMMIT that failed (of a statement before it) ended the transaction block all the same:
    // the next statement (the count) runs outside it.
    if (b.transaction && !b.commitSends) yield* conn.execute(failed ? "ROLLBACK" : "COMMIT", [], undefined)
    const writes = b.items.filter((item, i) => item.s === inserts && (b.transaction ? !failed : typeof expected[i] !== "string")).length
    expect((yield* logged(conn)) - before).toBe(writes)
  })

const run = (conn: Pipelined, b: { readonly queued: boolean; readonly transaction: boolean; readonly commitSends: boolean; readonly items: ReadonlyArray<{ readonly s: number; readonly params: ReadonlyArray<unknown> }> }, expected: ReadonlyArray<ReadonlyArray<Row> | string>) =>
  Effect.gen(function* () {
    if (!b.queued && !b.transaction) {
      for (const [i, { s, params }] of b.items.entries()) {
        const exit = yield* Effect.exit(conn.execute(statements[s]!.sql, params, undefined))
        const want = expected[i]!
        if (typeof want === "string") {
          expect(exit._tag).toBe("Failure")
          if (exit._tag === "Failure") expect(sqlState(exit.cause.reasons[0]?._tag === "Fail" ? exit.cause.reasons[0].error : undefined)).toBe(want)
        } else {
          expect(exit._tag).toBe("Success")
          if (exit._tag === "Success") expect(exit.value).toEqual(want)
        }
      }
      return
    }
    // All but the last queued, the last sent with them: one write (in a transaction, with one
    // Sync; else one each). In a transaction every item is queued and a SELECT sends them (a last
    // write would be queued too).
    const items = b.transaction ? [...b.items, { s: b.commitSends ? -2 : -1, params: b.commitSends ? [] : [7] }] : b.items
    const sqlOf = (s: number) => (s === -2 ? "COMMIT" : s === -1 ? "SELECT $1::int4 AS last" : statements[s]!.sql)
    const want = b.transaction ? [...expected, b.commitSends ? [] : [{ last: 7 }]] : expected
    const got: Array<ReadonlyArray<Row>> = []
    items.slice(0, -1).forEach(({ s, params }, i) => {
      conn.owner = i
      conn.queue(sqlOf(s), params, (rows) => (got[i] = rows))
    })
    const last = items.length - 1
    conn.owner = last
    const exit = yield* Effect.exit(conn.execute(sqlOf(items[last]!.s), items[last]!.params, undefined))
    conn.owner = undefined
    const first = want.findIndex((e) => typeof e === "string")
    if (first === -1) {
      expect(exit._tag).toBe("Success")
      if (exit._tag === "Success") got[last] = exit.value as ReadonlyArray<Row>
      expect(got).toEqual(want)
    } else {
      expect(exit._tag).toBe("Failure")
      const error = exit._tag === "Failure" && exit.cause.reasons[0]?._tag === "Fail" ? exit.cause.reasons[0].error : undefined
      expect(sqlState(error)).toBe(want[first])
      expect(blamed(error)).toBe(first)
    }
  })

describe("PgPool: named statements described once per connection", () => {
  let schema: Awaited<ReturnType<typeof freshSchema>>
  beforeAll(async () => {
    schema = await freshSchema()
    await query(schema.url, "CREATE TABLE p_log (k int4 NOT NULL CHECK (k >= 0))")
  })
  afterAll(async () => schema?.drop())

  it("for all batches on two connections (one name, different statements on each): every row as the statement answers it, a failure blamed on its statement", () =>
    fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.integer({ min: 0, max: 1 }), batch), { minLength: 1, maxLength: 14 }), async (work) =>
        Effect.runPromise(
          Effect.scoped(
            Effect.gen(function* () {
              // A fresh pool per run: each connection names statements in the order of this run.
              const { client } = yield* make({ url: schema.url, poolSize: 2 })
              const a = (yield* client.reserve) as Pipelined
              const b = (yield* client.reserve) as Pipelined
              for (const [which, one] of work) yield* check(which === 0 ? a : b, one)
            })
          )
        )
      ),
      { numRuns: runs }
    ))

  it("a statement whose table changes shape under it fails, and never answers rows of its old shape", () =>
    Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const { client } = yield* make({ url: schema.url, poolSize: 1 })
          const conn = (yield* client.reserve) as Pipelined
          const select = "SELECT * FROM shapes WHERE id = $1"
          // Its first Parse fails (no table yet): parsed again once the table exists, and described.
          const missing = yield* Effect.exit(conn.execute(select, [1], undefined))
          expect(missing._tag).toBe("Failure")
          yield* conn.execute("CREATE TABLE shapes (id int4 PRIMARY KEY, a text)", [], undefined)
          yield* conn.execute("INSERT INTO shapes VALUES (1, 'one')", [], undefined)
          for (let i = 0; i < 3; i++) expect(yield* conn.execute(select, [1], undefined)).toEqual([{ id: 1, a: "one" }])
          yield* conn.execute("ALTER TABLE shapes ADD COLUMN b int8 DEFAULT 7", [], undefined)
          const changed = yield* Effect.exit(conn.execute(select, [1], undefined))
          if (changed._tag === "Success") expect(changed.value).toEqual([{ id: 1, a: "one", b: 7 }])
          else expect(sqlState(changed.cause.reasons[0]?._tag === "Fail" ? changed.cause.reasons[0].error : undefined)).toBe("0A000") // cached plan must not change result type
          // A new connection prepares it afresh: the new shape.
          const { client: other } = yield* make({ url: schema.url, poolSize: 1 })
          expect(yield* Effect.flatMap(other.reserve, (c) => c.execute(select, [1], undefined))).toEqual([{ id: 1, a: "one", b: 7 }])
        })
      )
    ))
})
