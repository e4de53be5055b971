/**
 * A statement only counted on SQLite (`run`, `any`, `write`) runs without its closing `RETURNING`
 * of plain columns, its changes counted (`Store.withoutReturning`). For any sequence of inserts
 * (conflicting or not, `OR IGNORE`), upserts (updating or not), updates and deletes, inside a
 * transaction and outside one: each count is the number of rows the same statement returns, read
 * on a twin store where its `RETURNING` is an expression (never stripped), and both stores end
 * with the same rows.
 */
import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { Effect } from "effect"
import { Sqlite, withoutReturning, type Sql } from "@baton/store"

/** Each statement, with `RETURNING` of a column (stripped when counted) and of an expression (kept). */
const statements = (returning: (column: string) => string): ReadonlyArray<string> => [
  `INSERT INTO t (k, v) VALUES (?, ?) ON CONFLICT DO NOTHING RETURNING ${returning("k")}`,
  `INSERT OR IGNORE INTO t (k, v) VALUES (?, CASE WHEN ? > 5 THEN NULL ELSE 1 END) RETURNING ${returning("k")}`,
  `INSERT INTO t (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v WHERE t.v < excluded.v RETURNING ${returning("v")}`,
  `UPDATE t SET v = v + 1 WHERE k >= ? AND v < ? RETURNING ${returning("k")}`,
  `DELETE FROM t WHERE k = ? OR v = ? RETURNING ${returning("k")}`
]
const plain = statements((c) => c)
const kept = statements((c) => `(${c} + 0)`)

