/**
 * SQLite's rows as the store gives them (`Sqlite.ts` builds them from node:sqlite's rows as arrays,
 * one class per statement) against node:sqlite's own row objects on the same database: for any
 * column names (repeated ones, `__proto__`, names an object inherits elsewhere, numeric ones) and
 * any values, the same keys in the same order, the same values, nothing inherited; and after a
 * schema change, a statement cached before it gives the new columns.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { DatabaseSync } from "node:sqlite"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import { Effect } from "effect"
import { Sqlite } from "@baton/store"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 50)
const dir = mkdtempSync(join(tmpdir(), "baton-rows-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const names = fc.constantFrom("a", "b", "seq", "__proto__", "constructor", "toString", "hasOwnProperty", "0", "1", "a b", 'q"uote', "")
const value = fc.oneof(fc.integer(), fc.double({ noNaN: true }), fc.string(), fc.constant(null), fc.uint8Array({ maxLength: 8 }))
const quoted = (name: string) => `"${name.replaceAll('"', '""')}"`
/** What a row shows of itself: its own keys in order, their values, and which of the usual inherited names it answers. */
const seen = (row: Record<string, unknown>) => ({
  keys: Object.keys(row),
  values: Object.keys(row).map((k) => row[k]),
  inherited: ["toString", "constructor", "hasOwnProperty", "__proto__", "valueOf"].filter((k) => k in row && !Object.hasOwn(row, k)),
  json: JSON.stringify(row, (_, v: unknown) => (v instanceof Uint8Array ? [...v] : v))
})

describe("SQLite rows", () => {
  it("are node:sqlite's rows, for any columns and values, before and after a schema change", async () => {
    let n = 0
    await fc.assert(
      fc.asyncProperty(
        fc.array(names, { minLength: 1, maxLength: 6 }),
        fc.array(fc.array(value, { minLength: 6, maxLength: 6 }), { maxLength: 4 }),
        names,
        async (columns, rows, added) => {
          const path = join(dir, `rows-${n++}.db`)
          const store = await Sqlite.open({ path, checkpointIntervalMs: 0 })
          const reference = new DatabaseSync(path)
          try {
            await store.run(store.query("CREATE TABLE t (c0, c1, c2, c3, c4, c5)").run())
            const insert = store.query("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)")
            for (const r of rows) await store.run(insert.run(...r))
            const select = `SELECT ${columns.map((c, i) => `c${i} AS ${quoted(c)}`).join(", ")} FROM t ORDER BY rowid`
            const all = `SELECT * FROM t ORDER BY rowid`
            const compare = async (text: string) => {
              const query = store.query(text)
              const outside = await store.run(query.all())
              const inside = await store.transaction(query.all())
              const first = await store.run(query.get())
              const expected = reference.prepare(text).all() as ReadonlyArray<Record<string, unknown>>
              expect(outside.map(seen)).toEqual(expected.map(seen))
              expect(inside.map(seen)).toEqual(expected.map(seen))
              expect(first === undefined ? undefined : seen(first)).toEqual(expected[0] === undefined ? undefined : seen(expected[0]))
            }
            await compare(select)
            await compare(all)
            // A column added: the statement cached before it gives it too.
            await store.run(Effect.asVoid(store.query(`ALTER TABLE t ADD COLUMN ${quoted(added === "" ? "x" : `x${added}`)} DEFAULT 7`).run()))
            await compare(all)
          } finally {
            reference.close()
            await store.close()
          }
        }
      ),
      { numRuns: runs }
    )
  })
})
