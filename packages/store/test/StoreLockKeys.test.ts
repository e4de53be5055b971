/**
 * Group calls with lock keys on PostgreSQL (Store.ts `group`'s `keys`, Processor.lockKeys): calls
 * of one lane that lock shared rows share a transaction, which takes an advisory lock on each of
 * their keys first, in one global order. Three instances on one database run such groups at once,
 * each call locking its rows in its own (random) order: no group may deadlock or lose an update.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import { Deferred, Effect } from "effect"
import { SqlError } from "effect/sql"
import { freshSchema } from "@baton/testkit/postgres"
import { Postgres, type Store } from "@baton/store"
import { ownLaneOf } from "../src/Store.ts"

// Every run: a fast one is ~30 ms, and a key order that can deadlock shows in one run of ~10.
const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 50)
const skus = ["A", "B", "C", "D"] as const
const initial = 1_000_000

class Boom extends Error {}
const reasonOf = (error: unknown): string => (SqlError.isSqlError(error) ? error.reason._tag : error instanceof Boom ? "Boom" : `not a SqlError: ${String(error)}`)

describe("PostgreSQL: group calls with lock keys", () => {
  let schema: Awaited<ReturnType<typeof freshSchema>>
  const stores: Array<Store> = []
  beforeAll(async () => {
    schema = await freshSchema()
    for (let i = 0; i < 3; i++) stores.push(await Postgres.open({ url: schema.url }))
    await stores[0]!.migrate([
      {
        name: "test/keyed",
        sql: `CREATE TABLE keyed_stock (sku TEXT PRIMARY KEY, on_hand BIGINT NOT NULL); CREATE TABLE keyed_done (n BIGINT PRIMARY KEY, instance INTEGER NOT NULL); INSERT INTO keyed_stock (sku, on_hand) VALUES ${skus.map((s) => `('${s}', ${initial})`).join(", ")}`
      }
    ])
  })
  afterAll(async () => {
    for (const store of stores) await store.close()
    await schema?.drop()
  })

  interface Call {
    /** The SKUs it takes from, in the order it locks them (none: a call of its own lane, that locks nothing shared). */
    readonly skus: ReadonlyArray<(typeof skus)[number]>
    readonly qty: number
    /** The instance it runs on. */
    readonly on: 0 | 1 | 2
    /** Statements waited for between two rows' locks: the other instance's groups run meanwhile. */
    readonly waits: number
    readonly fails: boolean
  }
  const call: fc.Arbitrary<Call> = fc.record({
    skus: fc.oneof({ weight: 4, arbitrary: fc.shuffledSubarray([...skus], { minLength: 1, maxLength: 3 }) }, { weight: 1, arbitrary: fc.constant([]) }),
    qty: fc.integer({ min: 1, max: 9 }),
    on: fc.constantFrom(0 as const, 1 as const, 2 as const),
    waits: fc.integer({ min: 0, max: 3 }),
    fails: fc.constantFrom(false, false, false, false, true)
  })

  let next = 0
  it(
    "for any burst of calls that lock random overlapping rows in random order, on three instances at once: none deadlocks, waits past the lock timeout or hangs; each that did not fail commits once, and the rows end as a sequential model's",
    async () => {
      const queries = stores.map((store) => ({
        level: store.query(`SELECT on_hand FROM keyed_stock WHERE sku = ?${Postgres.forUpdate(store.dialect)}`),
        // Read, computed, written back: two calls on one row that do not wait for each other lose one's update.
        set: store.query("UPDATE keyed_stock SET on_hand = ? WHERE sku = ?"),
        ping: store.query("SELECT 1 AS one"),
        done: store.query("INSERT INTO keyed_done (n, instance) VALUES (?, ?)")
      }))
      const levels = stores[0]!.query("SELECT sku, on_hand FROM keyed_stock ORDER BY sku")
      const doneSince = stores[0]!.query("SELECT n FROM keyed_done WHERE n >= ? ORDER BY n")
      await fc.assert(
        fc.asyncProperty(fc.array(call, { minLength: 1, maxLength: 32 }), async (calls) => {
          const before = new Map((await stores[0]!.run(levels.all())).map((r) => [String(r.sku), Number(r.on_hand)]))
          const start = next
          next += calls.length
          const burst = Promise.allSettled(
            calls.map((c, i) => {
              const q = queries[c.on]!
              const n = start + i
              const effect = Effect.gen(function* () {
                for (const [k, sku] of c.skus.entries()) {
                  if (k > 0) for (let w = 0; w < c.waits; w++) yield* q.ping.get()
                  const row = yield* q.level.get(sku)
                  yield* q.set.run(Number(row?.on_hand) - c.qty, sku)
                }
                yield* q.done.run(n, c.on)
                if (c.fails) return yield* Effect.fail(new Boom("boom"))
              })
              return c.skus.length === 0
                ? stores[c.on]!.group(effect, ownLaneOf("own", String(n)))
                : stores[c.on]!.group(
                    effect,
                    "stock",
                    c.skus.map((s) => `keyed_stock/${s}`)
                  )
            })
          )
          let timer: NodeJS.Timeout | undefined
          const outcomes = await Promise.race([burst, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error("the burst hung")), 20_000)))]).finally(() => clearTimeout(timer))
          expect(outcomes.map((o) => (o.status === "fulfilled" ? "committed" : reasonOf(o.reason)))).toEqual(calls.map((c) => (c.fails ? "Boom" : "committed")))
          // Each call that did not fail committed once; each that failed not at all.
          expect((await stores[0]!.run(doneSince.all(start))).map((r) => Number(r.n))).toEqual(calls.flatMap((c, i) => (c.fails ? [] : [start + i])))
          // The model: the calls one after another, each taking its quantity from each of its SKUs.
          const model = new Map(before)
          for (const c of calls) if (!c.fails) for (const sku of c.skus) model.set(sku, model.get(sku)! - c.qty)
          const after = new Map((await stores[0]!.run(levels.all())).map((r) => [String(r.sku), Number(r.on_hand)]))
          expect(after).toEqual(model)
        }),
        { numRuns: runs }
      )
    },
    120_000
  )

  /** A group of `store` on `key` that holds its transaction (and the key's advisory lock) open until `release`; `then` runs before its commit. */
  const holdKey = async (store: Store, key: string, then: () => void = () => {}) => {
    const holding = await Effect.runPromise(Deferred.make<void>())
    const release = await Effect.runPromise(Deferred.make<void>())
    const held = store.group(
      Effect.gen(function* () {
        yield* store.query("SELECT 1 AS one").get()
        yield* Deferred.succeed(holding, undefined)
        yield* Deferred.await(release)
        then()
      }),
      "stock",
      [key]
    )
    await Effect.runPromise(Deferred.await(holding))
    return { held, release: () => Effect.runPromise(Deferred.succeed(release, undefined)) }
  }

  it("a call on a key that a group of this instance holds waits outside any transaction for that group's end: a call sent with it commits meanwhile", async () => {
    const store = stores[0]!
    const ping = store.query("SELECT 1 AS one")
    const events: Array<string> = []
    const { held: first, release } = await holdKey(store, "keyed_stock/A", () => events.push("first commits"))
    // Sent in one turn: in one group, the second would wait for the first's advisory lock with it.
    const same = store.group(Effect.andThen(ping.get(), Effect.sync(() => events.push("same key runs"))), "stock", ["keyed_stock/A"])
    const own = store.group(Effect.andThen(ping.get(), Effect.sync(() => events.push("own runs"))), ownLaneOf("own", "meanwhile"))
    let timer: NodeJS.Timeout | undefined
    await Promise.race([own, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error("the call of its own waited for the held key")), 2_000)))]).finally(() => clearTimeout(timer))
    expect(events).toEqual(["own runs"])
    await release()
    await Promise.all([first, same])
    expect(events).toEqual(["own runs", "first commits", "same key runs"])
  })

  it("a store in another schema of the same database does not wait for this one's lock keys: a call on a key of the same name commits while a group here holds it", async () => {
    // PostgreSQL's advisory locks are the database's: without the schema in the lock, the other
    // store's call waited here for the group's end (or its lock timeout).
    const other = await freshSchema()
    const elsewhere = await Postgres.open({ url: other.url })
    try {
      const { held, release } = await holdKey(stores[0]!, "keyed_stock/A")
      let timer: NodeJS.Timeout | undefined
      const call = elsewhere.group(elsewhere.query("SELECT 1 AS one").get(), "stock", ["keyed_stock/A"])
      const outcome = await Promise.race([
        call.then(() => "committed"),
        new Promise<string>((ok) => (timer = setTimeout(() => ok("waited for the other schema's group"), 2_000)))
      ]).finally(() => clearTimeout(timer))
      await release()
      await Promise.allSettled([held, call])
      expect(outcome).toBe("committed")
    } finally {
      await elsewhere.close()
      await other.drop()
    }
  })
})
