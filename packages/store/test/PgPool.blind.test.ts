/**
 * Which statements a PostgreSQL transaction holds back (`isBlindWrite`): those that answer no rows,
 * only success or failure. A `WITH` whose main statement is an INSERT, UPDATE or DELETE and that
 * returns nothing is one (two writes in one statement, Inventory's on PostgreSQL); one that answers
 * rows is not, whatever its WITHs, quotes and comments hold. Checked against the server: a
 * statement held back is one it describes no row for (and, without RETURNING, each such one is held back). In a transaction, a write held
 * back fails the next statement, not its own, and nothing of the transaction commits.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import pg from "pg"
import { Effect, Exit } from "effect"
import { freshSchema } from "@baton/testkit/postgres"
import { isBlindWrite, mainStatementOf } from "../src/PgPool.ts"
import { Postgres, type Store } from "../src/index.ts"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 50)

/** Text that a scan of the top level must step over: keywords and parentheses inside quotes and comments. */
const noise = fc.constantFrom("", " /* ) UPDATE t ( */ ", " -- ) DELETE FROM t\n", " ", "\n  ")
const literal = fc.constantFrom("'x'", "') SELECT ('", "'it''s ) INSERT'", "$$ ) UPDATE ( $$", "$q$ ) DELETE $q$")
/** A WITH's body: a read, or a write that returns rows or not (reading `literal` as a text). */
const body = fc.tuple(fc.constantFrom("select", "insert", "update", "delete"), fc.boolean(), literal, noise).map(([kind, returning, text, gap]) => ({
  returning: kind !== "select" && returning,
  sql:
    kind === "select"
      ? `SELECT k FROM w WHERE v <> ${text}${gap}`
      : kind === "insert"
        ? `INSERT INTO w (k, v) SELECT -1, ${text}${gap} WHERE false${returning ? " RETURNING k" : ""}`
        : kind === "update"
          ? `UPDATE w SET v = ${text}${gap} WHERE k < 0${returning ? " RETURNING k" : ""}`
          : `DELETE FROM w WHERE v = ${text}${gap} AND k < 0${returning ? " RETURNING k" : ""}`
}))
/** The main statement after the WITHs. */
const main = fc.tuple(fc.constantFrom("SELECT", "INSERT", "UPDATE", "DELETE", "VALUES"), fc.boolean(), literal, noise).map(([kind, returning, text, gap]) => ({
  kind,
  returning: (kind === "INSERT" || kind === "UPDATE" || kind === "DELETE") && returning,
  sql:
    kind === "SELECT"
      ? `SELECT (SELECT COUNT(*) FROM w), ${text}${gap}`
      : kind === "VALUES"
        ? `VALUES (${text})`
        : kind === "INSERT"
          ? `INSERT INTO w (k, v) SELECT -2, ${text}${gap} FROM w WHERE false${returning ? " RETURNING k" : ""}`
          : kind === "UPDATE"
            ? `UPDATE w SET v = ${text}${gap} WHERE k < -1 AND EXISTS (SELECT 1 FROM w)${returning ? " RETURNING k" : ""}`
            : `DELETE FROM w WHERE v = ${text}${gap} AND k < -1${returning ? " RETURNING k" : ""}`
}))
const statement = fc.tuple(fc.array(body, { minLength: 1, maxLength: 3 }), main, noise).map(([bodies, m, gap]) => ({
  sql: `WITH ${gap}${bodies.map((b, i) => `c${i} AS (${b.sql})`).join(`,${gap}`)}${gap}${m.sql}`,
  main: m.kind,
  returning: m.returning || bodies.some((b) => b.returning)
}))

