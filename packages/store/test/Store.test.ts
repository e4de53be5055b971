/**
 * The store contract, run against every engine: SQLite in memory, SQLite on a file, and
 * PostgreSQL (this machine's server, a fresh schema per `describe`). Everything the runtime
 * relies on from the store must hold on each: group commit's savepoints, the inbox, the outbox,
 * the ingress log, rejections, migrations, values unchanged, typed errors. The tests at the end
 * are PostgreSQL's own (conflicts, transactions of different partitions overlapping).
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import net from "node:net"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import { Deferred, Effect, Exit } from "effect"
import { SqlError } from "effect/sql"
import { freshDatabase, freshSchema } from "@baton/testkit/postgres"
import { ddl, Inbox, IngressLog, Outbox, Postgres, Rejections, Sqlite, type Row, type Sql, type Store } from "@baton/store"
import type { Rejection } from "@baton/core"
import { boundValues, numberParams, ownLaneOf } from "../src/Store.ts"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 50)
/** For properties of many transactions: a PostgreSQL one is a round trip per statement, ~10x SQLite's. */
const transactionRuns = (engine: Engine) => (engine.dialect === "pg" ? Math.max(1, Math.ceil(runs / 2)) : runs)

interface Opened {
  readonly store: Store
  /** Another store on the same database (a second instance), where the engine has one to share. */
  readonly another?: (options?: { readonly lockTimeoutMs?: number }) => Promise<Store>
  readonly dispose: () => Promise<void>
}

interface Engine {
  readonly name: string
  readonly dialect: Store["dialect"]
  readonly open: () => Promise<Opened>
}

const engines: ReadonlyArray<Engine> = [
  {
    name: "SQLite in memory",
    dialect: "sqlite",
    open: async () => ({ store: await Sqlite.open({ path: ":memory:" }), dispose: async () => {} })
  },
  {
    name: "SQLite on a file",
    dialect: "sqlite",
    open: async () => {
      const dir = mkdtempSync(join(tmpdir(), "baton-store-"))
      const path = join(dir, "store.db")
      return { store: await Sqlite.open({ path }), another: () => Sqlite.open({ path }), dispose: async () => rmSync(dir, { recursive: true, force: true }) }
    }
  },
  {
    name: "PostgreSQL",
    dialect: "pg",
    open: async () => {
      const schema = await freshSchema()
      return {
        store: await Postgres.open({ url: schema.url }),
        another: (options) => Postgres.open({ url: schema.url, ...options }),
        dispose: schema.drop
      }
    }
  }
]

/** Opens a fresh store (PostgreSQL: a fresh schema) for the enclosing `describe`; closes and drops it after. */
const useStore = (engine: Engine) => {
  let opened: Opened | undefined
  const others: Array<Store> = []
  beforeAll(async () => {
    opened = await engine.open()
  })
  afterAll(async () => {
    for (const s of others) await s.close()
    await opened?.store.close()
    await opened?.dispose()
  })
  return {
    get store(): Store {
      return opened!.store
    },
    /** A second store on the same database, closed with the first. */
    another: async (options?: { readonly lockTimeoutMs?: number }): Promise<Store> => {
      const s = await opened!.another!(options)
      others.push(s)
      return s
    }
  }
}

/** The error a promise rejected with. */
const failure = (promise: Promise<unknown>): Promise<unknown> =>
  promise.then(
    () => {
      throw new Error("expected a failure")
    },
    (error: unknown) => error
  )

const reasonOf = (error: unknown): string => (SqlError.isSqlError(error) ? error.reason._tag : `not a SqlError: ${String(error)}`)

class Boom extends Error {}

const rejection = (kind: Rejection["kind"], topic: string): Rejection => ({
  kind,
  topic,
  reason: `${kind} on ${topic}`,
  issues: [{ path: "/a", message: "bad" }],
  payload: "{}",
  payloadEncoding: "utf8",
  payloadBytes: 2,
  payloadTruncated: false
})

