/**
 * Run by `SqliteRows.test.ts` as `node --disallow-code-generation-from-strings` (a flag of the
 * whole process, so a process of its own): for any column names and values, the store's SQLite rows are
 * node:sqlite's own rows. Prints "ok", or the counterexample and exits 1.
 */
import { DatabaseSync } from "node:sqlite"
import fc from "fast-check"
import { deepStrictEqual } from "node:assert"
import { Sqlite } from "@baton/store"
import { names, quoted, seen, value } from "./sqliteRowsShared.ts"

const store = await Sqlite.open({ path: ":memory:" })
const reference = new DatabaseSync(":memory:")
try {
  await fc.assert(
    fc.asyncProperty(fc.array(names, { minLength: 1, maxLength: 6 }), fc.array(value, { minLength: 6, maxLength: 6 }), async (columns, values) => {
      // The values bound as parameters (no table): the same row from both connections.
      const row = values.slice(0, columns.length)
      const text = `SELECT ${columns.map((c, i) => `?${i + 1} AS ${quoted(c)}`).join(", ")}`
      const expected = (reference.prepare(text).all(...(row as ReadonlyArray<null>)) as ReadonlyArray<Record<string, unknown>>).map(seen)
      deepStrictEqual((await store.run(store.query(text).all(...row))).map(seen), expected)
    }),
    { numRuns: Number(process.env.BATON_PROPERTY_RUNS ?? 100) }
  )
  console.log("ok")
} catch (error) {
  console.log(error instanceof Error ? `${error.message}\n${String(error.cause)}` : String(error))
  process.exitCode = 1
} finally {
  reference.close()
  await store.close()
}
