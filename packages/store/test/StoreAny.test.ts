/**
 * `Query.any`: whether a statement returned a row, as the statement's own outcome. For any rows and
 * any bound, on SQLite, outside a transaction and inside one: a `SELECT`'s `any` is its `get`
 * being there and its `run` above 0; an `INSERT ... ON CONFLICT DO NOTHING RETURNING`'s `any` is
 * whether the row was new (against a set of the keys written so far).
 */
import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { Sqlite } from "@baton/store"

describe("Query.any", () => {
  it("is `get` there and `run` above 0, and an insert's being new, for all rows and bounds", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 20 }), { maxLength: 12 }), fc.array(fc.integer({ min: -1, max: 21 }), { minLength: 1, maxLength: 6 }), async (keys, bounds) => {
        const store = await Sqlite.open({ path: ":memory:" })
        try {
          await store.run(store.query("CREATE TABLE t (k INTEGER PRIMARY KEY)").run())
          const insert = store.query("INSERT INTO t (k) VALUES (?) ON CONFLICT DO NOTHING RETURNING k")
          const seen = new Set<number>()
          for (const [i, k] of keys.entries()) {
            // Every other one inside a transaction.
            const fresh = await (i % 2 === 0 ? store.run(insert.any(k)) : store.transaction(insert.any(k)))
            expect(fresh).toBe(!seen.has(k))
            seen.add(k)
          }
          const above = store.query("SELECT k FROM t WHERE k > ? ORDER BY k")
          for (const b of bounds) {
            const expected = [...seen].some((k) => k > b)
            expect(await store.run(above.any(b))).toBe(expected)
            expect(await store.transaction(above.any(b))).toBe(expected)
            expect((await store.run(above.get(b))) !== undefined).toBe(expected)
            expect((await store.run(above.run(b))) > 0).toBe(expected)
          }
        } finally {
          await store.close()
        }
      }),
      { numRuns: 100 }
    )
  })
})
