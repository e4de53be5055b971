/**
 * Review of `Consumer.chain` into a processor with lock keys on PostgreSQL (one instance).
 *
 * 1. A chained target's `lockKeys` is user code called in the root's transaction (`heldFor`),
 *    before the target registered its refusal of the root: when it throws, the root's attempt
 *    fails (a defect, not `RunElsewhere`), every attempt again, and the healthy root goes to the
 *    error path. Queued (as on main, where no keyed processor was chained), only the target's
 *    own message fails.
 * 2. Property: roots of `a` (lock keys) chaining into `b` (lock keys) in groups that also hold
 *    messages of an `ownRows` processor `m` (so the group runs side by side, `Store.together`:
 *    keyed strands beside own lanes), with `b`'s own messages from outside: each run of `b` holds
 *    its keys' advisory locks, counters exact, every message applied once.
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
  readonly aKeys?: ReadonlyArray<string> | undefined
  readonly bKeys?: ReadonlyArray<string> | undefined
  /** `b`'s lockKeys throws for this event. */
  readonly bThrows?: boolean
  /** `b`'s handler fails on this event: every time, or on its first run only. */
  readonly bFails?: "always" | "once"
}

const allKeys = ["s/1", "s/2", "w/1", "w/2"]

const setUp = async (round: string) => {
  const h = await alone(partitions, cleanups, "CREATE TABLE effects (n BIGSERIAL PRIMARY KEY, consumer TEXT NOT NULL, id TEXT NOT NULL, unlocked TEXT)")
  const { store } = h
  await store.transaction(store.query("CREATE TABLE counters (k TEXT PRIMARY KEY, v BIGINT NOT NULL)").run())
  for (const k of allKeys) await store.transaction(store.query("INSERT INTO counters (k, v) VALUES (?, 0)").run(k))
  const read = store.query("SELECT v FROM counters WHERE k = ? FOR UPDATE")
  const write = store.query("UPDATE counters SET v = ? WHERE k = ?")
  const chained = new Set<string>()
  /** b's runs by event id (each started run, committed or not). */
  const bRuns = new Map<string, number>()
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
      lockKeys: (event) => (event.data as Data).aKeys,
      handle: (event) =>
        Effect.as(store.query("INSERT INTO effects (consumer, id) VALUES ('a', ?)").run(event.id), [
          { type: "x", topic: "events/to-b", key: event.key, id: `${event.id}-to-b`, data: { bKeys: (event.data as Data).bKeys, bThrows: (event.data as Data).bThrows, bFails: (event.data as Data).bFails } }
        ])
    },
    {
      name: "b",
      consumes: [],
      topics: ["events/to-b", "events/in-b"],
      lockKeys: (event) => {
        if ((event.data as Data).bThrows === true) throw new Error("b's lockKeys cannot read this event")
        return (event.data as Data).bKeys
      },
      handle: (event) =>
        Effect.gen(function* () {
          const keys = (event.data as Data).bKeys
          const runs = (bRuns.get(event.id) ?? 0) + 1
          bRuns.set(event.id, runs)
          const fails = (event.data as Data).bFails
          if (fails === "always" || (fails === "once" && runs === 1)) return yield* Effect.fail(new Error(`b fails on ${event.id}`))
          const unlocked = keys === undefined ? null : yield* unlockedOf(keys)
          for (const k of [...(keys ?? [])].sort()) {
            const row = yield* read.get(k)
            yield* write.run(Number(row?.v) + 1, k)
          }
          yield* store.query("INSERT INTO effects (consumer, id, unlocked) VALUES ('b', ?, ?)").run(event.id, unlocked)
          return []
        })
    },
    {
      // Own rows only: a lane per message, so its messages make a group run side by side.
      name: "m",
      consumes: [],
      topics: ["events/in-m"],
      ownRows: true,
      handle: (event) => Effect.as(store.query("INSERT INTO effects (consumer, id) VALUES ('m', ?)").run(event.id), [])
    }
  ]
  const consumers = routedConsumers(h, processors, round, new Map(), () => true, { actors: 3, onChained: (event) => void chained.add(event.id) })
  const close = () => closeHarness(h)
  const eventOf: (key: string, data: Data) => Envelope.Envelope = eventsOf(round)
  const arrive = arriving(h)
  const idle = () => settled(h, consumers)
  const effects = async (consumer: string) => await store.run(store.query("SELECT id, unlocked FROM effects WHERE consumer = ? ORDER BY n").all(consumer))
  const counters = async () => new Map((await store.run(store.query("SELECT k, v FROM counters").all())).map((r) => [String(r.k), Number(r.v)]))
  const status = async (processor: string, id: string) => (await store.run(store.query("SELECT status FROM inbox WHERE processor = ? AND envelope_id = ?").get(processor, id)))?.status
  return { chained, bRuns, eventOf, arrive, idle, effects, counters, status, close }
}

