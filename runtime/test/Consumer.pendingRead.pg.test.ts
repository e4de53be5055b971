/**
 * A read of the inbox's pending rows (a cluster's sweep, a recovery: `Consumer.recover`; a
 * backlog's page) races the runs of the messages it finds. For all orders of a read and of the
 * runs of its messages (run and committed before the read, during it, after its answer, or never
 * scheduled but by the read), every message runs its handler once, its effects are written once and
 * it ends done (failed, when it fails for good): a message committed done while the read was out is not scheduled again from the
 * read's stale row (before the fix it ran twice, its second done mark failing its group's
 * transaction as no longer pending: `ab.ts pg`'s ~0.01-0.05 an order, all of them the sweep's).
 * The same for a message that fails for good (its row recorded `failed`, never pending again) while
 * the read is out: before 943e8d6's follow-up its handler ran a second time from the stale row.
 * Real PostgreSQL, a real Consumer; the read is the inbox's own, held after its answer (`pendingIn`).
 */
import { afterAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import { Effect } from "effect"
import type { Processor } from "@baton/core"
import { partitionOf } from "../src/Consumer.ts"
import { alone as alonePg, closeHarness, consumerOf, eventsOf, type Harness } from "./chainPg.ts"

const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
})

type Phase = "before" | "during" | "after" | "unscheduled"
/** Each message ends done, or fails for good at its first attempt (a permanent failure: recorded `failed` at once). */
const failing = new Set<string>()
const most = 4
/** A key per message, each of its own actor (an actor runs its messages one after another: a held one would hold the rest). */
const keys = (() => {
  const byActor = new Map<number, string>()
  for (let i = 0; byActor.size < most; i++) if (!byActor.has(partitionOf(`k${i}`, most))) byActor.set(partitionOf(`k${i}`, most), `k${i}`)
  return [...byActor.values()]
})()

const gate = () => {
  let open!: () => void
  const opened = new Promise<void>((r) => (open = r))
  return { opened, open }
}

/**
 * A harness (`alonePg`, with an effects table) whose inbox's `pendingIn` answer can be held:
 * `hold(read)` starts the read and returns once its answer came, held until `released.open()`.
 */
const heldReads = async () => {
  const base = await alonePg(1, cleanups, "CREATE TABLE effects (n BIGSERIAL PRIMARY KEY, id TEXT NOT NULL)")
  let held: { readonly answered: () => void; readonly released: Promise<void> } | undefined
  const inbox = {
    ...base.inbox,
    pendingIn: async (processor: string, parts: ReadonlyArray<number>) => {
      const rows = await base.inbox.pendingIn(processor, parts)
      const at = held
      if (at !== undefined) {
        at.answered()
        await at.released
      }
      return rows
    }
  }
  const h: Harness = { ...base, inbox }
  const hold = async <A>(read: () => Promise<A>) => {
    const answered = gate()
    const released = gate()
    held = { answered: answered.open, released: released.opened }
    const recovered = read()
    await answered.opened
    held = undefined
    return { recovered, released }
  }
  return { base, h, hold }
}

/**
 * Processor "p": counts each run of its handler (`runs`), waits for the message's gate (none: goes
 * on), fails for good at once a message of `failing`, else writes its effect; `committed` is told
 * after each commit.
 */
const counting = (h: Harness, runs: Map<string, number>, gates: ReadonlyMap<string, { readonly opened: Promise<void> }>, committed: (id: string) => void): Processor => ({
  name: "p",
  consumes: [],
  topics: ["events/x"],
  handle: (event) =>
    Effect.as(
      Effect.andThen(
        Effect.andThen(
          Effect.promise(() => {
            runs.set(event.id, (runs.get(event.id) ?? 0) + 1)
            return gates.get(event.id)?.opened ?? Promise.resolve()
          }),
          () => (failing.has(event.id) ? Effect.fail(Object.assign(new Error("bad data"), { retryable: false })) : Effect.void)
        ),
        h.store.query("INSERT INTO effects (id) VALUES (?)").run(event.id)
      ),
      []
    ),
  committed: (event) => committed(event.id)
})

describe("Consumer: a read of pending rows and the runs of its messages, done or failed for good (PostgreSQL)", () => {
  it("runs every message once, whatever finished (done or failed) while the read was out", async () => {
    const { base, h, hold } = await heldReads()
    const gates = new Map<string, ReturnType<typeof gate>>()
    const runs = new Map<string, number>()
    const processor = counting(h, runs, gates, () => {})
    let round = 0
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(fc.tuple(fc.constantFrom<Phase>("before", "during", "after", "unscheduled"), fc.boolean()), { minLength: 1, maxLength: most }), async (given) => {
          const phases = given.map(([phase]) => phase)
          const name = `r${++round}`
          const consumer = consumerOf(h, processor, name, new Map(), () => true, most)
          const eventOf = eventsOf(name)
          const events = phases.map((phase, i) => ({ phase, event: eventOf(keys[i]!) }))
          for (const { event } of events) gates.set(event.id, gate())
          for (const [i, { event }] of events.entries()) if (given[i]![1]) failing.add(event.id)
          await h.store.transaction(
            Effect.forEach(events, ({ event }) => h.inbox.receive("p", { envelopeId: event.id, topic: "events/x", key: event.key, payload: JSON.stringify(event) }), { discard: true })
          )
          const live = new Map(events.filter((e) => e.phase !== "unscheduled").map(({ event }) => [event.id, consumer.schedule(event, "events/x", JSON.stringify(event))]))
          const finish = async (phase: Phase) => {
            for (const e of events.filter((x) => x.phase === phase)) {
              gates.get(e.event.id)!.open()
              await live.get(e.event.id)
            }
          }
          await finish("before")
          const { recovered, released } = await hold(() => consumer.recover([0]))
          await finish("during")
          released.open()
          await recovered
          for (const { event } of events) gates.get(event.id)!.open()
          await consumer.idle()
          for (const { event } of events) expect(runs.get(event.id), `${event.id} (${events.find((e) => e.event.id === event.id)!.phase})`).toBe(1)
          const ids = events.map((e) => e.event.id)
          const effects = await h.store.run(h.store.query(`SELECT id, COUNT(*) AS n FROM effects WHERE id IN (${ids.map(() => "?").join(", ")}) GROUP BY id`).all(...ids))
          expect(effects.map((r) => [String(r.id), Number(r.n)]).sort()).toEqual(ids.filter((id) => !failing.has(id)).map((id) => [id, 1]).sort())
          const pending = await h.store.run(h.store.query(`SELECT COUNT(*) AS n FROM inbox WHERE status = 'pending' AND envelope_id IN (${ids.map(() => "?").join(", ")})`).get(...ids))
          expect(Number(pending?.n)).toBe(0)
        }),
        { numRuns: 25, examples: [[[["during", true]]], [[["during", false]]], [[["before", true], ["during", true], ["after", false], ["unscheduled", true]]]] }
      )
    } finally {
      await closeHarness(base)
    }
  }, 60_000)
})

