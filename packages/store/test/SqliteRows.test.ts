/**
 * SQLite's rows as the store gives them (`Sqlite.ts` builds them from node:sqlite's rows as arrays,
 * one class per statement) against node:sqlite's own row objects on the same database: for any
 * column names (repeated ones, `__proto__`, names an object inherits elsewhere, numeric ones) and
 * any values, the same keys in the same order, the same values, nothing inherited; and after a
 * schema change, a statement cached before it gives the new columns. For any schema change (a
 * column added, dropped or renamed, the table rebuilt with its columns in another order), its
 * statement led by any comments, committed or rolled back (the transaction, or a savepoint in it)
 * with `SELECT *` run after it before the end: the rows after are node's rows of the schema then.
 * And in a process that refuses code made from text, the same rows (`sqliteRowsNoCodegen.ts`).
 */
import { spawnSync } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { DatabaseSync } from "node:sqlite"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import { Effect } from "effect"
import { Sqlite } from "@baton/store"
import { names, quoted, seen, value } from "./sqliteRowsShared.ts"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 50)
const dir = mkdtempSync(join(tmpdir(), "baton-rows-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

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

  it("are node:sqlite's rows after any schema change, led by comments, committed or rolled back", async () => {
    const changes = fc.constantFrom(
      ["ALTER TABLE t ADD COLUMN x DEFAULT 7"],
      ["ALTER TABLE t DROP COLUMN c1"],
      ["ALTER TABLE t RENAME COLUMN c1 TO x"],
      // The rebuild a migration does to change what ALTER TABLE cannot (SQLite's "12 steps"): the columns in another order.
      ["CREATE TABLE t2 (c3, c2, c1, c0)", "INSERT INTO t2 (c3, c2, c1, c0) SELECT c3, c2, c1, c0 FROM t", "DROP TABLE t", "ALTER TABLE t2 RENAME TO t"]
    )
    // What a migration script's pieces start with (`Store.migrate` splits it at `;`: a comment line stays with the statement after it).
    const comments = fc.constantFrom("", "\n  ", "-- a note\n", "/* a note */ ", "-- one\n  -- two\n", "/* a\n note */\n")
    let n = 0
    await fc.assert(
      fc.asyncProperty(
        changes,
        comments,
        fc.constantFrom("commit", "rollback", "savepoint rolled back", "migration"),
        fc.array(fc.array(value, { minLength: 4, maxLength: 4 }), { minLength: 1, maxLength: 3 }),
        async (change, comment, end, rows) => {
          const path = join(dir, `schema-${n++}.db`)
          const store = await Sqlite.open({ path, checkpointIntervalMs: 0 })
          const reference = new DatabaseSync(path)
          try {
            await store.run(store.query("CREATE TABLE t (c0, c1, c2, c3)").run())
            const insert = store.query("INSERT INTO t VALUES (?, ?, ?, ?)")
            for (const r of rows) await store.run(insert.run(...r))
            const all = store.query("SELECT * FROM t ORDER BY rowid")
            const compare = async () => {
              const expected = (reference.prepare("SELECT * FROM t ORDER BY rowid").all() as ReadonlyArray<Record<string, unknown>>).map(seen)
              expect((await store.run(all.all())).map(seen)).toEqual(expected)
              expect((await store.transaction(all.all())).map(seen)).toEqual(expected)
            }
            // Cached before the change.
            await compare()
            const statements = change.map((s) => `${comment}${s}`)
            if (end === "migration") await store.migrate([{ name: "change", sql: statements.join(";\n") }])
            else {
              // The change, then `SELECT *` prepared again in it (its columns the changed ones), then the end.
              const changed = Effect.andThen(
                Effect.forEach(statements, (s) => store.query(s).run(), { discard: true }),
                Effect.andThen(all.all(), end === "commit" ? Effect.void : Effect.fail("undone"))
              )
              const body = end === "savepoint rolled back" ? Effect.ignore(store.sql.withTransaction(changed)) : changed
              await store.transaction(body).catch((e: unknown) => expect(e).toBe("undone"))
            }
            await compare()
          } finally {
            reference.close()
            await store.close()
          }
        }
      ),
      { numRuns: runs }
    )
  })

  it("of a `*` cached before another connection changed the schema are node's rows of the schema now", async () => {
    const path = join(dir, "other-connection.db")
    const store = await Sqlite.open({ path, checkpointIntervalMs: 0 })
    const other = new DatabaseSync(path)
    try {
      await store.run(store.query("CREATE TABLE t (a, b)").run())
      await store.run(store.query("INSERT INTO t VALUES (1, 2)").run())
      const all = store.query("SELECT * FROM t")
      expect((await store.run(all.all())).map(seen)).toEqual(other.prepare("SELECT * FROM t").all().map((r) => seen(r as Record<string, unknown>)))
      // Another connection (a newer CLI migrating the file, say): this store's cache never hears of it.
      other.exec("ALTER TABLE t DROP COLUMN a; ALTER TABLE t ADD COLUMN c DEFAULT 3")
      const expected = other.prepare("SELECT * FROM t").all().map((r) => seen(r as Record<string, unknown>))
      expect(expected[0]!.keys).toEqual(["b", "c"])
      expect((await store.run(all.all())).map(seen)).toEqual(expected)
    } finally {
      other.close()
      await store.close()
    }
  })

  it("are node:sqlite's rows, for any columns and values, where code made from text is refused", () => {
    const script = join(dirname(fileURLToPath(import.meta.url)), "sqliteRowsNoCodegen.ts")
    const child = spawnSync(process.execPath, ["--disallow-code-generation-from-strings", script], { encoding: "utf8", timeout: 60_000 })
    expect({ status: child.status, out: child.stdout.trim() }).toEqual({ status: 0, out: "ok" })
  })
})
