/**
 * What each way of running a statement of `query` gives (`all`, `get`, `run`, `any`, `write`,
 * `writeRows`), on every engine, against what effect/sql's own statement returns for it on a twin
 * store: the rows, the first, their count (0 to 12: beyond the exits and counts made once and
 * shared, `Store.succeeded`), whether there is one, and the same typed error when it fails; a
 * view's writes among them (SQLite: not counted, run with their `RETURNING`). Run outside a
 * transaction, in `transaction`, in `group`, in a savepoint (`store.sql.withTransaction` inside a
 * transaction) and in effect/sql's own transaction (`store.sql.withTransaction` outside one): the
 * store's client read past its proxy, each way to its connection.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import { Effect } from "effect"
import { SqlError } from "effect/sql"
import { freshSchema } from "@baton/testkit/postgres"
import { Postgres, Sqlite, type Row, type Sql, type Store } from "@baton/store"
import { numberParams } from "../src/Store.ts"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 50)

interface Engine {
  readonly name: string
  readonly dialect: Store["dialect"]
  /** Two stores on databases of their own, and what disposes of them. */
  readonly open: () => Promise<{ readonly stores: readonly [Store, Store]; readonly dispose: () => Promise<void> }>
}

const engines: ReadonlyArray<Engine> = [
  {
    name: "SQLite in memory",
    dialect: "sqlite",
    open: async () => ({ stores: [await Sqlite.open({ path: ":memory:" }), await Sqlite.open({ path: ":memory:" })], dispose: async () => {} })
  },
  {
    name: "SQLite on a file",
    dialect: "sqlite",
    open: async () => {
      const dir = mkdtempSync(join(tmpdir(), "baton-outcomes-"))
      return {
        stores: [await Sqlite.open({ path: join(dir, "a.db") }), await Sqlite.open({ path: join(dir, "b.db") })],
        dispose: async () => rmSync(dir, { recursive: true, force: true })
      }
    }
  },
  {
    name: "PostgreSQL",
    dialect: "pg",
    open: async () => {
      const [a, b] = [await freshSchema(), await freshSchema()]
      return {
        stores: [await Postgres.open({ url: a.url }), await Postgres.open({ url: b.url })],
        dispose: async () => {
          await a.drop()
          await b.drop()
        }
      }
    }
  }
]

/** The schema, a statement at a time (a trigger's body has its own `;`). A plain view is updatable on PostgreSQL, its RETURNING too. */
const schema = (dialect: Store["dialect"]): ReadonlyArray<string> => [
  `CREATE TABLE o (k ${dialect === "pg" ? "BIGINT" : "INTEGER"} PRIMARY KEY, g BIGINT NOT NULL, u TEXT UNIQUE)`,
  "CREATE VIEW ov AS SELECT k, g, u FROM o",
  ...(dialect === "pg"
    ? []
    : [
        "CREATE TRIGGER ov_insert INSTEAD OF INSERT ON ov BEGIN INSERT INTO o (k, g, u) VALUES (new.k, new.g, new.u); END",
        "CREATE TRIGGER ov_update INSTEAD OF UPDATE ON ov BEGIN UPDATE o SET g = new.g WHERE k = old.k; END"
      ])
]

/** Statements of each kind: inserts that may conflict, writes of 0 to 12 rows, a view's, reads, one that cannot run. */
const texts = [
  "INSERT INTO o (k, g, u) VALUES (?, ?, ?) RETURNING k",
  "INSERT INTO ov (k, g, u) VALUES (?, ?, ?) RETURNING k",
  "UPDATE o SET g = g + 1 WHERE k >= ? AND g < ? + 5 AND (u IS NULL OR u <> ?) RETURNING k",
  "UPDATE ov SET g = g + 1 WHERE k >= ? AND g < ? + 5 AND (u IS NULL OR u <> ?) RETURNING k",
  "DELETE FROM o WHERE k >= ? AND g > ? AND (u IS NULL OR u <> ?) RETURNING k",
  "SELECT k FROM o WHERE k >= ? AND g < ? + 5 AND (u IS NULL OR u <> ?) ORDER BY k",
  "UPDATE o SET g = ? WHERE k = ? AND u = ? RETURNING k, g"
] as const