describe.each(engines)("Store contract on $name", (engine) => {
  describe("group commit", () => {
    const s = useStore(engine)
    let next = 0

    it("commits exactly the items that did not fail, each one whole, and runs a failing item once, for all mixes of items", async () => {
      const { store } = s
      await store.migrate([{ name: "test/g", sql: `CREATE TABLE g (k ${engine.dialect === "pg" ? "BIGINT" : "INTEGER"} PRIMARY KEY)` }])
      const insert = store.query("INSERT INTO g (k) VALUES (?)")
      const since = store.query("SELECT k FROM g WHERE k >= ? ORDER BY k")
      const failing = fc.constantFrom("no" as const, "fail" as const, "violation" as const, "defect" as const)
      await fc.assert(
        fc.asyncProperty(fc.array(fc.record({ rows: fc.integer({ min: 1, max: 4 }), fails: failing }), { maxLength: 24 }), async (items) => {
          const start = next
          const runs = items.map(() => 0)
          const outcomes = await Promise.allSettled(
            items.map((item, i) =>
              store.group(
                Effect.gen(function* () {
                  runs[i]! += 1
                  const keys = Array.from({ length: item.rows }, () => next++)
                  for (const k of keys) yield* insert.run(k)
                  if (item.fails === "fail") return yield* Effect.fail(new Boom("boom"))
                  if (item.fails === "violation") yield* insert.run(keys[0]) // a unique violation, within this item
                  if (item.fails === "defect") throw new Error("defect")
                  return keys
                })
              )
            )
          )
          expect(outcomes.map((o) => o.status)).toEqual(items.map((i) => (i.fails === "no" ? "fulfilled" : "rejected")))
          outcomes.forEach((o, i) => {
            if (o.status === "fulfilled") return
            const fails = items[i]!.fails
            if (fails === "fail") expect(o.reason).toBeInstanceOf(Boom)
            else if (fails === "violation") expect(reasonOf(o.reason)).toBe("UniqueViolation")
            else expect((o.reason as Error).message).toBe("defect")
          })
          // A failed item is one failed attempt: its effect ran once (a poisoned message's handler
          // does not run twice per attempt); a committed one may have run again after a rollback.
          // On PostgreSQL a write's violation is known only when the write goes out (PgPool.ts): one
          // behind another failed item of its group had not gone out when that one failed the
          // transaction, so it runs again (in its savepoint), where it fails: twice at most.
          const twiceAtMost = (i: number) => engine.dialect === "pg" && items[i]!.fails === "violation" && items.slice(0, i).some((x) => x.fails !== "no")
          items.forEach((item, i) => expect(runs[i], `runs of item ${i} (${item.fails})`).toBe(item.fails === "no" || (twiceAtMost(i) && runs[i]! <= 2) ? runs[i] : 1))
          expect(runs.every((n) => n >= 1 && n <= 2)).toBe(true)
          const committed = outcomes.flatMap((o) => (o.status === "fulfilled" ? o.value : []))
          const rows = (await store.run(since.all(start))).map((r) => Number(r.k))
          expect(rows).toEqual(committed.sort((a, b) => a - b))
        }),
        { numRuns: transactionRuns(engine) }
      )
    })

    it("commits a burst larger than one batch, and each item's result comes back to its caller", async () => {
      const { store } = s
      const insert = store.query("INSERT INTO g (k) VALUES (?) RETURNING k")
      const start = (next += 1000)
      const keys = Array.from({ length: 150 }, (_, i) => start + i)
      next += 150
      const results = await Promise.all(keys.map((k) => store.group(Effect.map(insert.get(k), (r) => Number(r?.k)))))
      expect(results).toEqual(keys)
      const rows = await store.run(store.query("SELECT COUNT(*) AS n FROM g WHERE k >= ? AND k < ?").get(start, start + 150))
      expect(Number(rows?.n)).toBe(150)
    })

    it("runs a nested sql.withTransaction as a savepoint of the group's transaction", async () => {
      const { store } = s
      const insert = store.query("INSERT INTO g (k) VALUES (?)")
      const start = (next += 10)
      next += 3
      await store.group(
        Effect.gen(function* () {
          yield* insert.run(start)
          yield* Effect.ignore(store.sql.withTransaction(Effect.andThen(insert.run(start + 1), Effect.fail(new Boom("inner")))))
          yield* store.sql.withTransaction(insert.run(start + 2))
        })
      )
      const rows = await store.run(store.query("SELECT k FROM g WHERE k >= ? AND k < ? ORDER BY k").all(start, start + 3))
      expect(rows.map((r) => Number(r.k))).toEqual([start, start + 2])
    })

    it("runs nested sql.withTransaction levels as savepoints of a transaction; an outer failure rolls back the inner", async () => {
      const { store } = s
      const insert = store.query("INSERT INTO g (k) VALUES (?)")
      const start = (next += 10)
      next += 4
      await store.transaction(
        Effect.gen(function* () {
          yield* insert.run(start)
          // Two levels deep: the innermost fails and rolls back alone; its parent keeps its own row.
          yield* store.sql.withTransaction(
            Effect.gen(function* () {
              yield* insert.run(start + 1)
              yield* Effect.ignore(store.sql.withTransaction(Effect.andThen(insert.run(start + 2), Effect.fail(new Boom("innermost")))))
            })
          )
        })
      )
      await expect(store.transaction(Effect.andThen(store.sql.withTransaction(insert.run(start + 3)), Effect.fail(new Boom("outer"))))).rejects.toThrow("outer")
      const rows = await store.run(store.query("SELECT k FROM g WHERE k >= ? AND k < ? ORDER BY k").all(start, start + 4))
      expect(rows.map((r) => Number(r.k))).toEqual([start, start + 1])
    })
  })

  describe("transactions (against a model)", () => {
    const s = useStore(engine)

    it("for all transactions of writes, reads and failures: the model's outcomes, reads and rows", async () => {
      const { store } = s
      await store.migrate([{ name: "test/d", sql: "CREATE TABLE d (k INTEGER PRIMARY KEY, v TEXT NOT NULL)" }])
      const clear = store.query("DELETE FROM d")
      const insert = store.query("INSERT INTO d (k, v) VALUES (?, ?) RETURNING k")
      const update = store.query("UPDATE d SET v = v || '+' WHERE k = ? RETURNING k")
      const read = store.query("SELECT v FROM d WHERE k = ?")
      const count = store.query("SELECT COUNT(*) AS n FROM d")
      const all = store.query("SELECT k, v FROM d ORDER BY k")
      const key = fc.integer({ min: 0, max: 8 })
      const op = fc.oneof(
        fc.record({ kind: fc.constant("insert" as const), k: key }),
        fc.record({ kind: fc.constant("update" as const), k: key }),
        fc.record({ kind: fc.constant("read" as const), k: key }),
        fc.record({ kind: fc.constant("count" as const) })
      )
      const tx = fc.record({ ops: fc.array(op, { maxLength: 8 }), abort: fc.boolean() })
      await fc.assert(
        fc.asyncProperty(fc.array(tx, { minLength: 1, maxLength: 6 }), async (txs) => {
          // The model: a duplicate key fails the transaction, reads see its own writes, a failed or
          // aborted transaction leaves nothing, `run` counts the rows RETURNING gave.
          let model = new Map<number, string>()
          const expected: Array<unknown> = []
          for (const t of txs) {
            const state = new Map(model)
            let outcome = "committed"
            for (const o of t.ops) {
              if (o.kind === "insert") {
                if (state.has(o.k)) {
                  outcome = "failed:UniqueViolation"
                  break
                }
                state.set(o.k, `v${o.k}`)
                expected.push(["inserted", 1])
              } else if (o.kind === "update") {
                if (state.has(o.k)) state.set(o.k, `${state.get(o.k)}+`)
                expected.push(["updated", state.has(o.k) ? 1 : 0])
              } else if (o.kind === "read") expected.push(["read", state.get(o.k) ?? null])
              else expected.push(["count", state.size])
            }
            if (outcome === "committed" && t.abort) outcome = "aborted"
            if (outcome === "committed") model = state
            expected.push(outcome)
          }

          await store.run(clear.run())
          const seen: Array<unknown> = []
          for (const t of txs) {
            try {
              await store.transaction(
                Effect.gen(function* () {
                  for (const o of t.ops) {
                    if (o.kind === "insert") seen.push(["inserted", yield* insert.run(o.k, `v${o.k}`)])
                    else if (o.kind === "update") seen.push(["updated", yield* update.run(o.k)])
                    else if (o.kind === "read") seen.push(["read", (yield* read.get(o.k))?.v ?? null])
                    else seen.push(["count", Number((yield* count.get())?.n)])
                  }
                  if (t.abort) return yield* Effect.fail(new Boom("abort"))
                })
              )
              seen.push("committed")
            } catch (error) {
              seen.push(error instanceof Boom ? "aborted" : `failed:${reasonOf(error)}`)
            }
          }
          expect(seen).toEqual(expected)
          const rows = (await store.run(all.all())).map((r) => [Number(r.k), String(r.v)])
          expect(rows).toEqual([...model].sort(([a], [b]) => a - b))
        }),
        { numRuns: transactionRuns(engine) }
      )
    })
  })

  describe("values", () => {
    const s = useStore(engine)

    it("keeps numbers, text and bytes unchanged, for all values", async () => {
      const { store } = s
      await store.migrate([
        { name: "test/v", sql: ddl((t) => `CREATE TABLE v (id ${t.serialKey}, n ${t.int}, r ${t.real}, b ${t.blob}, s TEXT, f ${t.int}${t.rowid})`) }
      ])
      const insert = store.query("INSERT INTO v (n, r, b, s, f) VALUES (?, ?, ?, ?, ?) RETURNING id")
      const get = store.query("SELECT n, r, b, s, f FROM v WHERE id = ?")
      let last = 0
      await fc.assert(
        fc.asyncProperty(
          fc.maxSafeInteger(),
          fc.double({ noNaN: true, noDefaultInfinity: true }).filter((d) => !Object.is(d, -0)),
          fc.uint8Array({ maxLength: 300 }),
          fc.string({ unit: "grapheme", maxLength: 40 }),
          fc.boolean(),
          async (n, r, b, text, flag) => {
            const row = await store.transaction(
              Effect.gen(function* () {
                const id = Number((yield* insert.get(n, r, Buffer.from(b), text, flag))?.id)
                expect(id).toBeGreaterThan(last)
                last = id
                return yield* get.get(id)
              })
            )
            expect(Number(row?.n)).toBe(n)
            expect(Number(row?.r)).toBe(r)
            expect([...Buffer.from(row?.b as Uint8Array)]).toEqual([...b])
            expect(row?.s).toBe(text)
            expect(Number(row?.f)).toBe(flag ? 1 : 0)
          }
        ),
        { numRuns: runs }
      )
    })

    it("stores undefined as NULL, and leaves a quoted ? alone", async () => {
      const { store } = s
      const id = await store.transaction(Effect.map(store.query("INSERT INTO v (n, s) VALUES (?, ?) RETURNING id").get(undefined, "a?b"), (r) => Number(r?.id)))
      const row = await store.run(store.query("SELECT n, b, s, '?' AS q, ? AS p FROM v WHERE id = ?").get("x", id))
      expect(row).toMatchObject({ n: null, b: null, s: "a?b", q: "?", p: "x" })
    })
  })

  describe("migrations", () => {
    const s = useStore(engine)
    const migrations = [
      { name: "m/1", sql: "CREATE TABLE once (a INTEGER); INSERT INTO once (a) VALUES (1)" },
      { name: "m/2", sql: "INSERT INTO once (a) VALUES (2)" }
    ]
    const values = async (store: Store) => (await store.run(store.query("SELECT a FROM once ORDER BY a").all())).map((r) => Number(r.a))

    it("applies each named migration once, in order, and later ones on a later run", async () => {
      const { store } = s
      await store.migrate(migrations.slice(0, 1))
      await store.migrate(migrations)
      await store.migrate(migrations)
      expect(await values(store)).toEqual([1, 2])
      await store.migrate([...migrations, { name: "m/3", sql: { sqlite: "INSERT INTO once (a) VALUES (3)", pg: "INSERT INTO once (a) VALUES (33)" } }])
      expect(await values(store)).toEqual([1, 2, engine.dialect === "pg" ? 33 : 3])
    })

    it("rolls a failing migration back whole, and applies it once it is fixed", async () => {
      const { store } = s
      const broken = { name: "m/4", sql: "INSERT INTO once (a) VALUES (4); INSERT INTO no_such_table (a) VALUES (4)" }
      await expect(store.migrate([broken])).rejects.toSatisfy(SqlError.isSqlError)
      expect(await values(store)).not.toContain(4)
      await store.migrate([{ name: "m/4", sql: "INSERT INTO once (a) VALUES (4)" }])
      expect(await values(store)).toContain(4)
    })

    // (Not for an in-memory SQLite: each connection has a database of its own.)
    if (engine.name !== "SQLite in memory") it("applies each migration once when four instances open and migrate at the same moment", async () => {
      const stores = await Promise.all(Array.from({ length: 4 }, () => s.another()))
      const more = [
        { name: "c/1", sql: "CREATE TABLE together (a INTEGER); INSERT INTO together (a) VALUES (1)" },
        { name: "c/2", sql: "INSERT INTO together (a) VALUES (2)" }
      ]
      await Promise.all(stores.map((st) => st.migrate(more)))
      const rows = await s.store.run(s.store.query("SELECT a FROM together ORDER BY a").all())
      expect(rows.map((r) => Number(r.a))).toEqual([1, 2])
    })
  })

  describe("a transaction run again (`again`)", () => {
    const s = useStore(engine)
    let table = 0

    it("after a failure it accepts: rolled back, run again at once with nothing between, the last run's writes alone kept; one it refuses fails and keeps nothing", async () => {
      const { store } = s
      const t = `again_${++table}`
      await store.migrate([{ name: `test/${t}`, sql: ddl((x) => `CREATE TABLE ${t} (n ${x.serialKey}, what TEXT NOT NULL)`) }])
      const insert = store.query(`INSERT INTO ${t} (what) VALUES (?)`)
      const rows = async () => (await store.run(store.query(`SELECT what FROM ${t} ORDER BY n`).all())).map((r) => String(r.what))
      const again = (error: unknown) => error instanceof Boom
      /** Writes `what` and then fails with `error` on its first `fails` runs. */
      const failing = (what: string, fails: number, error: () => Error = () => new Boom()) => {
        let runs = 0
        const effect = Effect.andThen(insert.run(what), Effect.suspend(() => (++runs <= fails ? Effect.fail(error()) : Effect.succeed(runs))))
        return { effect, runs: () => runs }
      }
      const once = failing("a", 1)
      // Asked for while the first runs: it waits for it, its run again included.
      const [a] = await Promise.all([store.transaction(once.effect, again), store.transaction(insert.run("b"))])
      expect(a, "what its second run gave").toBe(2)
      expect(await rows(), "the first run rolled back, the second kept, before the next transaction").toEqual(["a", "b"])
      const refused = failing("c", 1, () => new Error("not again"))
      expect(await failure(store.transaction(refused.effect, again))).toBeInstanceOf(Error)
      expect(refused.runs()).toBe(1)
      // Bounded by `again` itself.
      let left = 3
      const always = failing("d", 100)
      expect(await failure(store.transaction(always.effect, (error) => left-- > 0 && again(error)))).toBeInstanceOf(Boom)
      expect(always.runs(), "the first run and three again").toBe(4)
      expect(await rows()).toEqual(["a", "b"])
      // A statement that failed (PostgreSQL: the transaction aborted, answering nothing more until
      // its ROLLBACK): run again after the ROLLBACK, on the connection still held; the failure
      // before any statement went out (PostgreSQL: the BEGIN still queued) too.
      const taken = Number((await store.run(store.query(`SELECT MIN(n) AS n FROM ${t}`).get()))?.n)
      // Answering rows: not held back (PostgreSQL), it fails here.
      const duplicate = store.query(`INSERT INTO ${t} (n, what) VALUES (${taken}, ?) RETURNING n`)
      let statementRuns = 0
      const afterFailed = Effect.suspend(() => (++statementRuns === 1 ? Effect.asVoid(Effect.andThen(insert.run("e"), duplicate.all("x"))) : Effect.asVoid(insert.run("e"))))
      await store.transaction(afterFailed, (error) => statementRuns === 1 && !(error instanceof Boom))
      expect(statementRuns).toBe(2)
      let before = 0
      await store.transaction(Effect.suspend(() => (++before === 1 ? Effect.fail(new Boom()) : insert.run("f"))), again)
      expect(before).toBe(2)
      expect(await rows(), "the failed runs rolled back, the runs again kept").toEqual(["a", "b", "e", "f"])
    })
  })

  describe("typed errors", () => {
    const s = useStore(engine)

    it("fails a unique-constraint violation with a SqlError whose reason is UniqueViolation", async () => {
      const { store } = s
      await store.migrate([{ name: "test/u", sql: "CREATE TABLE u (k INTEGER PRIMARY KEY, name TEXT NOT NULL, UNIQUE (name))" }])
      const insert = store.query("INSERT INTO u (k, name) VALUES (?, ?)")
      await store.transaction(insert.run(1, "one"))
      // Through the promise: the primary key, then a UNIQUE column.
      const primary = await failure(store.transaction(insert.run(1, "uno")))
      expect(SqlError.isSqlError(primary)).toBe(true)
      expect(reasonOf(primary)).toBe("UniqueViolation")
      expect(reasonOf(await failure(store.transaction(insert.run(2, "one"))))).toBe("UniqueViolation")
      // In the effect's typed error channel.
      const caught = await store.run(Effect.flip(insert.run(1, "uno")))
      expect(caught.reason._tag).toBe("UniqueViolation")
      expect(caught.reason.isRetryable).toBe(false)
      expect(Postgres.isConflict(caught)).toBe(false)
      // Another constraint (NOT NULL) is a ConstraintError.
      expect(reasonOf(await failure(store.transaction(insert.run(3, null))))).toBe("ConstraintError")
      expect(Number((await store.run(store.query("SELECT COUNT(*) AS n FROM u").get()))?.n)).toBe(1)
    })

    it("fails a statement on a missing table with a SqlError, and the transaction leaves nothing", async () => {
      const { store } = s
      const insert = store.query("INSERT INTO u (k, name) VALUES (?, ?)")
      const error = await failure(store.transaction(Effect.andThen(insert.run(10, "ten"), store.query("SELECT * FROM no_such_table").all())))
      expect(SqlError.isSqlError(error)).toBe(true)
      expect(await store.run(store.query("SELECT k FROM u WHERE k = ?").get(10))).toBeUndefined()
    })
  })

  // On PostgreSQL a write whose rows nobody reads (and `Query.write`) goes out with the next
  // statement of its transaction: its failure must still fail the transaction, with its own error.
  describe("writes that go out with the next statement", () => {
    const s = useStore(engine)
    let next = 0
    const keys = (n: number) => Array.from({ length: n }, () => ++next)
    const table = () => s.store.migrate([{ name: "test/w", sql: "CREATE TABLE w (k INTEGER PRIMARY KEY, v TEXT)" }])
    const present = async (ks: ReadonlyArray<number>) =>
      (await s.store.run(s.store.query(`SELECT k FROM w WHERE k IN (${ks.map(() => "?").join(", ")}) ORDER BY k`).all(...ks))).map((r) => Number(r.k))

    it("a failing write fails its transaction with its own typed error, whether a read, a write or the COMMIT follows it", async () => {
      await table()
      const insert = s.store.query("INSERT INTO w (k, v) VALUES (?, ?)")
      const [taken] = keys(1)
      await s.store.run(insert.run(taken, "x"))
      for (const after of [Effect.asVoid(s.store.query("SELECT k FROM w WHERE k = ?").get(taken)), Effect.asVoid(insert.run(-1, "y")), Effect.void]) {
        const [k] = keys(1)
        const error = await failure(s.store.transaction(Effect.andThen(Effect.andThen(insert.run(k, "a"), insert.run(taken, "dup")), after)))
        expect(reasonOf(error)).toBe("UniqueViolation")
        expect(await present([k!, -1])).toEqual([])
      }
      const [k] = keys(1)
      expect(reasonOf(await failure(s.store.transaction(Effect.andThen(insert.write(k, "a"), insert.write(taken, "dup")))))).toBe("UniqueViolation")
      expect(await present([k!])).toEqual([])
    })

    it("a write failing inside a nested sql.withTransaction fails that savepoint alone; the rest commits", async () => {
      await table()
      const insert = s.store.query("INSERT INTO w (k, v) VALUES (?, ?)")
      const [taken, a, b, c] = keys(4)
      await s.store.run(insert.run(taken, "x"))
      let inner: unknown
      await s.store.transaction(
        Effect.gen(function* () {
          yield* insert.run(a, "a")
          inner = yield* Effect.flip(s.store.sql.withTransaction(Effect.andThen(insert.run(b, "b"), insert.run(taken, "dup"))))
          yield* insert.run(c, "c")
        })
      )
      expect(reasonOf(inner)).toBe("UniqueViolation")
      expect(await present([a!, b!, c!])).toEqual([a, c])
    })

    it("what a transaction that ignored a failed statement reports is what the database holds, for all statements after it", async () => {
      await table()
      const insert = s.store.query("INSERT INTO w (k, v) VALUES (?, ?)")
      const returning = s.store.query("INSERT INTO w (k, v) VALUES (?, ?) RETURNING k")
      const [taken] = keys(1)
      await s.store.run(insert.run(taken, "x"))
      await fc.assert(
        fc.asyncProperty(fc.array(fc.constantFrom("write", "read", "failed"), { maxLength: 4 }), async (after) => {
          const [k, ...rest] = keys(1 + after.length)
          const ignored = Effect.ignore(returning.run(taken, "dup"))
          const body = Effect.gen(function* () {
            yield* insert.run(k, "a")
            yield* ignored
            for (const [i, step] of after.entries())
              yield* step === "write" ? insert.run(rest[i], "w") : step === "read" ? Effect.asVoid(s.store.query("SELECT k FROM w WHERE k = ?").get(k)) : ignored
          })
          const committed = await s.store.transaction(body).then(
            () => true,
            () => false
          )
          const writes = rest.filter((_, i) => after[i] === "write")
          expect(await present([k!, ...writes])).toEqual(committed ? [k, ...writes] : [])
        }),
        { numRuns: transactionRuns(engine) }
      )
    })

    it("settleFirst marks a pending message done; for one no longer pending, nothing of its transaction commits", async () => {
      await table()
      const inbox = await Inbox.make(s.store)
      const insert = s.store.query("INSERT INTO w (k, v) VALUES (?, ?)")
      const [a, b] = keys(2)
      await s.store.transaction(inbox.receive("sf", { envelopeId: "sf-1", topic: "t", key: "k", payload: "{}" }))
      const handle = (k: number) =>
        Effect.gen(function* () {
          if (!(yield* inbox.settleFirst("sf", "sf-1", "done"))) return "not pending"
          yield* insert.run(k, "effect")
          return "done"
        })
      expect(await s.store.transaction(handle(a!))).toBe("done")
      expect(await s.store.run(inbox.status("sf", "sf-1"))).toBe("done")
      // Again: SQLite answers false at once; PostgreSQL fails the transaction, recognisably.
      const again = await s.store.transaction(handle(b!)).catch((error: unknown) => (Inbox.isNotPending(error) ? "failed: not pending" : error))
      expect(again).toBe(engine.dialect === "pg" ? "failed: not pending" : "not pending")
      expect(await present([a!, b!])).toEqual([a])
      expect(Inbox.isNotPending(new Error("other"))).toBe(false)
    })

    it("for all mixes of messages settled together (pending, already done, never received, failing the guard; effects after the mark awaited, written or none): exactly the pending ones commit, the others fail recognisably and leave nothing", async () => {
      await table()
      // The guard as a cluster's: a condition on the row, checked in the same statement.
      const inbox = await Inbox.make(s.store, { guard: { condition: "key <> ?", params: ["fenced"] } })
      const insert = s.store.query("INSERT INTO w (k, v) VALUES (?, ?)")
      const read = s.store.query("SELECT COUNT(*) AS n FROM w WHERE k = ?")
      let id = 0
      const message = fc.record({ state: fc.constantFrom("pending" as const, "done" as const, "absent" as const, "fenced" as const), after: fc.constantFrom("none" as const, "write" as const, "run" as const, "read-then-write" as const) })
      await fc.assert(
        fc.asyncProperty(fc.array(message, { minLength: 1, maxLength: 8 }), async (messages) => {
          const cases = messages.map((m) => ({ ...m, envelope: `sfp-${++id}`, k: keys(1)[0]! }))
          for (const c of cases) {
            if (c.state === "absent") continue
            await s.store.transaction(inbox.receive("sfp", { envelopeId: c.envelope, topic: "t", key: c.state === "fenced" ? "fenced" : "k", payload: "{}" }))
            if (c.state === "done") await s.store.transaction(inbox.settle("sfp", c.envelope, "done"))
          }
          const handle = (c: (typeof cases)[number]) =>
            Effect.gen(function* () {
              if (!(yield* inbox.settleFirst("sfp", c.envelope, "done"))) return "not pending"
              if (c.after === "write") yield* insert.write(c.k, "effect")
              if (c.after === "run") yield* insert.run(c.k, "effect")
              if (c.after === "read-then-write") {
                yield* read.get(c.k)
                yield* insert.write(c.k, "effect")
              }
              return "done"
            })
          // Together, as the consumers' messages are: in one group's transaction (a failing mark fails a later statement of it, or its COMMIT).
          const outcomes = await Promise.all(cases.map((c) => s.store.group(handle(c)).catch((error: unknown) => (Inbox.isNotPending(error) ? "failed: not pending" : error))))
          const notPending = engine.dialect === "pg" ? "failed: not pending" : "not pending"
          expect(outcomes).toEqual(cases.map((c) => (c.state === "pending" ? "done" : notPending)))
          const effects = cases.filter((c) => c.after !== "none")
          if (effects.length > 0) expect(await present(effects.map((c) => c.k))).toEqual(effects.filter((c) => c.state === "pending").map((c) => c.k))
          for (const c of cases) expect(await s.store.run(inbox.status("sfp", c.envelope))).toBe(c.state === "absent" ? undefined : c.state === "fenced" ? "pending" : "done")
        }),
        { numRuns: transactionRuns(engine) }
      )
    })

    it("for all writes in a transaction (new keys and taken ones, write and writeRows): each outcome, read after the commit, is what the statement did", async () => {
      await table()
      const insert = s.store.query("INSERT INTO w (k, v) VALUES (?, ?) ON CONFLICT DO NOTHING RETURNING k")
      await fc.assert(
        fc.asyncProperty(fc.array(fc.tuple(fc.nat(4), fc.boolean()), { minLength: 1, maxLength: 8 }), async (writes) => {
          const base = keys(5)
          const outcomes = await s.store.transaction(Effect.forEach(writes, ([i, rows]): Sql<() => number | ReadonlyArray<Row>> => (rows ? insert.writeRows(base[i], "v") : insert.write(base[i], "v"))))
          // The first write of a key inserts it (one row returned), a later one finds it taken (none).
          const expected = writes.map(([i, rows], n) => {
            const first = writes.findIndex(([j]) => j === i) === n
            return rows ? (first ? [base[i]] : []) : first ? 1 : 0
          })
          const read = (o: () => number | ReadonlyArray<Row>) => {
            const v = o()
            return typeof v === "number" ? v : v.map((r) => Number(r.k))
          }
          expect(outcomes.map(read)).toEqual(expected)
        }),
        { numRuns: transactionRuns(engine) }
      )
    })

    it("a write outside a transaction commits at once; write's outcome is read after the commit", async () => {
      await table()
      const insert = s.store.query("INSERT INTO w (k, v) VALUES (?, ?) ON CONFLICT DO NOTHING RETURNING k")
      const [a, b] = keys(2)
      await s.store.run(s.store.query("INSERT INTO w (k, v) VALUES (?, ?)").run(a, "a"))
      expect(await present([a!])).toEqual([a])
      const first = await s.store.transaction(insert.write(b, "b"))
      const again = await s.store.transaction(insert.write(b, "b"))
      expect([first(), again()]).toEqual([1, 0])
      const inbox = await Inbox.make(s.store)
      const entry = { envelopeId: "d-1", topic: "t", key: "k", payload: "{}" }
      await expect(s.store.transaction(Effect.andThen(inbox.deliver("d", entry), Effect.fail(new Boom("crash"))))).rejects.toBeInstanceOf(Boom)
      const fresh = await s.store.transaction(inbox.deliver("d", entry))
      const redelivered = await s.store.transaction(inbox.deliver("d", entry))
      expect([fresh(), redelivered()]).toEqual([true, false])
      expect((await inbox.pending("d")).map((e) => e.envelopeId)).toEqual(["d-1"])
    })
  })

  describe("Inbox", () => {
    const s = useStore(engine)

    it("recognises a redelivered envelope id and settles a message once", async () => {
      const { store } = s
      const inbox = await Inbox.make(store)
      const entry = { envelopeId: "e-1", topic: "events/x", key: "k", payload: "{}" }
      expect(await store.transaction(inbox.receive("p", entry))).toBe(true)
      expect(await store.transaction(inbox.receive("p", entry))).toBe(false)
      expect(await store.transaction(inbox.receive("q", entry))).toBe(true)
      expect(await inbox.pending("p")).toEqual([entry])
      expect(await store.run(inbox.status("p", "e-1"))).toBe("pending")
      expect(await store.transaction(inbox.settle("p", "e-1", "done"))).toBe(true)
      expect(await store.transaction(inbox.settle("p", "e-1", "failed"))).toBe(false)
      expect(await store.run(inbox.status("p", "e-1"))).toBe("done")
      expect(await store.run(inbox.status("p", "nope"))).toBeUndefined()
      expect(await inbox.pending("p")).toEqual([])
      expect((await inbox.pending("q")).map((e) => e.envelopeId)).toEqual(["e-1"])
    })

    // A run in its sender's transaction (runtime's Consumer `claimed`): one statement asks whether
    // another message of the processor's is pending and writes the row done (where two did).
    if (engine.dialect === "sqlite")
      it("for any inbox rows, receiveDoneAlone writes a message done exactly when it is new and no other of its processor's is pending, through the index over pending rows", async () => {
        const { store } = s
        const inbox = await Inbox.make(store)
        type Fate = "pending" | "done" | "failed"
        let run = 0
        await fc.assert(
          fc.asyncProperty(
            fc.array(fc.record({ processor: fc.constantFrom("p", "q"), id: fc.constantFrom("a", "b", "c"), fate: fc.constantFrom<Fate>("pending", "done", "failed") }), { maxLength: 8 }),
            fc.record({ processor: fc.constantFrom("p", "q"), id: fc.constantFrom("a", "b", "c", "d") }),
            async (rows, probe) => {
              // Processors of this run's own: the store is the describe's.
              const name = (processor: string) => `${processor}-${run}`
              run++
              const model = new Map<string, Fate>()
              for (const r of rows) {
                const at = `${r.processor}/${r.id}`
                if (model.has(at)) continue
                model.set(at, r.fate)
                await store.transaction(inbox.receive(name(r.processor), { envelopeId: r.id, topic: "t", key: "k", payload: "{}" }))
                if (r.fate !== "pending") await store.transaction(inbox.settle(name(r.processor), r.id, r.fate))
              }
              const others = [...model].some(([at, fate]) => fate === "pending" && at.startsWith(`${probe.processor}/`) && at !== `${probe.processor}/${probe.id}`)
              const expected = !model.has(`${probe.processor}/${probe.id}`) && !others
              const entry = { envelopeId: probe.id, topic: "t", key: "k", payload: '{"new":true}' }
              expect(await store.transaction(inbox.receiveDoneAlone!(name(probe.processor), entry))).toBe(expected)
              if (expected) model.set(`${probe.processor}/${probe.id}`, "done")
              for (const processor of ["p", "q"])
                for (const id of ["a", "b", "c", "d"]) expect(await store.run(inbox.status(name(processor), id))).toBe(model.get(`${processor}/${id}`))
            }
          ),
          { numRuns: runs }
        )
        const text = store
          .breakdown()
          .map((b) => b.text)
          .find((t) => /^INSERT (OR IGNORE )?INTO inbox/.test(t) && t.includes("EXISTS"))
        expect(text).toBeDefined()
        const nulls = Array.from(text!.matchAll(/\?/g), () => null)
        const plan = (await store.run(store.query(`EXPLAIN QUERY PLAN ${text}`).all(...nulls)))
          .map((r) => String(r.detail))
          .join(" | ")
        expect(plan).toMatch(/SEARCH inbox USING (COVERING )?INDEX inbox_waiting/)
        expect(plan).not.toMatch(/SCAN inbox/)
        // As it runs (counted: without its RETURNING, see Store.withoutReturning), it opens no
        // ephemeral table: an INSERT whose SELECT reads its own table copies its rows into one first.
        const program = await store.run(store.query(`EXPLAIN ${text!.replace(/ RETURNING part$/, "")}`).all(...nulls))
        expect(program.filter((r) => r.opcode === "OpenEphemeral")).toEqual([])
      })

    it("for any deliveries of messages to several processors at once: one statement each, new to each processor once, pending for each", async () => {
      const { store } = s
      const inbox = await Inbox.make(store)
      let run = 0
      await fc.assert(
        fc.asyncProperty(fc.array(fc.tuple(fc.constantFrom("m1", "m2", "m3"), fc.subarray(["p", "q", "r", "s"], { minLength: 1 })), { minLength: 1, maxLength: 8 }), async (deliveries) => {
          run++
          const had = new Set<string>()
          for (const [id, processors] of deliveries) {
            const entry = { envelopeId: `${run}-${id}`, topic: "events/x", key: id, payload: "{}" }
            const before = store.statements()
            const fresh = await store.transaction(inbox.deliverAll([...processors, processors[0]!], entry))
            // BEGIN, the INSERT, COMMIT.
            expect(store.statements() - before).toBe(3)
            expect(fresh()).toEqual(new Set(processors.filter((p) => !had.has(`${p}/${entry.envelopeId}`))))
            for (const p of processors) had.add(`${p}/${entry.envelopeId}`)
          }
          for (const p of ["p", "q", "r", "s"])
            expect((await inbox.pending(p)).map((e) => e.envelopeId).filter((e) => e.startsWith(`${run}-`)).sort()).toEqual([...had].filter((h) => h.startsWith(`${p}/`)).map((h) => h.slice(2)).sort())
        }),
        { numRuns: transactionRuns(engine) }
      )
    })

    it("a receive in a transaction that fails is not there: the redelivery is new", async () => {
      const { store } = s
      const inbox = await Inbox.make(store)
      const entry = { envelopeId: "r-1", topic: "t", key: "k", payload: "{}" }
      await expect(store.transaction(Effect.andThen(inbox.receive("r", entry), Effect.fail(new Boom("crash"))))).rejects.toBeInstanceOf(Boom)
      expect(await store.transaction(inbox.receive("r", entry))).toBe(true)
    })

    it("returns pending messages in arrival order, not id order", async () => {
      const { store } = s
      const inbox = await Inbox.make(store)
      const ids = ["m", "c", "x", "a", "b"]
      for (const id of ids.slice(0, 2)) await store.transaction(inbox.receive("o", { envelopeId: id, topic: "t", key: id, payload: id }))
      await store.transaction(Effect.forEach(ids.slice(2), (id) => inbox.receive("o", { envelopeId: id, topic: "t", key: id, payload: id })))
      expect((await inbox.pending("o")).map((e) => [e.envelopeId, e.payload])).toEqual(ids.map((id) => [id, id]))
      await store.transaction(inbox.settle("o", "x", "done"))
      expect((await inbox.pending("o")).map((e) => e.envelopeId)).toEqual(["m", "c", "a", "b"])
    })

    it("partitions keys: notifies the partition inside the receiving transaction, and lists a partition's pending", async () => {
      const { store } = s
      const notified: Array<number> = []
      const inbox = await Inbox.make(store, { partitions: 4, notify: (part) => Effect.sync(() => void notified.push(part)) })
      const keys = Array.from({ length: 12 }, (_, i) => `key-${i}`)
      for (const key of keys) await store.transaction(inbox.receive("pp", { envelopeId: key, topic: "t", key, payload: "{}" }))
      await store.transaction(inbox.receive("pp", { envelopeId: keys[0]!, topic: "t", key: keys[0]!, payload: "{}" })) // a redelivery: no notification
      expect(notified).toEqual(keys.map((k) => Inbox.partitionOf(k, 4)))
      for (const part of [0, 1, 2, 3]) {
        expect((await inbox.pendingIn("pp", [part])).map((e) => e.key)).toEqual(keys.filter((k) => Inbox.partitionOf(k, 4) === part))
      }
      expect((await inbox.pendingIn("pp", [1, 3])).map((e) => e.key)).toEqual(keys.filter((k) => [1, 3].includes(Inbox.partitionOf(k, 4))))
      expect(await inbox.pendingIn("pp", [])).toEqual([])
    })
  })

  describe("Outbox", () => {
    const s = useStore(engine)

    it("returns entries in order with their QoS and deletes a sent run", async () => {
      const { store } = s
      const outbox = await Outbox.make(store)
      await store.transaction(Effect.forEach(["a", "b", "c"], (t) => outbox.add(`events/${t}`, t)))
      await store.transaction(outbox.add("events/d", "d", 0))
      const first = await outbox.pending(2)
      expect(first.map((e) => [e.topic, e.payload, e.qos])).toEqual([
        ["events/a", "a", 1],
        ["events/b", "b", 1]
      ])
      expect(typeof first[0]!.seq).toBe("number")
      expect(first[1]!.seq).toBeGreaterThan(first[0]!.seq)
      await outbox.sent(first[0]!.seq, first[1]!.seq)
      expect((await outbox.pending(10)).map((e) => [e.payload, e.qos])).toEqual([
        ["c", 1],
        ["d", 0]
      ])
      expect(await outbox.size()).toBe(2)
    })

    it("an add in a failed transaction is not published", async () => {
      const { store } = s
      const outbox = await Outbox.make(store, { instance: "failing" })
      await expect(store.transaction(Effect.andThen(outbox.add("events/x", "x"), Effect.fail(new Boom("no"))))).rejects.toBeInstanceOf(Boom)
      expect(await outbox.size()).toBe(0)
    })

    it("keeps instances' entries apart, and adopts a dead instance's", async () => {
      const { store } = s
      const one = await Outbox.make(store, { instance: "one" })
      const two = await Outbox.make(store, { instance: "two" })
      await store.transaction(Effect.andThen(one.add("t", "1a"), one.add("t", "1b")))
      await store.transaction(two.add("t", "2a"))
      expect((await one.pending(10)).map((e) => e.payload)).toEqual(["1a", "1b"])
      expect(await two.size()).toBe(1)
      expect(await two.adopt(["one", "nobody"])).toBe(2)
      expect(await one.size()).toBe(0)
      expect((await two.pending(10)).map((e) => e.payload)).toEqual(["1a", "1b", "2a"])
    })
  })

  describe("IngressLog", () => {
    const s = useStore(engine)

    it("commits appends of one tick together, keeps bytes, a preview of oversized payloads, and sees an envelope id once", async () => {
      const { store } = s
      let batches = 0
      const log = await IngressLog.make(store, { maxBytes: 10, previewBytes: 4, instance: "a", beforeCommit: () => void batches++ })
      const bytes = Buffer.from(Array.from({ length: 10 }, (_, i) => (i * 37) % 256).concat([0, 255]).slice(0, 10))
      await Promise.all([
        log.append("initiate/a", Buffer.from("{}"), "c1"),
        log.append("initiate/a", Buffer.from("x".repeat(50)), null),
        log.append("initiate/b", bytes, "c2")
      ])
      expect(batches).toBe(1)
      const entries = await log.unforwarded(10)
      expect(entries.map((e) => [e.topic, e.payload.toString("hex"), e.size, e.clientId])).toEqual([
        ["initiate/a", Buffer.from("{}").toString("hex"), 2, "c1"],
        ["initiate/a", Buffer.from("xxxx").toString("hex"), 50, null],
        ["initiate/b", bytes.toString("hex"), 10, "c2"]
      ])
      expect(entries.every((e) => typeof e.seq === "number" && Buffer.isBuffer(e.payload))).toBe(true)
      await store.transaction(log.forwarded(entries[0]!.seq))
      expect(await log.unforwarded(10)).toHaveLength(2)
      expect(await log.unforwarded(1)).toHaveLength(1)
      expect(await store.transaction(log.firstSight("id-1", entries[0]!.seq))).toBe(true)
      expect(await store.transaction(log.firstSight("id-1", entries[1]!.seq))).toBe(false)
    })

    it("SQLite commits appends once the code running now is done, ahead of the turn's other callbacks; PostgreSQL those of the whole turn together", async () => {
      const { store } = s
      const log = await IngressLog.make(store, { maxBytes: 100, previewBytes: 10, instance: "when" })
      // A publisher's PUBACK waits for its append: on SQLite it must not wait behind the rest of
      // the event loop's turn (here an immediate queued before the append).
      let turnOver = false
      setImmediate(() => (turnOver = true))
      await log.append("initiate/a", Buffer.from("{}"), null)
      expect(turnOver).toBe(engine.dialect === "pg")
      // Appends of two runs of code in the same turn: two transactions on SQLite (BEGIN, INSERT,
      // COMMIT each), one statement on PostgreSQL.
      const before = store.statements()
      const first = log.append("initiate/a", Buffer.from("{}"), null)
      await Promise.resolve()
      await Promise.all([first, log.append("initiate/a", Buffer.from("{}"), null)])
      expect(store.statements() - before).toBe(engine.dialect === "sqlite" ? 6 : 1)
      expect(await log.unforwarded(10)).toHaveLength(3)
    })

    it("keeps every byte value of a payload", async () => {
      const { store } = s
      const log = await IngressLog.make(store, { maxBytes: 1000, previewBytes: 10, instance: "bytes" })
      const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
      await log.append("initiate/bin", all, null)
      const [entry] = await log.unforwarded(10)
      expect(entry!.payload.equals(all)).toBe(true)
      expect(entry!.size).toBe(256)
    })

    it("for any batch of appends in one tick: each logged once, in order, with its bytes; on PostgreSQL 32 to a statement", async () => {
      const { store } = s
      let n = 0
      await fc.assert(
        fc.asyncProperty(fc.array(fc.tuple(fc.uint8Array({ maxLength: 30 }), fc.option(fc.string({ maxLength: 8 }), { nil: null })), { minLength: 1, maxLength: 70 }), async (appends) => {
          const log = await IngressLog.make(store, { maxBytes: 20, previewBytes: 5, instance: `batch-${n++}` })
          const before = store.statements()
          await Promise.all(appends.map(([bytes, clientId]) => log.append("initiate/a", Buffer.from(bytes), clientId)))
          const sent = store.statements() - before
          const entries = await log.unforwarded(100)
          expect(entries.map((e) => [e.payload.toString("hex"), e.size, e.clientId])).toEqual(
            appends.map(([bytes, clientId]) => [Buffer.from(bytes).subarray(0, bytes.length > 20 ? 5 : bytes.length).toString("hex"), bytes.length, clientId])
          )
          // SQLite: BEGIN, an INSERT each, COMMIT; PostgreSQL past 32: BEGIN, an INSERT per 32, COMMIT.
          expect(sent).toBe(engine.dialect === "sqlite" ? appends.length + 2 : appends.length <= 32 ? 1 : Math.ceil(appends.length / 32) + 2)
        }),
        { numRuns: transactionRuns(engine) }
      )
    })

    it("for any drained batches of envelope ids: firstSights answers the first entry of each id never seen before, in one statement per 128; forwarded marks them all", async () => {
      const { store } = s
      let n = 0
      await fc.assert(
        fc.asyncProperty(fc.array(fc.array(fc.constantFrom("a", "b", "c", "d", "e"), { minLength: 1, maxLength: 150 }), { minLength: 1, maxLength: 3 }), async (batches) => {
          const log = await IngressLog.make(store, { maxBytes: 100, previewBytes: 10, instance: `sight-${++n}` })
          const seen = new Set<string>()
          for (const ids of batches) {
            await Promise.all(ids.map(() => log.append("initiate/a", Buffer.from("{}"), null)))
            const entries = await log.unforwarded(1000)
            const sightings = entries.map((e, i) => ({ envelopeId: `${n}-${ids[i]}`, seq: e.seq }))
            const expected = new Set(sightings.filter((x) => !seen.has(x.envelopeId) && seen.add(x.envelopeId)).map((x) => x.seq))
            const before = store.statements()
            const first = await store.transaction(Effect.andThen(log.firstSights(sightings), (f) => Effect.as(log.forwarded(...entries.map((e) => e.seq)), f)))
            expect(first).toEqual(expected)
            // BEGIN, COMMIT, and per 128 entries one INSERT and one UPDATE.
            expect(store.statements() - before).toBe(2 + 2 * Math.ceil(entries.length / 128))
            expect(await log.unforwarded(1000)).toEqual([])
          }
        }),
        { numRuns: transactionRuns(engine) }
      )
    })

    it("a fence that refuses keeps the batch out; an after-commit step that fails leaves it logged but unacknowledged", async () => {
      const { store } = s
      let holder = false
      let forwarding = "fails"
      const log = await IngressLog.make(store, {
        maxBytes: 100,
        previewBytes: 10,
        instance: "fenced",
        fence: Effect.suspend(() => (holder ? Effect.void : Effect.fail(new SqlError.SqlError({ reason: new SqlError.UnknownError({ cause: "not the holder", message: "not the holder" }) })))),
        afterCommit: async () => {
          if (forwarding === "fails") throw new Error("forward failed")
        }
      })
      await expect(log.append("initiate/a", Buffer.from("{}"), null)).rejects.toThrow("not the holder")
      expect(await log.unforwarded(10)).toEqual([])
      holder = true
      await expect(log.append("initiate/a", Buffer.from("1"), null)).rejects.toThrow("forward failed")
      expect((await log.unforwarded(10)).map((e) => e.payload.toString())).toEqual(["1"])
      forwarding = "works"
      await log.append("initiate/a", Buffer.from("2"), null)
      expect((await log.unforwarded(10)).map((e) => e.payload.toString())).toEqual(["1", "2"])
    })

    it("a batch that fails before its commit is not logged, and its publishers are told", async () => {
      const { store } = s
      let crash = true
      const log = await IngressLog.make(store, {
        maxBytes: 100,
        previewBytes: 10,
        instance: "crashing",
        beforeCommit: () => {
          if (crash) throw new Error("killed before commit")
        }
      })
      const appends = [log.append("initiate/a", Buffer.from("1"), null), log.append("initiate/a", Buffer.from("2"), null)]
      for (const a of appends) await expect(a).rejects.toThrow("killed before commit")
      expect(await log.unforwarded(10)).toEqual([])
      crash = false
      await log.append("initiate/a", Buffer.from("3"), null)
      expect((await log.unforwarded(10)).map((e) => e.payload.toString())).toEqual(["3"])
    })

    it("adopts a dead instance's unforwarded entries, not its forwarded ones", async () => {
      const { store } = s
      const dead = await IngressLog.make(store, { maxBytes: 100, previewBytes: 10, instance: "dead" })
      const heir = await IngressLog.make(store, { maxBytes: 100, previewBytes: 10, instance: "heir" })
      await Promise.all(["1", "2", "3"].map((p) => dead.append("initiate/a", Buffer.from(p), null)))
      const [first] = await dead.unforwarded(1)
      await store.transaction(dead.forwarded(first!.seq))
      expect(await heir.adopt(["dead"])).toBe(2)
      expect(await dead.unforwarded(10)).toEqual([])
      expect((await heir.unforwarded(10)).map((e) => e.payload.toString())).toEqual(["2", "3"])
    })
  })

  describe("retention", () => {
    const s = useStore(engine)

    it("forgets settled inbox entries and forwarded ingress entries older than the window, never pending ones", async () => {
      const { store } = s
      const inbox = await Inbox.make(store)
      const log = await IngressLog.make(store, { maxBytes: 100, previewBytes: 10 })
      for (const id of ["a", "b", "c"]) await store.transaction(inbox.receive("p", { envelopeId: id, topic: "t", key: "k", payload: "{}" }))
      await store.transaction(Effect.andThen(inbox.settle("p", "a", "done"), inbox.settle("p", "b", "failed")))
      await Promise.all([log.append("initiate/x", Buffer.from("{}"), null), log.append("initiate/x", Buffer.from("{}"), null)])
      const [first] = await log.unforwarded(10)
      await store.transaction(Effect.andThen(log.forwarded(first!.seq), log.firstSight("env-1", first!.seq)))
      const earlier = new Date(Date.now() - 60_000)
      expect(await inbox.prune(earlier)).toBe(0)
      expect(await log.prune(earlier)).toBe(0)
      const later = new Date(Date.now() + 60_000)
      expect(await inbox.prune(later)).toBe(2)
      expect((await inbox.pending("p")).map((e) => e.envelopeId)).toEqual(["c"])
      // A pruned id is forgotten: past the window a redelivery is new again.
      expect(await store.transaction(inbox.receive("p", { envelopeId: "a", topic: "t", key: "k", payload: "{}" }))).toBe(true)
      expect(await log.prune(later)).toBe(1)
      expect(await log.unforwarded(10)).toHaveLength(1)
      // The id is forgotten with its entry: past the window a resend is new again.
      expect(await store.transaction(log.firstSight("env-1", 99))).toBe(true)
    })
  })

  describe("Rejections", () => {
    const s = useStore(engine)

    it("records rejections in the caller's transaction, lists the most recent first and counts them by kind", async () => {
      const { store } = s
      const log = await Rejections.make(store)
      const at = new Date("2030-01-01T00:00:00.000Z")
      const recorded = await store.transaction(
        Effect.forEach(
          [
            ["r-1", new Date(at.getTime() - 1000), rejection("malformed-json", "a")],
            ["r-2", at, rejection("schema-violation", "b")],
            ["r-3", at, rejection("schema-violation", "c")]
          ] as const,
          ([id, when, r]) => log.record(id, when, r)
        )
      )
      expect(recorded[1]).toEqual({ id: "r-2", at: at.toISOString(), ...rejection("schema-violation", "b") })
      await expect(store.transaction(Effect.andThen(log.record("r-4", at, rejection("unknown-topic", "d")), Effect.fail(new Boom("no"))))).rejects.toBeInstanceOf(Boom)
      // Same instant: the later row first.
      expect((await log.recent(2)).map((r) => r.id)).toEqual(["r-3", "r-2"])
      expect(await log.recent(3)).toEqual([recorded[2], recorded[1], recorded[0]])
      expect(await log.counts()).toEqual({ "malformed-json": 1, "schema-violation": 2 })
      expect(reasonOf(await failure(store.transaction(log.record("r-1", at, rejection("unknown-topic", "x")))))).toBe("UniqueViolation")
    })
  })

  if (engine.dialect === "pg") describe("PostgreSQL: plans", () => {
    const s = useStore(engine)

    // The settle of a message finds its row by the primary key, not by an index on `status` (whose
    // entries of every message once pending, dead ones included, it would walk: Inbox.pendingByKey).
    it("settling a message scans the inbox by its primary key, for all mixes of settled and pending rows", async () => {
      const { store } = s
      const inbox = await Inbox.make(store)
      for (const id of ["a", "b"]) await store.transaction(inbox.receive("p0", { envelopeId: id, topic: "t", key: "k", payload: "{}" }))
      await store.transaction(inbox.settle("p0", "a", "done"))
      await store.transaction(inbox.settleFirst("p0", "b", "done"))
      const settles = store
        .breakdown()
        .map((b) => b.text)
        .filter((t) => t.startsWith("UPDATE inbox SET status = ?") || t.startsWith("WITH s AS (UPDATE inbox"))
      expect(settles).toHaveLength(2)
      let n = 0
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.record({ done: fc.integer({ min: 0, max: 3000 }), pending: fc.integer({ min: 0, max: 3 }) }), { minLength: 1, maxLength: 5 }),
          async (processors) => {
            n++
            await store.transaction(
              Effect.gen(function* () {
                yield* store.sql.unsafe("TRUNCATE inbox").raw
                for (const [i, p] of processors.entries())
                  for (const [status, count] of [["done", p.done], ["pending", p.pending]] as const)
                    if (count > 0)
                      yield* store.sql.unsafe(
                        `INSERT INTO inbox (processor, envelope_id, topic, key, payload, status, received_at) SELECT 'p${i}', '${status}-' || g, 't', 'k', '{}', '${status}', 'x' FROM generate_series(1, ${count}) AS g`
                      ).raw
              })
            )
            // With statistics (autovacuum analyzes a busy inbox within seconds); on a table never
            // analyzed the planner's defaults tie the indexes.
            await store.run(store.sql.unsafe("ANALYZE inbox").raw)
            for (const [j, text] of settles.entries()) {
              const plan = await store.transaction(
                Effect.gen(function* () {
                  yield* store.sql.unsafe("SET LOCAL plan_cache_mode = force_generic_plan").raw
                  yield* store.sql.unsafe(`PREPARE settle_${n}_${j} AS ${numberParams(text)}`).raw
                  const rows = yield* store.sql.unsafe<{ "QUERY PLAN": string }>(`EXPLAIN EXECUTE settle_${n}_${j}('done', 'x', NULL, 'p0', 'pending-1')`).withoutTransform
                  yield* store.sql.unsafe(`DEALLOCATE settle_${n}_${j}`).raw
                  return rows.map((r) => r["QUERY PLAN"]).join("\n")
                })
              )
              expect(plan).not.toMatch(/inbox_pending|inbox_part|inbox_waiting/)
              // A table of a page or two is read whole; a larger one through its primary key.
              if (processors.reduce((sum, p) => sum + p.done + p.pending, 0) >= 1000) expect(plan).toContain("Index Scan using inbox_pkey on inbox")
            }
          }
        ),
        { numRuns: Math.min(runs, 25) }
      )
    })

    // A chained run (Inbox.receiveDoneFirst) looks for a pending message of its processor's of its
    // key: through the index over pending rows by key, not by walking the processor's pending rows
    // (2-3 ms a statement with 20,000 of them, for every chained run into a processor with a backlog).
    it("a message written done first looks for a pending one of its key through the index over pending rows by key, with a backlog of other keys", async () => {
      const { store } = s
      const inbox = await Inbox.make(store)
      await store.transaction(inbox.receiveDoneFirst!("chained", { envelopeId: "first", topic: "t", key: "k", payload: "{}" }))
      const text = store
        .breakdown()
        .map((b) => b.text)
        .find((t) => t.startsWith("INSERT INTO inbox") && t.includes("baton_not_first"))
      expect(text).toBeDefined()
      await store.transaction(
        store.sql.unsafe(
          "INSERT INTO inbox (processor, envelope_id, topic, key, payload, status, received_at) SELECT 'chained', 'pending-' || g, 't', 'k' || (g % 2000), '{}', 'pending', 'x' FROM generate_series(1, 20000) AS g"
        ).raw
      )
      await store.run(store.sql.unsafe("ANALYZE inbox").raw)
      const plan = await store.transaction(
        Effect.gen(function* () {
          yield* store.sql.unsafe("SET LOCAL plan_cache_mode = force_generic_plan").raw
          yield* store.sql.unsafe(`PREPARE done_first AS ${numberParams(text!)}`).raw
          const rows = yield* store.sql.unsafe<{ "QUERY PLAN": string }>(`EXPLAIN EXECUTE done_first('chained', 'new', 't', 'k7', '{}', 'x', 'x', 0)`).withoutTransform
          yield* store.sql.unsafe("DEALLOCATE done_first").raw
          return rows.map((r) => r["QUERY PLAN"]).join("\n")
        })
      )
      expect(plan).toContain("inbox_pending_key")
    })
  })

  describe("an inbox of the previous schema", () => {
    const s = useStore(engine)
    /** Per dialect: the migration to the indexes over pending rows only, and the inbox's indexes before and after it. */
    const schema =
      engine.dialect === "pg"
        ? {
            migration: "runtime/010-inbox-pending-only",
            indexes: "SELECT indexname AS name, indexdef AS sql FROM pg_indexes WHERE tablename = 'inbox' AND schemaname = current_schema() ORDER BY indexname",
            before: ["inbox_part", "inbox_pending", "inbox_pkey"],
            after: [
              "inbox_pending_key: CREATE INDEX inbox_pending_key ON inbox USING btree (processor, key) WHERE (status = 'pending'::text)",
              "inbox_pkey: CREATE UNIQUE INDEX inbox_pkey ON inbox USING btree (processor, envelope_id)",
              "inbox_waiting: CREATE INDEX inbox_waiting ON inbox USING btree (processor, rowid) WHERE (status = 'pending'::text)"
            ]
          }
        : {
            migration: "runtime/011-inbox-pending-only-sqlite",
            indexes: "SELECT name, sql FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'inbox' ORDER BY name",
            before: ["inbox_part", "inbox_pending", "sqlite_autoindex_inbox_1"],
            after: ["inbox_waiting: CREATE INDEX inbox_waiting ON inbox (processor) WHERE status = 'pending'", "sqlite_autoindex_inbox_1: null"]
          }

    // The migration on a database that the previous version created and used.
    it("is migrated to the index over pending rows only, its messages kept", async () => {
      const { store } = s
      // (The previous version had neither this migration nor the later index for chained runs.)
      await store.migrate(Inbox.migrations.filter((m) => m.name !== schema.migration && m.name !== "runtime/016-inbox-pending-key"))
      const indexes = async () =>
        (await store.run(store.query(schema.indexes).all())).map((r) => `${String(r.name)}: ${String(r.sql).replace(/ ON \S+ /, " ON inbox ")}`)
      expect((await indexes()).map((i) => i.split(":")[0])).toEqual(schema.before)
      const insert = store.query("INSERT INTO inbox (processor, envelope_id, topic, key, payload, status, received_at, part) VALUES (?, ?, 't', ?, '{}', ?, 'x', ?)")
      const rows = [["p", "a", "done"], ["p", "b", "pending"], ["q", "c", "pending"], ["p", "d", "failed"], ["p", "e", "pending"]] as const
      await store.transaction(Effect.forEach(rows, ([p, id, status], i) => insert.run(p, id, `k${i}`, status, i % 2), { discard: true }))
      const inbox = await Inbox.make(store)
      expect(await indexes()).toEqual(schema.after)
      expect((await inbox.pending("p")).map((e) => e.envelopeId)).toEqual(["b", "e"])
      expect((await inbox.pendingIn("p", [0])).map((e) => e.envelopeId)).toEqual(["e"])
      expect(await store.transaction(inbox.othersPending("p", "b"))).toBe(true)
      expect(await store.transaction(inbox.settle("p", "b", "done"))).toBe(true)
      expect(await store.transaction(inbox.settle("p", "a", "done"))).toBe(false)
      expect(await store.transaction(inbox.othersPending("p", "e"))).toBe(false)
      expect((await inbox.pendingPage("p", 0, 10)).map((e) => e.envelopeId)).toEqual(["e"])
      expect(await store.transaction(inbox.status("q", "c"))).toBe("pending")
    })
  })

  if (engine.dialect === "sqlite") describe("SQLite: an ingress log of the previous schema", () => {
    const s = useStore(engine)

    // runtime/012-ingress-seen-keyed on a database that the previous version created and used.
    it("keeps the ingress's seen envelope ids in one b-tree keyed by the id, those seen before kept", async () => {
      const { store } = s
      await store.migrate(IngressLog.migrations.filter((m) => m.name !== "runtime/012-ingress-seen-keyed"))
      const trees = async () =>
        (await store.run(store.query("SELECT name FROM sqlite_schema WHERE tbl_name = 'ingress_seen' ORDER BY name").all())).map((r) => String(r.name))
      expect(await trees()).toEqual(["ingress_seen", "sqlite_autoindex_ingress_seen_1"])
      const insert = store.query("INSERT INTO ingress_log (topic, payload, size, client_id, received_at, forwarded_at) VALUES ('initiate/x', ?, 2, NULL, 'x', ?)")
      await store.transaction(Effect.forEach(["2000-01-01T00:00:00.000Z", "2000-01-01T00:00:00.000Z", null], (at) => insert.run(Buffer.from("{}"), at), { discard: true }))
      await store.run(store.sql.unsafe("INSERT INTO ingress_seen (envelope_id, seq) VALUES ('env-1', 1), ('env-2', 2), ('env-3', 3)").raw)
      const log = await IngressLog.make(store, { maxBytes: 100, previewBytes: 10 })
      expect(await trees()).toEqual(["ingress_seen"])
      expect(String((await store.run(store.query("SELECT sql FROM sqlite_schema WHERE name = 'ingress_seen'").get()))?.sql)).toMatch(/WITHOUT ROWID$/)
      expect(await store.transaction(log.firstSight("env-2", 9))).toBe(false)
      expect([...(await store.transaction(log.firstSights([{ envelopeId: "env-3", seq: 3 }, { envelopeId: "env-4", seq: 3 }])))]).toEqual([3])
      expect((await log.unforwarded(10)).map((e) => e.seq)).toEqual([3])
      // Forgotten with their entries (1 and 2, forwarded): past the window a resend is new again.
      expect(await log.prune(new Date())).toBe(2)
      expect(await store.transaction(log.firstSight("env-1", 9))).toBe(true)
      expect(await store.transaction(log.firstSight("env-3", 9))).toBe(false)
    })
  })

  if (engine.dialect === "pg") describe("PostgreSQL: an ingress log of the previous schema", () => {
    // A database of its own: a scan marks an index entry of a row forwarded (dead) as such only when
    // no snapshot of the database is older than the forwarding, and every other test of the
    // server's database (a CI run's workers side by side) holds snapshots; with one open, the scan
    // below visited the heap for every dead entry (23-47 buffer hits, 3 runs of 6 on a loaded machine).
    const s: { store: Store } = { store: undefined as unknown as Store }
    let drop: (() => Promise<void>) | undefined
    beforeAll(async () => {
      const database = await freshDatabase()
      drop = database.drop
      s.store = await Postgres.open({ url: database.url })
    })
    afterAll(async () => {
      await s.store?.close()
      await drop?.()
    })

    // runtime/019-ingress-unforwarded-seq-pg on a database that the previous version created and used.
    it("reads an instance's unforwarded entries by an index in their order, not past those forwarded since the last VACUUM", async () => {
      const { store } = s
      await store.migrate(IngressLog.migrations.filter((m) => m.name !== "runtime/019-ingress-unforwarded-seq-pg"))
      // As on a server whose autovacuum lags (or is off): the forwarded entries' index entries stay.
      await store.run(store.sql.unsafe("ALTER TABLE ingress_log SET (autovacuum_enabled = false)").raw)
      const insert = store.query("INSERT INTO ingress_log (topic, payload, size, client_id, received_at, forwarded_at, instance) VALUES ('initiate/x', ?, 2, NULL, 'x', ?, ?)")
      const rows = [["a", "2000-01-01T00:00:00.000Z", "i1"], ["b", null, "i1"], ["c", null, "i2"]] as const
      await store.transaction(Effect.forEach(rows, ([p, at, i]) => insert.run(Buffer.from(p), at, i), { discard: true }))
      const log = await IngressLog.make(store, { maxBytes: 100, previewBytes: 10, instance: "i1" })
      const indexes = await store.run(store.query("SELECT indexname FROM pg_indexes WHERE tablename = 'ingress_log' AND schemaname = current_schema() ORDER BY indexname").all())
      expect(indexes.map((r) => String(r.indexname))).toEqual(["ingress_log_pkey", "ingress_unforwarded_seq"])
      expect((await log.unforwarded(10)).map((e) => e.payload.toString())).toEqual(["b"])
      expect(await log.adopt(["i2"])).toBe(1)
      // The drain's cycle: appended, read, marked forwarded; 2,000 entries, no VACUUM.
      for (let round = 0; round < 8; round++) {
        await Promise.all(Array.from({ length: 250 }, () => log.append("initiate/x", Buffer.from("{}"), null)))
        for (let entries = await log.unforwarded(256); entries.length > 0; entries = await log.unforwarded(256))
          await store.transaction(log.forwarded(...entries.map((e) => e.seq)))
      }
      await Promise.all(["x", "y"].map((p) => log.append("initiate/x", Buffer.from(p), null)))
      const explain = store.query("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT seq, topic, payload, size, client_id FROM ingress_log WHERE forwarded_at IS NULL AND instance = ? ORDER BY seq LIMIT ?")
      const [row] = await store.run(explain.all("i1", 256))
      const plan = JSON.stringify(row?.["QUERY PLAN"])
      // The previous index: a bitmap scan of all 2,002 entries, every heap page they are on visited
      // (41 buffer hits), then a sort; this one: 7-9 hits.
      expect(plan).toContain("ingress_unforwarded_seq")
      expect(plan).not.toContain("Sort")
      const hits = Number(/"Shared Hit Blocks":\s*(\d+)/.exec(plan)?.[1])
      expect(hits).toBeLessThan(20)
      expect((await log.unforwarded(10)).map((e) => e.payload.toString())).toEqual(["x", "y"])
    })
  })

  if (engine.dialect === "pg") describe("PostgreSQL: concurrency", () => {
    const s = useStore(engine)
    const setup = async () => {
      const { store } = s
      await store.migrate([{ name: "test/rows", sql: "CREATE TABLE rows (k INTEGER PRIMARY KEY, v INTEGER NOT NULL); INSERT INTO rows (k, v) VALUES (1, 0), (2, 0), (3, 0)" }])
      return {
        lock: store.query(`SELECT v FROM rows WHERE k = ?${Postgres.forUpdate(store.dialect)}`),
        bump: store.query("UPDATE rows SET v = v + 1 WHERE k = ? RETURNING v"),
        value: store.query("SELECT v FROM rows WHERE k = ?")
      }
    }

    it("runs the transactions of two partitions at the same time, and one on a locked row waits for its commit", async () => {
      const { store } = s
      const { lock, bump, value } = await setup()
      const events: Array<string> = []
      const locked = await Effect.runPromise(Deferred.make<void>())
      const release = await Effect.runPromise(Deferred.make<void>())
      const a = store.transaction(
        Effect.gen(function* () {
          yield* lock.get(1)
          events.push("A locked 1")
          yield* Deferred.succeed(locked, undefined)
          yield* Deferred.await(release)
          yield* bump.run(1)
          events.push("A commits")
        })
      )
      await Effect.runPromise(Deferred.await(locked))
      // B, on another row, commits while A is open.
      const b = await store.transaction(
        Effect.gen(function* () {
          yield* lock.get(2)
          return Number((yield* bump.get(2))?.v)
        })
      )
      events.push("B committed")
      expect(b).toBe(1)
      expect(Number((await store.run(value.get(2)))?.v)).toBe(1)
      // C, on A's row, waits.
      let cDone = false
      const c = store
        .transaction(
          Effect.gen(function* () {
            const seen = Number((yield* lock.get(1))?.v)
            events.push(`C locked 1 and saw ${seen}`)
            yield* bump.run(1)
            return seen
          })
        )
        .finally(() => void (cDone = true))
      await new Promise((resolve) => setTimeout(resolve, 150))
      expect(cDone).toBe(false)
      events.push("releasing A")
      await Effect.runPromise(Deferred.succeed(release, undefined))
      await a
      events.push("A committed")
      // READ COMMITTED: C's locking read sees A's committed write.
      expect(await c).toBe(1)
      // (Whether the test sees A's promise settle before C's lock is the event loop's business.)
      expect(events.slice(0, 4)).toEqual(["A locked 1", "B committed", "releasing A", "A commits"])
      expect(events.slice(4).sort()).toEqual(["A committed", "C locked 1 and saw 1"])
      expect(Number((await store.run(value.get(1)))?.v)).toBe(2)
    })

    it("a lock wait past lockTimeoutMs fails with a conflict (LockTimeoutError) that isConflict recognises", async () => {
      const { store } = s
      const { lock, bump } = await setup()
      const impatient = await s.another({ lockTimeoutMs: 100 })
      const locked = await Effect.runPromise(Deferred.make<void>())
      const release = await Effect.runPromise(Deferred.make<void>())
      const holder = store.transaction(
        Effect.gen(function* () {
          yield* lock.get(3)
          yield* Deferred.succeed(locked, undefined)
          yield* Deferred.await(release)
        })
      )
      await Effect.runPromise(Deferred.await(locked))
      const error = await failure(impatient.transaction(Effect.andThen(lock.get(3), bump.run(3))))
      await Effect.runPromise(Deferred.succeed(release, undefined))
      await holder
      expect(reasonOf(error)).toBe("LockTimeoutError")
      expect(Postgres.isConflict(error)).toBe(true)
      expect((error as SqlError.SqlError).reason.isRetryable).toBe(true)
      // Run again, it goes through.
      expect(Number((await impatient.transaction(Effect.andThen(lock.get(3), bump.get(3))))?.v)).toBe(1)
    })

    it("a deadlock fails one of the two transactions with a conflict (DeadlockError) that isConflict recognises; the other commits", async () => {
      const { store } = s
      const { lock, bump } = await setup()
      const first = await Effect.runPromise(Deferred.make<void>())
      const second = await Effect.runPromise(Deferred.make<void>())
      const fast = store.query("SET LOCAL deadlock_timeout = '50ms'")
      const crossing = (mine: number, theirs: number, iHold: Deferred.Deferred<void>, theyHold: Deferred.Deferred<void>) =>
        store.transaction(
          Effect.gen(function* () {
            yield* fast.run()
            yield* lock.get(mine)
            yield* Deferred.succeed(iHold, undefined)
            yield* Deferred.await(theyHold)
            yield* lock.get(theirs)
            yield* bump.run(mine)
            yield* bump.run(theirs)
          })
        )
      const outcomes = await Promise.allSettled([crossing(1, 2, first, second), crossing(2, 1, second, first)])
      expect(outcomes.map((o) => o.status).sort()).toEqual(["fulfilled", "rejected"])
      const lost = outcomes.find((o) => o.status === "rejected")!.reason
      expect(reasonOf(lost)).toBe("DeadlockError")
      expect(Postgres.isConflict(lost)).toBe(true)
    })

    it("for any burst of group calls in lanes, some failing: a transaction holds at most one call of a lane, in lane order; each call that did not fail commits once, each that failed not at all", async () => {
      const { store } = s
      await store.migrate([{ name: "test/laned", sql: "CREATE TABLE laned (n BIGINT PRIMARY KEY, lane TEXT NOT NULL, tx BIGINT NOT NULL, at BIGINT NOT NULL)" }])
      // Each call's row: its transaction (txid_current()) and its place in it (a sequence).
      await store.migrate([{ name: "test/laned_seq", sql: "CREATE SEQUENCE laned_at" }])
      const record = store.query("INSERT INTO laned (n, lane, tx, at) VALUES (?, ?, txid_current(), nextval('laned_at'))")
      const since = store.query("SELECT n, lane, tx, at FROM laned WHERE n >= ? ORDER BY at")
      let next = 0
      await fc.assert(
        fc.asyncProperty(fc.array(fc.record({ lane: fc.constantFrom("a", "b", "c", "d"), fails: fc.constantFrom(false, false, false, true) }), { minLength: 1, maxLength: 24 }), async (calls) => {
          const start = next
          next += calls.length
          const outcomes = await Promise.allSettled(
            calls.map((c, i) =>
              store.group(
                Effect.andThen(record.run(start + i, c.lane), c.fails ? record.run(start + i, c.lane) : Effect.void), // a unique violation, found at the commit
                c.lane
              )
            )
          )
          expect(outcomes.map((o) => o.status)).toEqual(calls.map((c) => (c.fails ? "rejected" : "fulfilled")))
          const rows = (await store.run(since.all(start))).map((r) => ({ n: Number(r.n), lane: String(r.lane), tx: Number(r.tx) }))
          expect(rows.map((r) => r.n).sort((a, b) => a - b)).toEqual(calls.flatMap((c, i) => (c.fails ? [] : [start + i])))
          const byTx = new Map<number, Array<string>>()
          for (const r of rows) byTx.set(r.tx, [...(byTx.get(r.tx) ?? []), r.lane])
          for (const lanes of byTx.values()) expect(lanes).toEqual([...new Set(lanes)].sort())
        }),
        { numRuns: transactionRuns(engine) }
      )
    })

    // Own lanes (`ownLaneOf`, Consumer's for a processor that says ownRows) run
    // side by side in their group (Store.ts `together`), shared lanes one after another in lane order.
    const Fails = ["no", "fail", "violation", "blind violation", "savepoint"] as const
    interface Side {
      readonly own: boolean
      readonly shared: string
      readonly waits: number
      readonly fails: (typeof Fails)[number]
    }
    const side = (fails: fc.Arbitrary<Side["fails"]>) => fc.record({ own: fc.boolean(), shared: fc.constantFrom("a", "b", "c"), waits: fc.integer({ min: 0, max: 3 }), fails })
    let sidesNext = 0
    /**
     * Runs `calls` as one burst of group calls: each writes a row a step (blind, then `waits`
     * waited for) and fails as it says. Checks each call's outcome, that each that did not fail
     * committed whole and each that failed not at all, and that a transaction's shared lanes ran
     * one call after another, in lane order; gives the rows by transaction and the writes of the
     * sockets to the server meanwhile.
     */
    const burst = async (calls: ReadonlyArray<Side>) => {
      const { store } = s
      await store.migrate([{ name: "test/sides", sql: "CREATE TABLE sides (n BIGINT NOT NULL, step INTEGER NOT NULL, lane TEXT NOT NULL, tx BIGINT NOT NULL, at BIGINT NOT NULL, PRIMARY KEY (n, step)); CREATE SEQUENCE sides_at" }])
      // Blind: goes out with the next statement waited for (PgPool.ts); `read` is waited for.
      const write = store.query("INSERT INTO sides (n, step, lane, tx, at) VALUES (?, ?, ?, txid_current(), nextval('sides_at'))")
      const read = store.query("INSERT INTO sides (n, step, lane, tx, at) VALUES (?, ?, ?, txid_current(), nextval('sides_at')) RETURNING tx")
      const since = store.query("SELECT n, step, lane, tx FROM sides WHERE n >= ? ORDER BY at")
      // The writes of every socket to the server while the burst runs (one `_write` or `_writev` a
      // write), but a new connection's startup message (protocol 3.0; the pool opens one when all are lent).
      const sockets = net.Socket.prototype as unknown as Record<"_write" | "_writev", (this: net.Socket, ...args: Array<unknown>) => void>
      let written = 0
      const startup = (chunk: unknown) => Buffer.isBuffer(chunk) && chunk.length >= 8 && chunk.readInt32BE(4) === 0x30000
      const originals = { _write: sockets._write, _writev: sockets._writev }
      for (const name of ["_write", "_writev"] as const)
        sockets[name] = function (this: net.Socket, ...args: Array<unknown>) {
          const first = name === "_write" ? args[0] : (args[0] as ReadonlyArray<{ readonly chunk: unknown }>)[0]?.chunk
          if (this.remotePort === 5432 && !startup(first)) written++
          return originals[name].apply(this, args)
        }
      const start = sidesNext
      sidesNext += calls.length
      const runs = calls.map(() => 0)
      const failed = calls.map(() => 0)
      let outcomes: Array<PromiseSettledResult<number>>
      try {
        outcomes = await Promise.allSettled(
          calls.map((c, i) => {
            const n = start + i
            // The row keeps `own` for an own lane (text holds no NUL).
            const lane = c.own ? "own" : c.shared
            return store.group(
              Effect.gen(function* () {
                runs[i]! += 1
                let step = 0
                yield* write.run(n, step++, lane)
                for (let k = 0; k < c.waits; k++) yield* read.get(n, step++, lane)
                if (c.fails === "fail") {
                  failed[i]! += 1
                  return yield* Effect.fail(new Boom("boom"))
                }
                if (c.fails === "violation") yield* read.get(n, 0, lane)
                if (c.fails === "blind violation") yield* write.run(n, 0, lane)
                // A nested transaction whose failure the call would let pass: it must not fail unseen.
                if (c.fails === "savepoint" && Exit.isSuccess(yield* Effect.exit(store.sql.withTransaction(write.run(n, step, lane))))) step++
                return step
              }),
              c.own ? ownLaneOf("own", String(n)) : c.shared
            )
          })
        )
      } finally {
        Object.assign(sockets, originals)
      }
      expect(outcomes.map((o) => o.status)).toEqual(calls.map((c) => (c.fails === "no" || c.fails === "savepoint" ? "fulfilled" : "rejected")))
      outcomes.forEach((o, i) => {
        if (o.status === "fulfilled") return expect(o.value, `steps of call ${i}`).toBe(calls[i]!.waits + (calls[i]!.fails === "savepoint" ? 2 : 1))
        if (calls[i]!.fails === "fail") expect(o.reason).toBeInstanceOf(Boom)
        else expect(reasonOf(o.reason)).toBe("UniqueViolation")
      })
      // A call fails once an attempt; it may run twice: a run cut short by another call's failure
      // (side by side, or a violation known only when it went out) runs again, in its savepoint.
      calls.forEach((_, i) => expect(runs[i], `runs of call ${i}`).toBeLessThanOrEqual(2))
      calls.forEach((c, i) => expect(failed[i], `failures of call ${i}`).toBe(c.fails === "fail" ? 1 : 0))
      const rows = (await store.run(since.all(start))).map((r) => ({ n: Number(r.n), step: Number(r.step), lane: String(r.lane), tx: Number(r.tx) }))
      // Each call that did not fail whole (each of its steps once), each that failed not at all.
      const expected = outcomes.flatMap((o, i) => (o.status === "fulfilled" ? Array.from({ length: o.value }, (_, step) => `${start + i}:${step}`) : []))
      expect(rows.map((r) => `${r.n}:${r.step}`).sort()).toEqual(expected.sort())
      const byTx = new Map<number, Array<number>>()
      for (const r of rows) byTx.set(r.tx, [...(byTx.get(r.tx) ?? []), r.n - start])
      for (const tx of byTx.values()) {
        // The shared lanes' calls one after another, in lane order, one call a lane.
        const shared = tx.filter((i) => !calls[i]!.own)
        const runsOf = shared.filter((i, k) => k === 0 || shared[k - 1] !== i).map((i) => calls[i]!.shared)
        expect(runsOf).toEqual([...new Set(runsOf)].sort())
      }
      return { written, transactions: [...byTx.values()].map((tx) => [...new Set(tx)]) }
    }

    it("for any burst of group calls in own and shared lanes, some failing: each call that did not fail commits once and whole, each that failed not at all; shared lanes in lane order", async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(side(fc.constantFrom("no", "no", "no", "fail", "violation", "blind violation", "savepoint")), { minLength: 1, maxLength: 16 }), async (calls) => void (await burst(calls))),
        { numRuns: transactionRuns(engine) }
      )
    })

    it("for any burst of group calls in own and shared lanes: the statements a transaction's calls wait for go out together, a write for its longest strand's and one for its COMMIT", async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(side(fc.constant("no")), { minLength: 1, maxLength: 16 }), async (calls) => {
          const { written, transactions } = await burst(calls)
          // A strand: the shared lanes' calls one after another, or one own lane's call. One write a
          // statement waited for would be the sum of the calls' waits.
          const longest = (tx: ReadonlyArray<number>) =>
            Math.max(
              tx.filter((i) => !calls[i]!.own).reduce((sum, i) => sum + calls[i]!.waits, 0),
              ...tx.filter((i) => calls[i]!.own).map((i) => calls[i]!.waits)
            )
          expect(written, `writes of ${transactions.length} transactions`).toBeLessThanOrEqual(transactions.reduce((sum, tx) => sum + longest(tx) + 1, 0))
        }),
        { numRuns: transactionRuns(engine) }
      )
    })
  })
})