describe("Consumer.chain on PostgreSQL into a processor with lock keys", () => {
  it("a chained target whose lockKeys throws for the event fails its own message, not its healthy root", async () => {
    const h = await setUp("throws")
    try {
      const root = h.eventOf("k1", { aKeys: ["s/1", "w/1"], bKeys: ["w/1"], bThrows: true })
      await h.arrive([["events/in-a", root]])
      await within(h.idle(), 30_000, "the messages")
      expect(await h.status("a", root.id), "the root a (its handler healthy) committed").toBe("done")
      expect((await h.effects("a")).map((r) => r.id)).toEqual([root.id])
      expect(await h.status("b", `${root.id}-to-b`), "b's own message failed (its lockKeys threw)").toBe("failed")
    } finally {
      await h.close()
    }
  }, 60_000)

  it.each(["always", "once"] as const)("a chained keyed run that fails (%s): the root committed once, b's message queued (refused), applied once or failed, counters exact", async (fails) => {
    const h = await setUp(`fails-${fails}`)
    try {
      const other = h.eventOf("k2", { aKeys: ["s/2", "w/2"], bKeys: ["w/2"] })
      const root = h.eventOf("k1", { aKeys: ["s/1", "w/1"], bKeys: ["w/1"], bFails: fails })
      const third = h.eventOf("k3", { aKeys: ["s/1", "w/1"], bKeys: ["w/1"] })
      await h.arrive([["events/in-a", other], ["events/in-a", root], ["events/in-a", third]])
      await within(h.idle(), 30_000, "the messages")
      for (const e of [other, root, third]) expect(await h.status("a", e.id), `root ${e.id} committed`).toBe("done")
      expect((await h.effects("a")).map((r) => r.id).sort()).toEqual([other.id, root.id, third.id].sort())
      expect(h.chained.has(`${other.id}-to-b`) || h.chained.has(`${third.id}-to-b`), "the healthy ones chained").toBe(true)
      expect(await h.status("b", `${root.id}-to-b`)).toBe(fails === "always" ? "failed" : "done")
      const b = await h.effects("b")
      expect(b.filter((r) => r.unlocked !== null)).toEqual([])
      expect(b.filter((r) => r.id === `${root.id}-to-b`)).toHaveLength(fails === "always" ? 0 : 1)
      expect(await h.counters()).toEqual(new Map([["s/1", 0], ["s/2", 0], ["w/1", fails === "always" ? 1 : 2], ["w/2", 1]]))
    } finally {
      await h.close()
    }
  }, 60_000)

  it("for any roots, b's messages and ownRows messages in one group (run side by side): b's runs hold their keys, counters exact, each message once", async () => {
    let round = 0
    const keys = fc.uniqueArray(fc.constantFrom(...allKeys), { maxLength: 3 })
    const step = fc.record({
      at: fc.constantFrom("a", "a", "b", "m"),
      key: fc.constantFrom("k1", "k2", "k3"),
      aKeys: keys,
      bKeys: keys,
      pauseMs: fc.constantFrom(0, 0, 0, 2)
    })
    let chainedKeyed = 0
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 2, maxLength: 14 }), async (steps) => {
        round++
        const h = await setUp(`p${round}`)
        try {
          const roots: Array<{ id: string; aKeys: ReadonlyArray<string>; bKeys: ReadonlyArray<string> }> = []
          const outsideB: Array<string> = []
          const outsideM: Array<string> = []
          let together: Array<readonly [string, Envelope.Envelope]> = []
          for (const s of steps) {
            // Roots cover b's keys (so they chain) unless told otherwise by the draw.
            const aKeys = s.at === "a" ? [...new Set([...s.aKeys, ...s.bKeys])] : s.aKeys
            const event = h.eventOf(s.key, s.at === "a" ? { aKeys, bKeys: s.bKeys } : { bKeys: s.bKeys })
            if (s.at === "a") roots.push({ id: event.id, aKeys, bKeys: s.bKeys })
            else if (s.at === "b") outsideB.push(event.id)
            else outsideM.push(event.id)
            together.push([`events/in-${s.at}`, event])
            // Arrivals one transaction after another (committed in step order: the order per key the checks below expect).
            if (s.pauseMs > 0) {
              await h.arrive(together)
              together = []
              await new Promise((r) => setTimeout(r, s.pauseMs))
            }
          }
          await h.arrive(together)
          await within(h.idle(), 30_000, "the messages")
          const b = await h.effects("b")
          expect(b.filter((r) => r.unlocked !== null), "b ran without the advisory lock of a key of its").toEqual([])
          for (const id of [...roots.map((r) => `${r.id}-to-b`), ...outsideB]) expect(b.filter((r) => r.id === id), `b applied ${id} once`).toHaveLength(1)
          const counted = new Map(allKeys.map((k) => [k, 0]))
          for (const s of steps) if (s.at !== "m") for (const k of s.bKeys) counted.set(k, counted.get(k)! + 1)
          expect(await h.counters(), "each of b's runs counted once on each of its keys").toEqual(counted)
          expect((await h.effects("a")).map((r) => r.id).sort()).toEqual(roots.map((r) => r.id).sort())
          expect((await h.effects("m")).map((r) => r.id).sort()).toEqual(outsideM.sort())
          // Per message key: b's messages from outside applied in their arrival order, and the
          // events of a's roots of one key in their roots' order.
          const appliedAt = new Map(b.map((r, i) => [String(r.id), i]))
          for (const key of ["k1", "k2", "k3"]) {
            const ofKey = (at: string) => steps.flatMap((s, i) => (s.at === at && s.key === key ? [i] : []))
            const idOf = (i: number) => `p${round}-${i + 1}`
            const outside = ofKey("b").map((i) => appliedAt.get(idOf(i))!)
            expect(outside, `b's outside messages of ${key} in order`).toEqual([...outside].sort((x, y) => x - y))
            const fromRoots = ofKey("a").map((i) => appliedAt.get(`${idOf(i)}-to-b`)!)
            expect(fromRoots, `b's events of a's roots of ${key} in order`).toEqual([...fromRoots].sort((x, y) => x - y))
          }
          for (const r of roots) if (h.chained.has(`${r.id}-to-b`) && r.bKeys.length > 0) chainedKeyed++
        } finally {
          await h.close()
        }
      }),
      { numRuns: Number(process.env.BATON_PROPERTY_RUNS ?? 4) * 5, endOnFailure: true }
    )
    expect(chainedKeyed).toBeGreaterThan(0)
  }, 300_000)
})