describe("PgPool.isBlindWrite", () => {
  let schema: Awaited<ReturnType<typeof freshSchema>>
  let client: pg.Client
  let store: Store
  beforeAll(async () => {
    schema = await freshSchema()
    client = new pg.Client({ connectionString: schema.url })
    await client.connect()
    await client.query("CREATE TABLE w (k int4 PRIMARY KEY, v text NOT NULL)")
    store = await Postgres.open({ url: schema.url, poolSize: 2 })
  })
  afterAll(async () => {
    await store?.close()
    await client?.end()
    await schema?.drop()
  })

  it("for all WITH statements (quotes, comments and keywords in them): its main statement is found, and never held back when the server describes a row for it, and with no RETURNING in it held back iff it describes none", async () => {
    await fc.assert(
      fc.asyncProperty(statement, async (s) => {
        expect(mainStatementOf(s.sql)).toBe(s.main)
        // The server's word on what it answers: a data-modifying statement without RETURNING has no row description.
        const described = (await client.query(s.sql)).fields.length > 0
        const blind = isBlindWrite(s.sql)
        // Never held back when it answers rows; with no RETURNING anywhere, held back iff it answers none
        // (a RETURNING in a WITH keeps a statement waited for, whatever its main statement answers).
        if (blind) expect(described).toBe(false)
        if (!s.returning) expect(blind).toBe(!described)
        expect(blind).toBe(!s.returning && s.main !== "SELECT" && s.main !== "VALUES")
      }),
      { numRuns: runs * 4 }
    )
  })

  it("a plain write is held back as before; a read or a write that returns rows is not", () => {
    expect(isBlindWrite("INSERT INTO w (k, v) VALUES ($1, $2)")).toBe(true)
    expect(isBlindWrite("  update w SET v = $1")).toBe(true)
    expect(isBlindWrite("INSERT INTO w (k, v) VALUES ($1, $2) RETURNING k")).toBe(false)
    expect(isBlindWrite("SELECT 1")).toBe(false)
    expect(isBlindWrite("WITH a AS (SELECT $1::int AS n) SELECT n FROM a")).toBe(false)
    expect(isBlindWrite("WITH a AS (UPDATE w SET v = 'x' WHERE k = $1) UPDATE w SET v = 'y' WHERE k = $2")).toBe(true)
    expect(isBlindWrite("WITH a AS (UPDATE w SET v = 'x' WHERE k = $1 RETURNING k) UPDATE w SET v = 'y' WHERE k IN (SELECT k FROM a)")).toBe(false)
  })

  it("in a transaction, a WITH of two writes that fails fails the next statement (not its own), and nothing of the transaction commits; one that succeeds commits both writes", async () => {
    await store.run(store.query("INSERT INTO w (k, v) VALUES (1, 'one'), (2, 'two')").run())
    const both = store.query("WITH a AS (UPDATE w SET v = ? WHERE k = 1) INSERT INTO w (k, v) VALUES (?, ?)")
    const read = store.query("SELECT v FROM w WHERE k = 1")
    let ownExit: Exit.Exit<number, unknown> | undefined
    let nextExit: Exit.Exit<unknown, unknown> | undefined
    const failed = await store
      .transaction(
        Effect.gen(function* () {
          // k = 2 is there: the INSERT fails (23505), once the statement goes out.
          ownExit = yield* Effect.exit(both.run("changed", 2, "dup"))
          nextExit = yield* Effect.exit(read.get())
        })
      )
      .then(
        () => undefined,
        (error: unknown) => error
      )
    expect(ownExit !== undefined && Exit.isSuccess(ownExit)).toBe(true)
    expect(nextExit !== undefined && Exit.isFailure(nextExit) && String(nextExit.cause)).toContain("duplicate key")
    expect(failed).toBeDefined()
    expect(await store.run(read.get())).toEqual({ v: "one" })
    await store.transaction(Effect.asVoid(both.run("changed", 3, "three")))
    expect(await store.run(store.query("SELECT k, v FROM w ORDER BY k").all())).toEqual([
      { k: 1, v: "changed" },
      { k: 2, v: "two" },
      { k: 3, v: "three" }
    ])
  })
})