type How = "all" | "get" | "run" | "any" | "write" | "writeRows"
type Where = "outside" | "transaction" | "group" | "savepoint" | "effect's transaction"

/** What `how` gives, made of the rows the statement returned. */
const expected = (how: How, rows: ReadonlyArray<Row>): unknown =>
  how === "all" || how === "writeRows" ? rows : how === "get" ? rows[0] : how === "any" ? rows.length > 0 : rows.length

const plain = (value: unknown): unknown =>
  Array.isArray(value)
    ? value.map(plain)
    : value !== null && typeof value === "object"
      ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k, typeof v === "bigint" || typeof v === "string" ? Number(v) : v]))
      : value

const outcomeOf = (run: Promise<unknown>): Promise<unknown> =>
  run.then(plain, (error: unknown) => ({ failed: SqlError.isSqlError(error) ? error.reason._tag : `not a SqlError: ${String(error)}` }))

describe.each(engines)("query's outcomes on $name", (engine) => {
  let stores: readonly [Store, Store] | undefined
  let dispose = async () => {}
  beforeAll(async () => {
    const opened = await engine.open()
    stores = opened.stores
    dispose = opened.dispose
    for (const s of stores) for (const ddl of schema(engine.dialect)) await s.run(s.query(ddl).run())
  })
  afterAll(async () => {
    for (const s of stores ?? []) await s.close()
    await dispose()
  })

  it("each way gives what the client's rows make of it, or its typed error, wherever it runs, for all statement sequences", async () => {
    const [store, twin] = stores!
    const queries = texts.map((text) => store.query(text))
    const key = fc.integer({ min: 0, max: 12 })
    const op = fc.record({
      statement: fc.integer({ min: 0, max: texts.length - 1 }),
      params: fc.tuple(key, fc.integer({ min: 0, max: 3 }), fc.constantFrom("a", "b", "c")),
      how: fc.constantFrom<How>("all", "get", "run", "any", "write", "writeRows"),
      where: fc.constantFrom<Where>("outside", "transaction", "group", "savepoint", "effect's transaction")
    })
    // Rows enough for counts past 7 (`Store.succeeded`'s shared ones).
    const seed = (s: Store) => s.transaction(Effect.forEach(Array.from({ length: 12 }, (_, k) => k), (k) => s.query("INSERT INTO o (k, g) VALUES (?, 0)").run(k)))
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: engine.dialect === "pg" ? 8 : 30 }), async (ops) => {
        for (const s of [store, twin]) await s.run(s.query("DELETE FROM o").run())
        await seed(store)
        await seed(twin)
        for (const { statement, params, how, where } of ops) {
          const text = texts[statement]!
          const rows = await outcomeOf(twin.run(twin.sql.unsafe<Row>(engine.dialect === "pg" ? numberParams(text) : text, params).withoutTransform))
          const q = queries[statement]!
          // What is read after the commit (`write`, `writeRows`), read after it.
          const effect: Sql<unknown> =
            how === "write" || how === "writeRows" ? q[how](...params) : Effect.map(q[how](...params) as Sql<unknown>, (value) => () => value)
          const wrapped = where === "savepoint" || where === "effect's transaction" ? store.sql.withTransaction(effect) : effect
          const ran =
            where === "outside" || where === "effect's transaction"
              ? store.run(wrapped)
              : where === "group"
                ? store.group(wrapped)
                : store.transaction(wrapped)
          const got = await outcomeOf(ran.then((later) => (later as () => unknown)()))
          const want = typeof rows === "object" && rows !== null && "failed" in rows ? rows : expected(how, rows as ReadonlyArray<Row>)
          expect(got, `${how} ${where}: ${text} ${JSON.stringify(params)}`).toEqual(want)
        }
        const all = "SELECT k, g, u FROM o ORDER BY k"
        expect(plain(await store.run(store.query(all).all()))).toEqual(plain(await twin.run(twin.query(all).all())))
      }),
      { numRuns: engine.dialect === "pg" ? Math.max(1, Math.ceil(runs / 2)) : runs }
    )
  })
})
