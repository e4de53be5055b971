/**
 * SQLite's outbox and ingress log numbered by plain rowids (runtime/013 and 014), not
 * AUTOINCREMENT: a rowid is one more than the largest in the table, so the numbers of the last
 * entries deleted come again. Over any sequence of adds, sends, appends, forwards, prunes and
 * restarts: no number comes again while something still refers to it (the relay's position in
 * this process for the outbox; a seen envelope id for the ingress log), and the migrations keep
 * what a database of the previous schema holds. The delete of sent offered entries rides with the
 * next add's transaction, and once that add has committed they are not deleted again in a commit
 * of their own.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import { Effect } from "effect"
import { IngressLog, Outbox, Sqlite, type Store } from "@baton/store"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 50)
const dir = mkdtempSync(join(tmpdir(), "baton-sequences-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
let files = 0
const freshPath = () => join(dir, `store-${++files}.db`)
/** A store on the file at `path`, checkpointed by SQLite itself (no worker to start per run). */
const openAt = (path: string): Promise<Store> => Sqlite.open({ path, checkpointIntervalMs: 0 })
/** Runs `body` on a fresh database file, removed after. */
const onFreshFile = async (body: (path: string) => Promise<void>) => {
  const path = freshPath()
  try {
    await body(path)
  } finally {
    rmSync(path, { force: true })
  }
}
/** `body` holds for every sequence of operations drawn from `op`. */
const everySequence = <O>(op: fc.Arbitrary<O>, body: (ops: ReadonlyArray<O>) => Promise<void>) =>
  fc.assert(fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 30 }), body), { numRuns: runs })

const schemaOf = async (store: Store, table: string) => String((await store.run(store.query("SELECT sql FROM sqlite_schema WHERE name = ?").get(table)))?.sql)
const sequenceRows = async (store: Store) =>
  (await store.run(store.query("SELECT name FROM sqlite_schema WHERE name = 'sqlite_sequence'").get())) === undefined
    ? []
    : (await store.run(store.query("SELECT name, seq FROM sqlite_sequence ORDER BY name").all())).map((r) => `${String(r.name)}=${String(r.seq)}`)

/** A store whose `table` is of the previous schema (numbered by AUTOINCREMENT): every migration but `name` applied. */
const previousSchema = async (migrations: ReadonlyArray<{ readonly name: string }>, name: string, table: string): Promise<Store> => {
  const store = await openAt(freshPath())
  await store.migrate((migrations as typeof Outbox.migrations).filter((m) => m.name !== name))
  expect(await schemaOf(store, table)).toMatch(/AUTOINCREMENT/)
  return store
}

/**
 * Adds offered entries (`added`) in one transaction, rolled back when `fails`: their entries, read
 * after the commit as the relay's offer reads them, or undefined.
 */
const addOffered = async (store: Store, outbox: Outbox.Outbox, payloads: ReadonlyArray<string>, fails: boolean): Promise<ReadonlyArray<Outbox.Entry> | undefined> => {
  const written = store.transaction(
    Effect.gen(function* () {
      const entries: Array<() => Outbox.Entry> = []
      for (const p of payloads) entries.push(yield* outbox.added("events/x", p))
      if (fails) return yield* Effect.fail(new Error("rolled back"))
      return entries
    })
  )
  if (fails) {
    await expect(written).rejects.toThrow("rolled back")
    return undefined
  }
  return (await written).map((e) => e())
}

