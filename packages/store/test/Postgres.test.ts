import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import { freshSchema, query } from "@baton/testkit/postgres"
import { Inbox, IngressLog, Outbox, Postgres, Sqlite, type Store } from "@baton/store"

describe("Postgres.translate (SQLite's dialect as the stores write it)", () => {
  it("numbers parameters outside quotes and keeps INSERT OR IGNORE's meaning", () => {
    expect(Postgres.translate("INSERT OR IGNORE INTO t (a, b) VALUES (?, '?')", false)).toBe("INSERT INTO t (a, b) VALUES ($1, '?') ON CONFLICT DO NOTHING")
  })
  it("locks the rows a transaction reads, but not aggregates", () => {
    expect(Postgres.translate("SELECT on_hand FROM stock WHERE sku = ?", true)).toBe("SELECT on_hand FROM stock WHERE sku = $1 FOR UPDATE")
    expect(Postgres.translate("SELECT on_hand FROM stock WHERE sku = ?", false)).toBe("SELECT on_hand FROM stock WHERE sku = $1")
    expect(Postgres.translate("SELECT COUNT(*) AS n FROM inbox WHERE key = ?", true)).toBe("SELECT COUNT(*) AS n FROM inbox WHERE key = $1")
  })
  it("maps column types and gives every table a rowid", () => {
    expect(Postgres.translate("CREATE TABLE t (seq INTEGER PRIMARY KEY AUTOINCREMENT, p BLOB, x REAL, PRIMARY KEY (seq)); CREATE TABLE u (a TEXT)", false)).toBe(
      "CREATE TABLE t (seq BIGSERIAL PRIMARY KEY, p BYTEA, x DOUBLE PRECISION, PRIMARY KEY (seq), rowid BIGSERIAL); CREATE TABLE u (a TEXT, rowid BIGSERIAL)"
    )
  })
})