describe("Store.withoutReturning", () => {
  it("strips a closing RETURNING of plain columns from a DML statement only", () => {
    expect(withoutReturning("INSERT INTO t (k) VALUES (?) ON CONFLICT DO NOTHING RETURNING k")).toBe("INSERT INTO t (k) VALUES (?) ON CONFLICT DO NOTHING")
    expect(withoutReturning('UPDATE t SET v = 1 WHERE k = ? RETURNING "k", v, 1')).toBe("UPDATE t SET v = 1 WHERE k = ?")
    expect(withoutReturning("delete from t returning k;")).toBe("delete from t")
    // Expressions, a subquery, a function: what they run stays.
    expect(withoutReturning("INSERT INTO t (k) VALUES (?) RETURNING (SELECT v FROM u)")).toBeUndefined()
    expect(withoutReturning("UPDATE t SET v = 1 RETURNING f(k)")).toBeUndefined()
    expect(withoutReturning("UPDATE t SET v = 1 RETURNING k AS key")).toBeUndefined()
    // A RETURNING inside a WITH, a SELECT, none.
    expect(withoutReturning("WITH s AS (INSERT INTO t (k) VALUES (?) RETURNING k) SELECT COUNT(*) FROM s")).toBeUndefined()
    expect(withoutReturning("SELECT k FROM t RETURNING k")).toBeUndefined()
    expect(withoutReturning("INSERT INTO t (k) VALUES (?)")).toBeUndefined()
  })

  it("counts the rows of a view written through its INSTEAD OF triggers as its RETURNING returns them", async () => {
    // sqlite3_changes counts no row of a view's INSTEAD OF trigger; its RETURNING returns one for each.
    const s = await Sqlite.open({ path: ":memory:" })
    try {
      for (const ddl of [
        "CREATE TABLE t (k INTEGER PRIMARY KEY, v INTEGER NOT NULL)",
        "CREATE VIEW w AS SELECT k, v FROM t",
        "CREATE TRIGGER w_insert INSTEAD OF INSERT ON w BEGIN INSERT INTO t (k, v) VALUES (new.k, new.v); END",
        "CREATE TRIGGER w_update INSTEAD OF UPDATE ON w BEGIN UPDATE t SET v = new.v WHERE k = old.k; END",
        "CREATE TRIGGER w_delete INSTEAD OF DELETE ON w BEGIN DELETE FROM t WHERE k = old.k; END"
      ])
        await s.run(s.query(ddl).run())
      const insert = s.query("INSERT INTO w (k, v) VALUES (?, ?) RETURNING k")
      const update = s.query("UPDATE w SET v = ? WHERE k <= ? RETURNING k")
      const remove = s.query("DELETE FROM w WHERE k = ? RETURNING k")
      expect(await s.run(insert.run(1, 1))).toBe(1)
      expect(await s.transaction(insert.any(2, 2))).toBe(true)
      expect(await s.transaction(Effect.map(insert.write(3, 3), (later) => later()))).toBe(1)
      expect((await s.run(update.all(7, 2))).length).toBe(2)
      expect(await s.run(update.run(8, 2))).toBe(2)
      expect(await s.transaction(remove.any(3))).toBe(true)
      expect(await s.run(s.query("SELECT k, v FROM t ORDER BY k").all())).toEqual([
        { k: 1, v: 8 },
        { k: 2, v: 8 }
      ])
    } finally {
      await s.close()
    }
  })

  it("counts a statement's writes as its RETURNING returns them when the table it wrote becomes a view", async () => {
    const s = await Sqlite.open({ path: ":memory:" })
    try {
      await s.run(s.query("CREATE TABLE w (k INTEGER PRIMARY KEY, v INTEGER NOT NULL)").run())
      const update = s.query("UPDATE w SET v = ? RETURNING k")
      await s.run(s.query("INSERT INTO w (k, v) VALUES (1, 1), (2, 2)").run())
      expect(await s.transaction(update.run(3))).toBe(2)
      for (const ddl of [
        "ALTER TABLE w RENAME TO t",
        "CREATE VIEW w AS SELECT k, v FROM t",
        "CREATE TRIGGER w_update INSTEAD OF UPDATE ON w BEGIN UPDATE t SET v = new.v WHERE k = old.k; END"
      ])
        await s.run(s.query(ddl).run())
      expect(await s.transaction(update.run(4))).toBe(2)
      expect(await s.run(s.query("SELECT k, v FROM t ORDER BY k").all())).toEqual([
        { k: 1, v: 4 },
        { k: 2, v: 4 }
      ])
    } finally {
      await s.close()
    }
  })

  it("counts what the statement returns, for all sequences of writes", async () => {
    const op = fc.record({ statement: fc.integer({ min: 0, max: plain.length - 1 }), a: fc.integer({ min: 0, max: 8 }), b: fc.integer({ min: 0, max: 8 }), how: fc.constantFrom("run", "any", "write"), inTransaction: fc.boolean() })
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 25 }), async (ops) => {
        const [counted, returned] = [await Sqlite.open({ path: ":memory:" }), await Sqlite.open({ path: ":memory:" })]
        try {
          for (const s of [counted, returned]) await s.run(s.query("CREATE TABLE t (k INTEGER PRIMARY KEY, v INTEGER NOT NULL)").run())
          const countedQueries = plain.map((text) => counted.query(text))
          const returnedQueries = kept.map((text) => returned.query(text))
          for (const { statement, a, b, how, inTransaction } of ops) {
            const q = countedQueries[statement]!
            const outcome: Sql<number> =
              how === "run" ? q.run(a, b) : how === "any" ? Effect.map(q.any(a, b), (any) => (any ? -1 : 0)) : Effect.map(q.write(a, b), (later) => later())
            const n = await (inTransaction ? counted.transaction(outcome) : counted.run(outcome))
            const rows = (await returned.run(returnedQueries[statement]!.all(a, b))).length
            expect(n).toBe(how === "any" ? (rows > 0 ? -1 : 0) : rows)
          }
          const all = "SELECT k, v FROM t ORDER BY k"
          expect(await counted.run(counted.query(all).all())).toEqual(await returned.run(returned.query(all).all()))
        } finally {
          await counted.close()
          await returned.close()
        }
      }),
      { numRuns: 100 }
    )
  })
})

// The exits and counts made once and shared (`Store.succeeded`, `write`'s count read later): for
// all values a statement gives, the same as an exit of its own.
describe("Store.succeeded", () => {
  it("is Exit.succeed(value) for all values, shared ones included", async () => {
    const { succeeded } = await import("../src/Store.ts")
    const { Exit } = await import("effect")
    fc.assert(
      fc.property(fc.oneof(fc.constantFrom(undefined, true, false, null, 0, -0, 1, 7, 8, -1, 1.5, Number.NaN, Infinity), fc.integer(), fc.double(), fc.string(), fc.object()), (value) => {
        const exit = succeeded(value)
        expect(Exit.isSuccess(exit)).toBe(true)
        expect(Object.is(Exit.isSuccess(exit) ? exit.value : Symbol(), value)).toBe(true)
      }),
      { numRuns: 2000 }
    )
  })
})