describe("SQLite outbox numbers", () => {
  it("never gives again, in one process, a number it has deleted, and numbers entries in commit order, over adds, sends, failed adds and restarts", async () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant("add" as const), n: fc.integer({ min: 1, max: 3 }), fails: fc.boolean(), offered: fc.boolean() }),
      fc.record({ kind: fc.constant("send" as const), n: fc.integer({ min: 1, max: 4 }) }),
      fc.record({ kind: fc.constant("restart" as const) })
    )
    await everySequence(op, (ops) =>
      onFreshFile(async (path) => {
        let store = await openAt(path)
        let outbox = await Outbox.make(store)
        /** Numbers deleted by this process (the relay may still hold them as its position). */
        let deleted = new Set<number>()
        let highest = 0
        /** What the model says is unsent, in commit order. */
        let unsent: Array<string> = []
        let n = 0
        try {
          for (const o of ops) {
            if (o.kind === "restart") {
              await store.close()
              store = await openAt(path)
              outbox = await Outbox.make(store)
              deleted = new Set()
              highest = 0
            } else if (o.kind === "add") {
              const payloads = Array.from({ length: o.n }, () => `m${++n}`)
              const written = store.transaction(
                Effect.gen(function* () {
                  const entries: Array<() => Outbox.Entry> = []
                  for (const p of payloads) {
                    if (o.offered) entries.push(yield* outbox.added("events/x", p))
                    else yield* outbox.add("events/x", p)
                  }
                  if (o.fails) return yield* Effect.fail(new Error("rolled back"))
                  return entries
                })
              )
              if (o.fails) {
                await expect(written).rejects.toThrow("rolled back")
                continue
              }
              for (const entry of await written) {
                const { seq } = entry()
                expect(deleted.has(seq)).toBe(false)
                expect(seq).toBeGreaterThan(highest)
              }
              unsent.push(...payloads)
            } else {
              const pending = await outbox.pending(o.n)
              expect(pending.map((e) => e.payload)).toEqual(unsent.slice(0, o.n))
              if (pending.length === 0) continue
              await outbox.sent(pending[0]!.seq, pending.at(-1)!.seq)
              for (const e of pending) deleted.add(e.seq)
              unsent = unsent.slice(pending.length)
            }
            // Every number in the table is above every number deleted in this process.
            const all = await outbox.pending(1000)
            expect(all.map((e) => e.payload)).toEqual(unsent)
            for (const e of all) expect(deleted.has(e.seq)).toBe(false)
            const top = Math.max(0, ...deleted)
            for (const e of all) expect(e.seq).toBeGreaterThan(top)
            highest = Math.max(highest, ...all.map((e) => e.seq))
          }
        } finally {
          await store.close()
        }
      })
    )
  })

  it("an outbox of the previous schema (AUTOINCREMENT) keeps its entries and numbers, and numbers new ones above them", async () => {
    const store = await previousSchema(Outbox.migrations, "runtime/013-outbox-rowid-sqlite", "outbox")
    try {
      const insert = store.query("INSERT INTO outbox (topic, payload, qos, created_at, instance) VALUES ('events/x', ?, ?, 'x', ?)")
      await store.transaction(Effect.forEach([["a", 1, ""], ["b", 0, "other"], ["c", 1, ""], ["d", 1, ""]] as const, ([p, q, i]) => insert.run(p, q, i), { discard: true }))
      await store.run(store.query("DELETE FROM outbox WHERE payload = 'd'").run())
      expect(await sequenceRows(store)).toEqual(["outbox=4"])
      const outbox = await Outbox.make(store)
      expect(await schemaOf(store, "outbox")).not.toMatch(/AUTOINCREMENT/)
      expect(await sequenceRows(store)).toEqual([])
      expect((await outbox.pending(10)).map((e) => [e.seq, e.payload, e.qos])).toEqual([
        [1, "a", 1],
        [3, "c", 1]
      ])
      expect(await outbox.size()).toBe(2)
      const entry = await store.transaction(outbox.added("events/y", "e"))
      expect(entry().seq).toBe(4)
      await outbox.sent(1, 4)
      const other = await Outbox.make(store, { instance: "other" })
      expect((await other.pending(10)).map((e) => [e.seq, e.payload, e.qos])).toEqual([[2, "b", 0]])
      // 3 and 4 were sent here: not given again while this process runs.
      expect((await store.transaction(outbox.added("events/y", "f")))().seq).toBe(5)
      expect(await sequenceRows(store)).toEqual([])
    } finally {
      await store.close()
    }
  })
})