describe("Postgres store (this machine's server)", () => {
  let schema: Awaited<ReturnType<typeof freshSchema>>
  let store: Store
  beforeAll(async () => {
    schema = await freshSchema()
    store = Postgres.open({ url: schema.url })
  })
  afterAll(async () => {
    await store.close()
    await schema.drop()
  })

  it("group commit: exactly the items that did not throw are committed, each one whole, for all mixes", async () => {
    store.migrate([{ name: "test/t", sql: "CREATE TABLE t (k INTEGER PRIMARY KEY)" }])
    const insert = store.db.prepare("INSERT INTO t (k) VALUES (?)")
    let next = 0
    await fc.assert(
      fc.asyncProperty(fc.array(fc.record({ rows: fc.integer({ min: 1, max: 3 }), fails: fc.boolean() }), { maxLength: 12 }), async (items) => {
        const before = Number((await query<{ n: string }>(schema.url, "SELECT COUNT(*) AS n FROM t"))[0]?.n)
        const outcomes = await Promise.allSettled(
          items.map((item) =>
            store.group(() => {
              for (let r = 0; r < item.rows; r++) insert.run(next++)
              if (item.fails) insert.run(next - 1) // a unique violation, within this item (its own transaction on PostgreSQL)
              return item.rows
            })
          )
        )
        outcomes.forEach((o, i) => expect(o.status).toBe(items[i]!.fails ? "rejected" : "fulfilled"))
        const after = Number((await query<{ n: string }>(schema.url, "SELECT COUNT(*) AS n FROM t"))[0]?.n)
        expect(after - before).toBe(items.filter((i) => !i.fails).reduce((n, i) => n + i.rows, 0))
      }),
      { numRuns: Number(process.env.BATON_PROPERTY_RUNS ?? 30) }
    )
  })

  it("for all transactions of writes, reads and failures: the same outcomes, reads and rows as SQLite", async () => {
    // The stores are written against SQLite's semantics: a failing write (a duplicate key) fails
    // its transaction, reads see the transaction's own writes, a rolled-back write leaves nothing,
    // and `changes` counts what a statement did.
    const sqlite = Sqlite.open({ path: ":memory:" })
    const ddl = "CREATE TABLE d (k INTEGER PRIMARY KEY, v TEXT NOT NULL)"
    sqlite.migrate([{ name: "test/d", sql: ddl }])
    store.migrate([{ name: "test/d", sql: ddl }])
    const op = fc.oneof(
      fc.record({ kind: fc.constant("insert" as const), k: fc.integer({ min: 0, max: 12 }), readChanges: fc.boolean() }),
      fc.record({ kind: fc.constant("update" as const), k: fc.integer({ min: 0, max: 12 }), readChanges: fc.boolean() }),
      fc.record({ kind: fc.constant("read" as const), k: fc.integer({ min: 0, max: 12 }) }),
      fc.record({ kind: fc.constant("count" as const) })
    )
    const tx = fc.record({ ops: fc.array(op, { maxLength: 8 }), abort: fc.boolean() })
    await fc.assert(
      fc.asyncProperty(fc.array(tx, { minLength: 1, maxLength: 6 }), async (txs) => {
        const runOn = (s: Store) => {
          s.transaction(() => s.db.prepare("DELETE FROM d").run())
          const insert = s.db.prepare("INSERT INTO d (k, v) VALUES (?, ?)")
          const update = s.db.prepare("UPDATE d SET v = v || '+' WHERE k = ?")
          const read = s.db.prepare("SELECT v FROM d WHERE k = ?")
          const count = s.db.prepare("SELECT COUNT(*) AS n FROM d")
          const seen: Array<unknown> = []
          for (const t of txs) {
            try {
              s.transaction(() => {
                for (const o of t.ops) {
                  if (o.kind === "insert") {
                    const r = insert.run(o.k, `v${o.k}`)
                    if (o.readChanges) seen.push(["inserted", Number(r.changes)])
                  } else if (o.kind === "update") {
                    const r = update.run(o.k)
                    if (o.readChanges) seen.push(["updated", Number(r.changes)])
                  } else if (o.kind === "read") seen.push(["read", read.get(o.k)?.v ?? null])
                  else seen.push(["count", Number(count.get()?.n)])
                }
                if (t.abort) throw new Error("abort")
              })
              seen.push("committed")
            } catch (error) {
              seen.push(error instanceof Error && error.message === "abort" ? "aborted" : "failed")
            }
          }
          const rows = s.db.prepare("SELECT k, v FROM d ORDER BY k").all().map((r) => [Number(r.k), String(r.v)])
          return { seen, rows }
        }
        expect(runOn(store)).toEqual(runOn(sqlite))
      }),
      { numRuns: Number(process.env.BATON_PROPERTY_RUNS ?? 30) * 2 }
    )
    await sqlite.close()
  })

  it("runs the inbox, outbox and ingress log unchanged, with numbers, bytes and rowid order", async () => {
    const inbox = Inbox.make(store)
    const outbox = Outbox.make(store)
    const log = IngressLog.make(store, { maxBytes: 100, previewBytes: 10 })
    expect(inbox.receive("p", { envelopeId: "a", topic: "t", key: "k", payload: "{}" })).toBe(true)
    expect(inbox.receive("p", { envelopeId: "b", topic: "t", key: "k", payload: "{}" })).toBe(true)
    expect(inbox.receive("p", { envelopeId: "a", topic: "t", key: "k", payload: "{}" })).toBe(false)
    expect(inbox.pending("p").map((e) => e.envelopeId)).toEqual(["a", "b"])
    expect(store.transaction(() => inbox.settle("p", "a", "done"))).toBe(true)
    expect(store.transaction(() => inbox.settle("p", "a", "done"))).toBe(false)
    expect(inbox.status("p", "a")).toBe("done")
    store.transaction(() => outbox.add("x/1", "one"))
    store.transaction(() => outbox.add("x/2", "two", 0))
    const entries = outbox.pending(10)
    expect(entries.map((e) => [e.topic, e.qos])).toEqual([["x/1", 1], ["x/2", 0]])
    expect(typeof entries[0]!.seq).toBe("number")
    outbox.sent(entries[0]!.seq, entries[1]!.seq)
    expect(outbox.size()).toBe(0)
    await log.append("initiate/a", Buffer.from([0, 1, 2, 255]), "c1")
    const [entry] = log.unforwarded(10)
    expect([...entry!.payload]).toEqual([0, 1, 2, 255])
    expect(entry!.clientId).toBe("c1")
    const id = store.db.prepare("INSERT INTO t (k) VALUES (?)").run(-1)
    expect(Number(id.changes)).toBe(1)
  })

  it("applies each migration once when several instances start at the same moment", async () => {
    const other = await freshSchema()
    const script = `
      import { Postgres } from ${JSON.stringify(fileURLToPath(new URL("../src/index.ts", import.meta.url)))}
      const store = Postgres.open({ url: process.env.URL })
      store.migrate([{ name: "m/1", sql: "CREATE TABLE once (a INTEGER); INSERT INTO once (a) VALUES (1)" }, { name: "m/2", sql: "INSERT INTO once (a) VALUES (2)" }])
      await store.close()`
    const runs = await Promise.all(
      Array.from({ length: 4 }, () =>
        new Promise<number>((resolve) => {
          const child = spawn(process.execPath, ["--input-type=module", "-e", script], { env: { ...process.env, URL: other.url }, stdio: ["ignore", "ignore", "inherit"] })
          child.on("exit", (code) => resolve(code ?? -1))
        })
      )
    )
    expect(runs).toEqual([0, 0, 0, 0])
    expect((await query<{ a: string }>(other.url, "SELECT a FROM once ORDER BY a")).map((r) => Number(r.a))).toEqual([1, 2])
    await other.drop()
  })
})
