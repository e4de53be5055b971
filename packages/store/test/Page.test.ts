/**
 * Keyset paging (Page.ts) on SQLite and PostgreSQL: following `next` from the first page reaches
 * every row exactly once, in order, whatever the page size, the order, ties in the sort key, and
 * rows arriving while the reader pages.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import { freshSchema } from "@baton/testkit/postgres"
import { ddl, Page, Postgres, Sqlite, type Store } from "@baton/store"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 4) * 10

const engines: ReadonlyArray<readonly [string, () => Promise<{ readonly store: Store; readonly dispose: () => Promise<void> }>]> = [
  ["SQLite", async () => ({ store: await Sqlite.open({ path: ":memory:" }), dispose: async () => {} })],
  [
    "PostgreSQL",
    async () => {
      const schema = await freshSchema()
      return { store: await Postgres.open({ url: schema.url }), dispose: schema.drop }
    }
  ]
]

const byChange: ReadonlyArray<Page.Key> = [
  { column: "changed", kind: "text" },
  { column: "id", kind: "text" }
]

describe.each(engines)("Page on %s", (_name, open) => {
  let store: Store
  let dispose: () => Promise<void>
  let run = 0
  beforeAll(async () => {
    ;({ store, dispose } = await open())
    await store.migrate([{ name: "test/page-items", sql: ddl((t) => `CREATE TABLE page_items (id TEXT PRIMARY KEY, grp TEXT NOT NULL, changed TEXT NOT NULL${t.rowid})`) }])
  })
  afterAll(async () => {
    await store?.close()
    await dispose?.()
  })

  const insert = (grp: string, id: string, changed: string) => store.run(store.query("INSERT INTO page_items (id, grp, changed) VALUES (?, ?, ?)").run(id, grp, changed))

  /** Follows `next` from the first page; `between` runs after each page that has a next one. */
  const walk = async (grp: string, keys: ReadonlyArray<Page.Key>, limit: number, order: Page.Order, between: () => Promise<void> = async () => {}) => {
    const seen: Array<string> = []
    let cursor: string | undefined
    for (let pages = 0; pages < 1000; pages++) {
      const page = await Page.page(store, { select: "id", from: "page_items", where: ["grp = ?"], params: [grp], keys }, { limit, order, cursor })
      expect(page.items.length).toBeLessThanOrEqual(limit)
      seen.push(...page.items.map((r) => String(r.id)))
      if (page.next === undefined) return seen
      await between()
      cursor = page.next
    }
    throw new Error("more than 1000 pages")
  }

  it("for any rows, page size and order, in arrival order: every row once, and rows that arrive before the last page oldest first are reached too", async () => {
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: 40 }), fc.nat({ max: 12 }), fc.integer({ min: 1, max: 15 }), fc.constantFrom<Page.Order>("asc", "desc"), async (n, arrivals, limit, order) => {
        const grp = `a${run++}`
        const ids = Array.from({ length: n }, (_, i) => `${grp}-${i}`)
        for (const id of ids) await insert(grp, id, "x")
        const late: Array<string> = []
        const seen = await walk(grp, Page.arrival, limit, order, async () => {
          if (late.length >= arrivals) return
          late.push(`${grp}-late-${late.length}`)
          await insert(grp, late.at(-1)!, "x")
        })
        // Oldest first reaches what arrived meanwhile; newest first starts from the newest there was.
        expect(seen).toEqual(order === "asc" ? [...ids, ...late] : [...ids].reverse())
      }),
      { numRuns: runs }
    )
  })

  it("for any rows with ties in the first sort key: every row once, in (key, id) order both ways", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(fc.tuple(fc.stringMatching(/^[a-z0-9]{1,6}$/), fc.constantFrom("2026-01-01", "2026-01-02", "2026-01-03")), { selector: ([id]) => id, maxLength: 40 }), fc.integer({ min: 1, max: 15 }), fc.constantFrom<Page.Order>("asc", "desc"), async (rows, limit, order) => {
        const grp = `t${run++}`
        for (const [id, changed] of rows) await insert(grp, `${grp}-${id}`, changed)
        const sorted = [...rows].map(([id, changed]) => ({ id: `${grp}-${id}`, changed })).sort((a, b) => (a.changed < b.changed ? -1 : a.changed > b.changed ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
        const expected = sorted.map((r) => r.id)
        expect(await walk(grp, byChange, limit, order)).toEqual(order === "asc" ? expected : expected.reverse())
      }),
      { numRuns: runs }
    )
  })

  it("refuses a cursor it did not give out, and an unknown order", async () => {
    const bad = ["nope", Buffer.from("[1,2]").toString("base64url"), Buffer.from('["x"]').toString("base64url"), Buffer.from("[1.5]").toString("base64url")]
    for (const cursor of bad) await expect(Page.page(store, { select: "id", from: "page_items", keys: Page.arrival }, { limit: 5, order: "asc", cursor })).rejects.toThrow(/is not one this list gave out/)
    expect(() => Page.request(new URLSearchParams("order=up"), { order: "asc", limit: 100, maxLimit: 1000 })).toThrow(/order must be asc/)
    expect(Page.request(new URLSearchParams("limit=5000"), { order: "desc", limit: 100, maxLimit: 1000 })).toEqual({ limit: 1000, order: "desc" })
  })
})