describe("SQLite outbox: the delete of sent offered entries goes with the next add", () => {
  it("never reads a sent entry back, deletes no unsent one, and leaves no sent one behind on close, over offered adds, sends, drains, failed adds and restarts", async () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant("add" as const), n: fc.integer({ min: 1, max: 3 }), fails: fc.boolean() }),
      fc.record({ kind: fc.constant("send" as const), n: fc.integer({ min: 1, max: 3 }) }),
      fc.record({ kind: fc.constant("drain" as const), n: fc.integer({ min: 1, max: 4 }) }),
      fc.record({ kind: fc.constant("wait" as const) }),
      fc.record({ kind: fc.constant("size" as const) }),
      fc.record({ kind: fc.constant("restart" as const) })
    )
    const rows = async (store: Store) => (await store.run(store.query("SELECT payload FROM outbox ORDER BY seq").all())).map((r) => String(r.payload))
    await everySequence(op, (ops) =>
      onFreshFile(async (path) => {
        let store = await openAt(path)
        let outbox = await Outbox.make(store)
        /** The model: unsent entries in commit order, and those of them offered to this process's relay (the fast path publishes them without a read). */
        let unsent: Array<string> = []
        let offered: Array<Outbox.Entry> = []
        let n = 0
        try {
          for (const o of ops) {
            if (o.kind === "restart") {
              await store.close()
              store = await openAt(path)
              // Closed: what was sent is gone from the table, what was not is all there.
              expect(await rows(store)).toEqual(unsent)
              outbox = await Outbox.make(store)
              offered = []
            } else if (o.kind === "add") {
              const payloads = Array.from({ length: o.n }, () => `m${++n}`)
              const entries = await addOffered(store, outbox, payloads, o.fails)
              if (entries === undefined) continue
              // Offered in order when nothing older is unsent or offered (the relay's fast path).
              if (offered.length === unsent.length) offered.push(...entries)
              unsent.push(...payloads)
            } else if (o.kind === "send") {
              // The relay publishes offered entries in order and marks each run sent.
              const run = offered.splice(0, o.n)
              if (run.length === 0) continue
              await outbox.sent(run[0]!.seq, run.at(-1)!.seq)
              unsent = unsent.slice(run.length)
            } else if (o.kind === "drain") {
              // A drain reads what is unsent (never an entry already sent) and sends it.
              const read = await outbox.pending(o.n)
              expect(read.map((e) => e.payload)).toEqual(unsent.slice(0, o.n))
              offered = offered.slice(Math.min(offered.length, read.length))
              if (read.length === 0) continue
              await outbox.sent(read[0]!.seq, read.at(-1)!.seq)
              unsent = unsent.slice(read.length)
            } else if (o.kind === "size") {
              expect(await outbox.size()).toBe(unsent.length)
            } else {
              await new Promise((r) => setTimeout(r, 10))
              // Left alone, the sent entries are deleted on their own.
              expect(await rows(store)).toEqual(unsent)
            }
            // Whatever was sent and not deleted yet, no unsent entry is gone.
            const left = await rows(store)
            expect(left.slice(left.length - unsent.length)).toEqual(unsent)
          }
        } finally {
          await store.close()
        }
      })
    )
  })
})

describe("SQLite outbox: where the delete of a sent offered entry goes", () => {
  it("goes with the next add's transaction, one statement more in it and no commit of its own", async () => {
    const store = await openAt(freshPath())
    try {
      const outbox = await Outbox.make(store)
      const rows = async () => (await store.run(store.query("SELECT payload FROM outbox ORDER BY seq").all())).map((r) => String(r.payload))
      const first = (await store.transaction(outbox.added("reply/c", "a")))()
      await outbox.sent(first.seq, first.seq)
      expect(await rows()).toEqual(["a"])
      const before = store.statements()
      await store.transaction(outbox.added("reply/c", "b"))
      // BEGIN, the delete, the insert, COMMIT.
      expect(store.statements() - before).toBe(4)
      expect(await rows()).toEqual(["b"])
      // An entry a drain read is deleted at once.
      const [second] = await outbox.pending(10)
      await outbox.sent(second!.seq, second!.seq)
      expect(await rows()).toEqual([])
    } finally {
      await store.close()
    }
  })
})

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
/** Longer than the outbox's delay before a delete of its own (`laterMs`, 5 ms). */
const pastTheDelay = 20
const outboxRows = async (store: Store) => (await store.run(store.query("SELECT payload FROM outbox ORDER BY seq").all())).map((r) => String(r.payload))