// On SQLite a statement of `query` runs straight on the connection, in one step of the interpreter
// (Store.ts `query`, Sqlite.ts `executeNow`): inside a transaction on its connection, outside one
// under the connection's semaphore. It must behave as effect/sql's client statement does.
describe.each(engines.filter((e) => e.dialect === "sqlite"))("SQLite: statements in a transaction and outside one, on $name", (engine) => {
  const inside = useStore(engine)
  const outside = useStore(engine)
  const client = useStore(engine)
  const schema = [{ name: "test/same", sql: "CREATE TABLE same (k INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, n INTEGER)" }]

  it("gives the same rows, and fails with the same typed errors, as the client's path, for all statement sequences", async () => {
    await inside.store.migrate(schema)
    await outside.store.migrate(schema)
    await client.store.migrate(schema)
    type Outcome = { readonly rows: ReadonlyArray<Record<string, unknown>> } | { readonly error: string; readonly message: string }
    const outcome = async (run: Promise<ReadonlyArray<Record<string, unknown>>>): Promise<Outcome> =>
      run.then(
        (rows) => ({ rows: rows.map((r) => ({ ...r })) }),
        (error: unknown) => ({ error: reasonOf(error), message: error instanceof Error ? error.message : String(error) })
      )
    const key = fc.integer({ min: 0, max: 6 })
    const op = fc.oneof(
      fc.record({ text: fc.constant("INSERT INTO same (k, name, n) VALUES (?, ?, ?) RETURNING k, name, n"), params: fc.tuple(key, fc.constantFrom("a", "b", "c"), fc.option(fc.integer(), { nil: null })) }),
      fc.record({ text: fc.constant("INSERT INTO same (k, name) VALUES (?, ?)"), params: fc.tuple(key, fc.constantFrom("a", "d", null)) }),
      fc.record({ text: fc.constant("UPDATE same SET n = COALESCE(n, 0) + ? WHERE k = ? RETURNING n"), params: fc.tuple(fc.integer({ min: -5, max: 5 }), key) }),
      fc.record({ text: fc.constant("SELECT k, name, n FROM same WHERE k >= ? ORDER BY k"), params: fc.tuple(key) }),
      fc.record({ text: fc.constant("DELETE FROM same WHERE k = ?"), params: fc.tuple(key) }),
      fc.record({ text: fc.constant("SELECT * FROM no_such_table WHERE k = ?"), params: fc.tuple(key) })
    )
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 12 }), async (ops) => {
        for (const { text, params } of ops) {
          // Each statement its own transaction in one store, autocommitted in the others: the same states.
          const expected = await outcome(client.store.run(client.store.sql.unsafe<Record<string, unknown>>(text, params).withoutTransform))
          expect(await outcome(inside.store.transaction(inside.store.query(text).all(...params)))).toEqual(expected)
          expect(await outcome(outside.store.run(outside.store.query(text).all(...params)))).toEqual(expected)
        }
        const all = "SELECT k, name, n FROM same ORDER BY k"
        const rows = await client.store.run(client.store.sql.unsafe(all).withoutTransform)
        expect(await inside.store.run(inside.store.query(all).all())).toEqual(rows)
        expect(await outside.store.run(outside.store.query(all).all())).toEqual(rows)
      }),
      { numRuns: runs }
    )
  })

  it("a statement outside a transaction, and another transaction, wait until a running transaction has ended", async () => {
    const { store } = inside
    const insert = store.query("INSERT INTO same (k, name) VALUES (?, ?)")
    const read = store.query("SELECT name FROM same WHERE k = ?")
    await store.transaction(store.query("DELETE FROM same").run())
    const inserted = await Effect.runPromise(Deferred.make<void>())
    const release = await Effect.runPromise(Deferred.make<void>())
    const events: Array<string> = []
    // A group item that waits (an asynchronous handler) holds the transaction open.
    const open = store.group(
      Effect.gen(function* () {
        yield* insert.run(100, "held")
        yield* Deferred.succeed(inserted, undefined)
        yield* Deferred.await(release)
        yield* insert.run(101, "after the wait")
        events.push("transaction ends")
      })
    )
    await Effect.runPromise(Deferred.await(inserted))
    const outsideRead = store.run(read.get(100)).then((row) => {
      events.push("read")
      return row?.name
    })
    const other = store.transaction(Effect.map(read.all(101), (rows) => rows.length)).then((n) => {
      events.push("other transaction")
      return n
    })
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(events).toEqual([])
    await Effect.runPromise(Deferred.succeed(release, undefined))
    await open
    // Both saw the transaction committed: the read its first row, the other transaction its last.
    expect(await outsideRead).toBe("held")
    expect(await other).toBe(1)
    expect(events[0]).toBe("transaction ends")
    expect(events.slice(1).sort()).toEqual(["other transaction", "read"])
  })
})

describe("boundValues", () => {
  /** A statement's values as they were bound before: a copy of each, undefined as NULL, a boolean as 0 or 1. */
  const reference = (values: ReadonlyArray<unknown>) => values.map((v) => (v === undefined ? null : typeof v === "boolean" ? (v ? 1 : 0) : v))
  const value = fc.oneof(fc.constant(undefined), fc.constant(null), fc.boolean(), fc.integer(), fc.double(), fc.string(), fc.bigInt(), fc.uint8Array({ maxLength: 4 }))
  it("for all values, binds what the copy made value for value, and copies only when one changes", () => {
    fc.assert(
      fc.property(fc.array(value, { maxLength: 12 }), (values) => {
        const out = boundValues(values)
        expect(out).toEqual(reference(values))
        const changes = values.some((v) => v === undefined || typeof v === "boolean")
        expect(out === values).toBe(!changes)
        // The caller's values are left as they were.
        if (changes) expect(values.some((v) => v === undefined || typeof v === "boolean")).toBe(true)
      }),
      { numRuns: 2000 }
    )
  })
})