describe("Consumer: a read's answer and a run's end a few turns apart (PostgreSQL)", () => {
  /**
   * For all numbers of promise turns between a message's commit (its `committed` step) and the
   * read's answer: it runs once. The read's set of messages committed done must stand until the
   * read's rows are looked at, not only until the read itself returns (a turn or two later).
   */
  it("runs the message once, whatever turn its run ends in around the read's answer", async () => {
    const { base, h, hold } = await heldReads()
    const runs = new Map<string, number>()
    let committed: (id: string) => void = () => {}
    const processor = counting(h, runs, new Map(), (id) => committed(id))
    let round = 0
    try {
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 0, max: 40 }), async (turns) => {
          const name = `t${++round}`
          const consumer = consumerOf(h, processor, name, new Map(), () => true, most)
          const event = eventsOf(name)(keys[0]!)
          await h.store.transaction(h.inbox.receive("p", { envelopeId: event.id, topic: "events/x", key: event.key, payload: JSON.stringify(event) }))
          const { recovered, released } = await hold(() => consumer.recover([0]))
          // The read's answer let go `turns` promise turns after the message's commit, its run ending meanwhile.
          committed = (id) => {
            if (id !== event.id) return
            void (async () => {
              for (let i = 0; i < turns; i++) await Promise.resolve()
              released.open()
            })()
          }
          const run = consumer.schedule(event, "events/x", JSON.stringify(event))
          await recovered
          await run
          await consumer.idle()
          committed = () => {}
          expect(runs.get(event.id), `${turns} turns`).toBe(1)
        }),
        { numRuns: 41 }
      )
    } finally {
      await closeHarness(base)
    }
  }, 60_000)
})

describe("Consumer: a cluster's sweep while a backlog is being read (PostgreSQL)", () => {
  /**
   * Past `maxScheduled`, arrivals stay pending and the backlog's reader reads them in arrival
   * order; a sweep (`recover(parts)`) then would leave every row it found that is not running in
   * the inbox. It reads nothing (before: every sweep of one instance on PostgreSQL read and parsed
   * the whole backlog, every second or two), and every message still runs once and ends done.
   */
  it("reads no pending rows, and every message runs once", async () => {
    const base = await alonePg(1, cleanups, "CREATE TABLE effects (n BIGSERIAL PRIMARY KEY, id TEXT NOT NULL)")
    let reads = 0
    const h: Harness = {
      ...base,
      inbox: {
        ...base.inbox,
        pendingIn: (processor: string, parts: ReadonlyArray<number>) => {
          reads++
          return base.inbox.pendingIn(processor, parts)
        }
      }
    }
    const gates = new Map<string, ReturnType<typeof gate>>()
    const runs = new Map<string, number>()
    try {
      const consumer = consumerOf(h, counting(h, runs, gates, () => {}), "b", new Map(), () => true, most, 2)
      const eventOf = eventsOf("b")
      const events = keys.map((key) => eventOf(key))
      for (const event of events) gates.set(event.id, gate())
      await h.store.transaction(
        Effect.forEach(events, (event) => h.inbox.receive("p", { envelopeId: event.id, topic: "events/x", key: event.key, payload: JSON.stringify(event) }), { discard: true })
      )
      // Two run (held at their gates), the others are left in the inbox: a backlog.
      for (const event of events) void consumer.schedule(event, "events/x", JSON.stringify(event))
      expect(consumer.inFlight()).toBe(2)
      expect(consumer.backlogged()).toBe(true)
      expect(await consumer.recover([0])).toBe(0)
      expect(reads).toBe(0)
      for (const g of gates.values()) g.open()
      await consumer.idle()
      for (const event of events) expect(runs.get(event.id), event.id).toBe(1)
      const ids = events.map((e) => e.id)
      const pending = await h.store.run(h.store.query(`SELECT COUNT(*) AS n FROM inbox WHERE status = 'pending' AND envelope_id IN (${ids.map(() => "?").join(", ")})`).get(...ids))
      expect(Number(pending?.n)).toBe(0)
    } finally {
      await closeHarness(base)
    }
  }, 30_000)
})
