/**
 * `Consumer.chain` on PostgreSQL (one instance) into a processor with lock keys
 * (Processor.lockKeys): its run goes into a root's transaction only when the root's group took
 * the advisory locks of every one of its keys first (the root's own lock keys), so that no lock
 * is taken in the middle of a transaction, out of the one order of every group. Root `a` (lock
 * keys of its message's choosing) announces an event to `b` (lock keys of the event's choosing,
 * or none known), while messages of `b` also arrive from outside (queued, in groups of their
 * own). Every run of `b` checks, in its transaction, that the transaction holds the advisory lock
 * of each of its keys (`pg_locks`), and adds one to a counter row per key (read locked, then
 * written: two runs on one row side by side in one transaction would lose one); each message is
 * applied once, each counter counts every run of its key; `b` is chained into exactly when its
 * keys are among its root's, and never when `a` says `ownRows` (its messages run side by side in
 * their group). Real PostgreSQL, a fresh schema per round.
 */
import { afterAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import { Effect } from "effect"
import type { Envelope, Processor } from "@baton/core"
import { advisoryKey } from "../../packages/store/src/Store.ts"
import { alone, arriving, closeHarness, eventsOf, routedConsumers, settled, within } from "./chainPg.ts"

const partitions = 4
const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
})

interface Data {
  /** `a`'s lock keys (a root). */
  readonly aKeys?: ReadonlyArray<string> | undefined
  /** `b`'s lock keys for the event `a` announces, or for a message from outside; undefined: not known. */
  readonly bKeys?: ReadonlyArray<string> | undefined
}

const allKeys = ["s/1", "s/2", "s/3", "w/1", "w/2"]

const setUp = async (round: string, ownRows: boolean) => {
  const h = await alone(partitions, cleanups, "CREATE TABLE effects (n BIGSERIAL PRIMARY KEY, consumer TEXT NOT NULL, id TEXT NOT NULL, unlocked TEXT)")
  const { store } = h
  await store.transaction(store.query("CREATE TABLE counters (k TEXT PRIMARY KEY, v BIGINT NOT NULL)").run())
  for (const k of allKeys) await store.transaction(store.query("INSERT INTO counters (k, v) VALUES (?, 0)").run(k))
  const read = store.query("SELECT v FROM counters WHERE k = ? FOR UPDATE")
  const write = store.query("UPDATE counters SET v = ? WHERE k = ?")
  /** `b`'s chained runs, by the id of the event run. */
  const chained = new Set<string>()
  /** The advisory locks of `keys` that this transaction does not hold, read in it. */
  const held = store.query(
    "SELECT COUNT(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = ANY(CAST(? AS BIGINT[]))"
  )
  // The store's lock keys are its schema's (Postgres.ts `lockScope`).
  const scope = String((await store.run(store.query("SELECT current_schema() AS s").get()))?.s)
  const lockOf = (key: string) => advisoryKey(key, scope)
  const unlockedOf = (keys: ReadonlyArray<string>) =>
    Effect.map(held.get([...new Set(keys.map(lockOf))]), (r) => (Number(r?.n) === new Set(keys.map(lockOf)).size ? null : keys.join(",")))
  const processors: Array<Processor> = [
    {
      name: "a",
      consumes: [],
      topics: ["events/in-a"],
      ...(ownRows ? { ownRows: true } : {}),
      lockKeys: (event) => (event.data as Data).aKeys,
      handle: (event) =>
        Effect.as(store.query("INSERT INTO effects (consumer, id) VALUES ('a', ?)").run(event.id), [
          { type: "x", topic: "events/to-b", key: event.key, id: `${event.id}-to-b`, data: { bKeys: (event.data as Data).bKeys } }
        ])
    },
    {
      name: "b",
      consumes: [],
      topics: ["events/to-b", "events/in-b"],
      lockKeys: (event) => (event.data as Data).bKeys,
      handle: (event) =>
        Effect.gen(function* () {
          const keys = (event.data as Data).bKeys
          const unlocked = keys === undefined ? null : yield* unlockedOf(keys)
          for (const k of [...(keys ?? [])].sort()) {
            const row = yield* read.get(k)
            yield* write.run(Number(row?.v) + 1, k)
          }
          yield* store.query("INSERT INTO effects (consumer, id, unlocked) VALUES ('b', ?, ?)").run(event.id, unlocked)
          return []
        })
    }
  ]
  const consumers = routedConsumers(h, processors, round, new Map(), () => true, { actors: 3, onChained: (event) => void chained.add(event.id) })
  const close = () => closeHarness(h)
  const eventOf: (key: string, data: Data) => Envelope.Envelope = eventsOf(round)
  const arrive = arriving(h)
  const idle = () => settled(h, consumers)
  const effects = async (consumer: string) => await store.run(store.query("SELECT id, unlocked FROM effects WHERE consumer = ? ORDER BY n").all(consumer))
  const counters = async () => new Map((await store.run(store.query("SELECT k, v FROM counters").all())).map((r) => [String(r.k), Number(r.v)]))
  return { chained, eventOf, arrive, idle, effects, counters, close }
}