describe("SQLite outbox: sent entries an add's committed transaction deleted", () => {
  it("are not deleted again in a commit of their own", async () => {
    const store = await openAt(freshPath())
    try {
      const outbox = await Outbox.make(store)
      const first = (await store.transaction(outbox.added("reply/c", "a")))()
      await outbox.sent(first.seq, first.seq)
      ;(await store.transaction(outbox.added("reply/c", "b")))()
      const before = store.statements()
      await sleep(pastTheDelay)
      expect(store.statements() - before).toBe(0)
      expect(await outboxRows(store)).toEqual(["b"])
    } finally {
      await store.close()
    }
  })

  it("commit nothing of their own after a committed add carried them, and are deleted when none did, for all adds, failed adds, sends and waits", async () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant("add" as const), n: fc.integer({ min: 1, max: 3 }), fails: fc.boolean() }),
      fc.record({ kind: fc.constant("send" as const), n: fc.integer({ min: 1, max: 3 }) }),
      fc.record({ kind: fc.constant("wait" as const) })
    )
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 20 }), async (ops) => {
        const path = freshPath()
        const store = await openAt(path)
        try {
          const outbox = await Outbox.make(store)
          /**
           * The model: unsent entries, offered ones in order; sent runs no add has carried yet, and
           * those a rolled-back add carried (both left to a delete of their own).
           */
          let unsent: Array<string> = []
          const offered: Array<Outbox.Entry> = []
          let uncarried = 0
          let rolledBack = 0
          let n = 0
          for (const o of ops) {
            if (o.kind === "add") {
              const payloads = Array.from({ length: o.n }, () => `m${++n}`)
              const entries = await addOffered(store, outbox, payloads, o.fails)
              if (entries === undefined) {
                rolledBack += uncarried
                uncarried = 0
                continue
              }
              if (offered.length === unsent.length) offered.push(...entries)
              unsent.push(...payloads)
              // It carried the runs sent since the last add.
              uncarried = 0
            } else if (o.kind === "send") {
              const run = offered.splice(0, o.n)
              if (run.length === 0) continue
              await outbox.sent(run[0]!.seq, run.at(-1)!.seq)
              unsent = unsent.slice(run.length)
              uncarried++
            } else {
              const before = store.statements()
              await sleep(pastTheDelay)
              const during = store.statements() - before
              // Left alone: what was sent is gone, with a commit of its own only for what no committed add carried.
              expect(await outboxRows(store)).toEqual(unsent)
              if (uncarried + rolledBack === 0) expect(during).toBe(0)
              uncarried = 0
              rolledBack = 0
            }
            const left = await outboxRows(store)
            expect(left.slice(left.length - unsent.length)).toEqual(unsent)
          }
        } finally {
          await store.close()
          rmSync(path, { force: true })
        }
      }),
      { numRuns: runs }
    )
  })

  it("a run an add carried and rolled back is deleted while adds keep coming (they do not put it off)", async () => {
    const store = await openAt(freshPath())
    try {
      const outbox = await Outbox.make(store)
      const [first] = (await addOffered(store, outbox, ["a"], false))!
      await outbox.sent(first!.seq, first!.seq)
      // This add's transaction carried the delete of "a", and rolled back.
      await addOffered(store, outbox, ["b"], true)
      // Adds every millisecond or so, each in a transaction of its own, none of them sent.
      const t0 = performance.now()
      let n = 0
      let gone = -1
      // Twice the delay would do on a quiet machine; 2 s leaves room for a stall of the loop.
      while (gone < 0 && performance.now() - t0 < 2_000) {
        ;(await store.transaction(outbox.added("events/x", `c${++n}`)))()
        if (gone < 0 && !(await outboxRows(store)).includes("a")) gone = performance.now() - t0
        await sleep(1)
      }
      expect(gone, "ms until the rolled-back delete's run was deleted (-1: not within 2 s)").toBeGreaterThanOrEqual(0)
    } finally {
      await store.close()
    }
  })

  it("wait while adds keep coming: no delete of its own within the delay of an add, and none left once the adds stop, for all sequences of adds, sends and short gaps", async () => {
    /** Below the outbox's delay (`laterMs`, 5 ms), less the event loop's cached clock's lag. */
    const withinTheDelay = 4
    await fc.assert(
      fc.asyncProperty(fc.array(fc.record({ n: fc.integer({ min: 1, max: 2 }), gap: fc.integer({ min: 0, max: 3 }) }), { minLength: 5, maxLength: 25 }), async (steps) => {
        const store = await openAt(freshPath())
        try {
          const outbox = await Outbox.make(store)
          let n = 0
          let previous = Number.NEGATIVE_INFINITY
          for (const step of steps) {
            const added = performance.now()
            const entries = (await store.transaction(Effect.forEach(Array.from({ length: step.n }, () => `m${++n}`), (payload) => outbox.added("reply/c", payload, 0)))).map((entry) => entry())
            const addDone = performance.now()
            await outbox.sent(entries[0]!.seq, entries.at(-1)!.seq)
            const before = store.statements()
            await sleep(step.gap)
            // A delete of its own comes only once the delay has passed since the last add. (One
            // whose timer ran before this add's transaction reached the outbox counts from the
            // add before: on a slow machine, when that was the delay ago, it may commit here.)
            if (performance.now() - added < withinTheDelay && addDone - previous < withinTheDelay) expect(store.statements() - before).toBe(0)
            previous = added
          }
          // No add any more: the last runs go in a commit of their own.
          await sleep(pastTheDelay)
          expect(await outboxRows(store)).toEqual([])
        } finally {
          await store.close()
        }
      }),
      { numRuns: Math.min(runs, 20) }
    )
  })
})

