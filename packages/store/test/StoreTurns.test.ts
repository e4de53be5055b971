/**
 * SQLite: work on the store runs to its end in one turn of the event loop, however many steps of
 * effect's interpreter it takes (the fiber would otherwise yield after 2,048, by setImmediate,
 * keeping its transaction and the one connection across turns: an ingress append ready at once
 * then waited for the group to resume, behind the turn's other work, and its PUBACK with it).
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import { Effect } from "effect"
import { Sqlite, type Store } from "@baton/store"

const runs = Math.min(20, Number(process.env.BATON_PROPERTY_RUNS ?? 20))

/** `n` steps of the interpreter that do nothing. */
const steps = (n: number) => Effect.forEach(Array.from({ length: n }), () => Effect.void, { discard: true })

describe.each([
  { name: "SQLite in memory", file: false },
  { name: "SQLite on a file", file: true }
])("$name: a transaction in one turn", ({ file }) => {
  let store: Store
  let dir: string | undefined
  beforeAll(async () => {
    dir = file ? mkdtempSync(join(tmpdir(), "baton-turns-")) : undefined
    store = await Sqlite.open({ path: dir === undefined ? ":memory:" : join(dir, "store.db") })
    await store.migrate([{ name: "test/turns", sql: "CREATE TABLE turns (k INTEGER PRIMARY KEY)" }])
  })
  afterAll(async () => {
    await store.close()
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
  })

  it("runs no other callback of the event loop between a group's first statement and its commit, for all group sizes and step counts", async () => {
    const insert = store.query("INSERT INTO turns (k) VALUES (?)")
    let next = 0
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 3000 }), { minLength: 1, maxLength: 6 }), async (counts) => {
        let began = false
        let interleaved = false
        const seen: Array<boolean> = []
        await Promise.all(
          counts.map((n) =>
            store.group(
              Effect.gen(function* () {
                if (!began) {
                  began = true
                  // Runs at the next turn: before the commit only if the transaction yielded.
                  setImmediate(() => (interleaved = true))
                }
                yield* insert.run(next++)
                yield* steps(n)
                seen.push(interleaved)
              })
            )
          )
        )
        expect(seen).toEqual(counts.map(() => false))
      }),
      { numRuns: runs }
    )
  })

  it("settles a group's items in the turn of its commit, for all group sizes and step counts", async () => {
    // Past 2,048 steps the group's fiber yielded once its transaction had ended (outside the
    // store's own context), and its items settled a turn later, behind that turn's other work.
    const insert = store.query("INSERT INTO turns (k) VALUES (?)")
    let next = 1_000
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 3000 }), { minLength: 1, maxLength: 6 }), async (counts) => {
        let settled = false
        let otherTurnFirst: boolean | undefined
        let began = false
        const all = Promise.all(
          counts.map((n) =>
            store.group(
              Effect.gen(function* () {
                if (!began) {
                  began = true
                  setImmediate(() => (otherTurnFirst = !settled))
                }
                yield* insert.run(next++)
                yield* steps(n)
              })
            )
          )
        )
        await all.then(() => (settled = true))
        await new Promise((resolve) => setImmediate(resolve))
        expect({ counts, otherTurnFirst }).toEqual({ counts, otherTurnFirst: false })
      }),
      { numRuns: runs }
    )
  })

  it("settles a transaction in the turn of its commit, however many steps it takes", async () => {
    // An ingress append is one (its PUBACK waits for it): past 2,048 steps its promise settled a
    // turn later, behind that turn's other work.
    const insert = store.query("INSERT INTO turns (k) VALUES (?)")
    let next = 2_000_000
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 5000 }), async (n) => {
        let settled = false
        let otherTurnFirst: boolean | undefined
        await store
          .transaction(
            Effect.gen(function* () {
              setImmediate(() => (otherTurnFirst = !settled))
              yield* insert.run(next++)
              yield* steps(n)
            })
          )
          .then(() => (settled = true))
        await new Promise((resolve) => setImmediate(resolve))
        expect({ n, otherTurnFirst }).toEqual({ n, otherTurnFirst: false })
      }),
      { numRuns: runs }
    )
  })

  it("lets an append wait for no other turn's work while a long group holds the connection", async () => {
    const insert = store.query("INSERT INTO turns (k) VALUES (?)")
    const order: Array<string> = []
    const group = store.group(
      Effect.gen(function* () {
        yield* insert.run(1_000_000)
        // Another turn's work, queued while the group runs.
        setImmediate(() => order.push("other turn"))
        // An append ready at once (as the ingress's, in a microtask after a publish is parsed).
        queueMicrotask(() => void store.transaction(Effect.sync(() => order.push("append"))))
        yield* steps(5000)
        order.push("group")
      })
    )
    await group
    await new Promise((resolve) => setImmediate(resolve))
    expect(order).toEqual(["group", "append", "other turn"])
  })
})