const lockKeys = fc.uniqueArray(fc.constantFrom(...allKeys), { maxLength: 3 })
const step = fc.record({
  at: fc.constantFrom("a", "b"),
  key: fc.constantFrom("k1", "k2", "k3", "k4"),
  aKeys: fc.option(lockKeys, { nil: undefined }),
  bKeys: fc.option(lockKeys, { nil: undefined }),
  pauseMs: fc.constantFrom(0, 0, 2)
})

describe.each([false, true])("Consumer.chain on PostgreSQL into a processor with lock keys (the root's processor says ownRows: %s)", (ownRows) => {
  it("for any roots and messages from outside with any lock keys: each run of b in a transaction that holds its keys' advisory locks, each message applied once, b chained into exactly when its keys are among its root's", async () => {
    let round = 0
    let chainedKeyed = 0
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 12 }), async (steps) => {
        round++
        const h = await setUp(`r${round}${ownRows ? "o" : ""}`, ownRows)
        try {
          const roots: Array<{ readonly id: string; readonly aKeys: ReadonlyArray<string> | undefined; readonly bKeys: ReadonlyArray<string> | undefined }> = []
          const outside: Array<string> = []
          const arrivals: Array<Promise<unknown>> = []
          let together: Array<readonly [string, Envelope.Envelope]> = []
          for (const s of steps) {
            const event = h.eventOf(s.key, s.at === "a" ? { aKeys: s.aKeys, bKeys: s.bKeys } : { bKeys: s.bKeys })
            if (s.at === "a") roots.push({ id: event.id, aKeys: s.aKeys, bKeys: s.bKeys })
            else outside.push(event.id)
            together.push([s.at === "a" ? "events/in-a" : "events/in-b", event])
            if (s.pauseMs > 0) {
              arrivals.push(h.arrive(together))
              together = []
              await new Promise((r) => setTimeout(r, s.pauseMs))
            }
          }
          arrivals.push(h.arrive(together))
          await Promise.all(arrivals)
          await within(h.idle(), 30_000, "the messages")
          const b = await h.effects("b")
          expect(
            b.filter((r) => r.unlocked !== null),
            "b ran in a transaction without the advisory lock of a key of its"
          ).toEqual([])
          for (const id of [...roots.map((r) => `${r.id}-to-b`), ...outside]) expect(b.filter((r) => r.id === id), `b applied ${id} once`).toHaveLength(1)
          const counted = new Map(allKeys.map((k) => [k, 0]))
          for (const s of steps) for (const k of s.bKeys ?? []) counted.set(k, counted.get(k)! + 1)
          expect(await h.counters(), "each of b's runs counted once on each of its keys (none lost to another beside it)").toEqual(counted)
          expect((await h.effects("a")).map((r) => r.id).sort(), "a applied each root once").toEqual(roots.map((r) => r.id).sort())
          for (const root of roots) {
            const covered = root.bKeys !== undefined && (root.bKeys.length === 0 || (!ownRows && root.bKeys.every((k) => root.aKeys?.includes(k) === true)))
            if (!covered) expect(h.chained.has(`${root.id}-to-b`), `${root.id}: b's keys ${JSON.stringify(root.bKeys)} not among a's ${JSON.stringify(root.aKeys)}: not chained`).toBe(false)
            else if (h.chained.has(`${root.id}-to-b`) && root.bKeys!.length > 0) chainedKeyed++
          }
        } finally {
          await h.close()
        }
      }),
      {
        numRuns: Number(process.env.BATON_PROPERTY_RUNS ?? 4) * 3,
        endOnFailure: true,
        examples: [
          // Covered: chained (b's keys locked by a's group first).
          [[{ at: "a", key: "k1", aKeys: ["s/1", "w/1"], bKeys: ["w/1"], pauseMs: 0 }]],
          // Not covered: queued (its own group locks them).
          [[{ at: "a", key: "k1", aKeys: ["s/1"], bKeys: ["w/1"], pauseMs: 0 }]],
          // Not known: queued.
          [[{ at: "a", key: "k1", aKeys: ["s/1"], bKeys: undefined, pauseMs: 0 }]],
          // Covered, with b's own messages of the keys from outside.
          [
            [
              { at: "b", key: "k2", aKeys: undefined, bKeys: ["w/1"], pauseMs: 0 },
              { at: "a", key: "k1", aKeys: ["s/1", "w/1"], bKeys: ["w/1"], pauseMs: 0 },
              { at: "a", key: "k2", aKeys: ["w/1"], bKeys: ["w/1"], pauseMs: 2 },
              { at: "a", key: "k3", aKeys: ["s/2", "w/2"], bKeys: ["w/2"], pauseMs: 0 }
            ]
          ],
          // Two roots of one key's in one group (side by side when `a` says ownRows).
          [
            [
              { at: "a", key: "k1", aKeys: ["w/1"], bKeys: ["w/1"], pauseMs: 0 },
              { at: "a", key: "k2", aKeys: ["w/1"], bKeys: ["w/1"], pauseMs: 0 },
              { at: "a", key: "k3", aKeys: ["w/1"], bKeys: ["w/1"], pauseMs: 0 }
            ]
          ]
        ]
      }
    )
    // The chained path was taken with lock keys (not only refused).
    if (!ownRows) expect(chainedKeyed).toBeGreaterThan(0)
  }, 240_000)
})