describe("SQLite ingress log numbers", () => {
  it("gives no seen envelope id's number to a new entry, and sees an envelope id once within the window, over appends, forwards, prunes and restarts", async () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant("append" as const), ids: fc.array(fc.constantFrom("a", "b", "c", "d", "e", "f"), { minLength: 1, maxLength: 3 }) }),
      fc.record({ kind: fc.constant("forward" as const), n: fc.integer({ min: 1, max: 4 }) }),
      fc.record({ kind: fc.constant("prune" as const) }),
      fc.record({ kind: fc.constant("restart" as const) })
    )
    await everySequence(op, (ops) =>
      onFreshFile(async (path) => {
        const open = async () => {
          const s = await openAt(path)
          return { store: s, log: await IngressLog.make(s, { maxBytes: 100, previewBytes: 10 }) }
        }
        let { store, log } = await open()
        /** The model: the log's entries (seq, envelope id, forwarded) and the seen ids with the entry's number. */
        let entries: Array<{ readonly seq: number; readonly id: string; forwarded: boolean }> = []
        const seen = new Map<string, number>()
        try {
          for (const o of ops) {
            if (o.kind === "restart") {
              await store.close()
              ;({ store, log } = await open())
            } else if (o.kind === "append") {
              await Promise.all(o.ids.map((id) => log.append("initiate/x", Buffer.from(id), null)))
              const fresh = (await log.unforwarded(1000)).filter((e) => !entries.some((m) => m.seq === e.seq))
              expect(fresh.map((e) => e.payload.toString())).toEqual(o.ids)
              const held = (await store.run(store.query("SELECT seq FROM ingress_seen").all())).map((r) => Number(r.seq))
              for (const e of fresh) {
                // A new number is none a seen envelope id still holds, and above every entry left.
                expect(held).not.toContain(e.seq)
                expect(e.seq).toBeGreaterThan(Math.max(0, ...entries.map((m) => m.seq)))
                entries.push({ seq: e.seq, id: e.payload.toString(), forwarded: false })
              }
            } else if (o.kind === "forward") {
              const batch = await log.unforwarded(o.n)
              expect(batch.map((e) => e.seq)).toEqual(entries.filter((m) => !m.forwarded).slice(0, o.n).map((m) => m.seq))
              const first = await store.transaction(
                Effect.gen(function* () {
                  const first = yield* log.firstSights(batch.map((e) => ({ envelopeId: e.payload.toString(), seq: e.seq })))
                  yield* log.forwarded(...batch.map((e) => e.seq))
                  return first
                })
              )
              const expected = new Set<number>()
              for (const e of batch) {
                const id = e.payload.toString()
                if (!seen.has(id)) {
                  seen.set(id, e.seq)
                  expected.add(e.seq)
                }
                entries.find((m) => m.seq === e.seq)!.forwarded = true
              }
              expect([...first].sort((x, y) => x - y)).toEqual([...expected].sort((x, y) => x - y))
            } else {
              // Everything forwarded so far is past the window.
              const upTo = Math.max(0, ...entries.filter((m) => m.forwarded).map((m) => m.seq))
              const pruned = await log.prune(new Date(Date.now() + 60_000))
              expect(pruned).toBe(entries.filter((m) => m.forwarded && m.seq <= upTo).length)
              entries = entries.filter((m) => !(m.forwarded && m.seq <= upTo))
              for (const [id, seq] of seen) if (seq <= upTo) seen.delete(id)
            }
          }
          expect(await sequenceRows(store)).toEqual([])
        } finally {
          await store.close()
        }
      })
    )
  })

  it("an ingress log of the previous schema (AUTOINCREMENT) keeps its entries, numbers and unforwarded index", async () => {
    const store = await previousSchema(IngressLog.migrations, "runtime/014-ingress-rowid-sqlite", "ingress_log")
    try {
      const insert = store.query("INSERT INTO ingress_log (topic, payload, size, client_id, received_at, forwarded_at, instance) VALUES ('initiate/x', ?, 2, ?, 'x', ?, ?)")
      const rows = [["a", "c1", "2000-01-01T00:00:00.000Z", ""], ["b", null, null, ""], ["c", "c3", null, "other"], ["d", null, "2000-01-01T00:00:00.000Z", ""]] as const
      await store.transaction(Effect.forEach(rows, ([p, c, at, i]) => insert.run(Buffer.from(p), c, at, i), { discard: true }))
      await store.run(store.sql.unsafe("INSERT INTO ingress_seen (envelope_id, seq) VALUES ('env-a', 1), ('env-d', 4)").raw)
      const log = await IngressLog.make(store, { maxBytes: 100, previewBytes: 10 })
      expect(await schemaOf(store, "ingress_log")).not.toMatch(/AUTOINCREMENT/)
      expect(await sequenceRows(store)).toEqual([])
      expect(await schemaOf(store, "ingress_unforwarded")).toBe("CREATE INDEX ingress_unforwarded ON ingress_log (forwarded_at) WHERE forwarded_at IS NULL")
      const plan = await store.run(store.query("EXPLAIN QUERY PLAN SELECT seq FROM ingress_log WHERE forwarded_at IS NULL AND instance = ? ORDER BY seq LIMIT 10").all(""))
      expect(plan.map((r) => String(r.detail)).join("\n")).toContain("ingress_unforwarded")
      expect((await log.unforwarded(10)).map((e) => [e.seq, e.payload.toString(), e.clientId])).toEqual([[2, "b", null]])
      expect(await store.transaction(log.firstSight("env-d", 9))).toBe(false)
      await log.append("initiate/x", Buffer.from("e"), null)
      expect((await log.unforwarded(10)).map((e) => e.seq)).toEqual([2, 5])
      expect(await log.prune(new Date())).toBe(2)
      expect(await store.transaction(log.firstSight("env-a", 9))).toBe(true)
    } finally {
      await store.close()
    }
  })
})
