/**
 * A partition acquired while the consumer reads its backlog (a hand-over from a dead or leaving
 * instance): its pending rows, some older than where the backlog's reader is in its pass, still
 * run in arrival order per key, each once. The backlog's reader reads every pending row of the
 * processor (other instances' partitions' too, skipped as not owned); one pass may read several
 * pages, and ownership can change between two of them.
 * Real PostgreSQL, a real Consumer; the acquisition (the partition owned, `recover(parts)` as
 * Consuming's `acquired` calls it) happens between two pages of a pass.
 */
import { afterAll, describe, expect, it } from "vitest"
import { Effect } from "effect"
import { Log, type Processor } from "@baton/core"
import { Supervisor } from "@baton/actors"
import * as Consumer from "../src/Consumer.ts"
import { alone as alonePg, closeHarness, eventsOf, within, type Harness } from "./chainPg.ts"

const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
})

const gate = () => {
  let open!: () => void
  const opened = new Promise<void>((r) => (open = r))
  return { opened, open }
}

const most = 4
const partitions = 2

/**
 * Processor `p` on `most` actors (named `<prefix><i>`, running): each message's handler counts its
 * run, waits for its gate if it has one, and writes its id to `effects`.
 */
const gated = (h: Harness, prefix: string) => {
  const gates = new Map<string, ReturnType<typeof gate>>()
  const runs = new Map<string, number>()
  const processor: Processor = {
    name: "p",
    consumes: [],
    topics: ["events/x"],
    handle: (event) =>
      Effect.as(
        Effect.andThen(
          Effect.promise(() => {
            runs.set(event.id, (runs.get(event.id) ?? 0) + 1)
            return gates.get(event.id)?.opened ?? Promise.resolve()
          }),
          h.store.query("INSERT INTO effects (id) VALUES (?)").run(event.id)
        ),
        []
      )
  }
  const actors = Array.from({ length: most }, (_, i) => Supervisor.make(h.system, `${prefix}${i}`, { maxAttempts: 3, initialDelayMs: 1, maxDelayMs: 5, factor: 2, maxRestarts: 1000, windowMs: 60_000 }))
  h.fibers.push(...actors.map((a) => Effect.runFork(a.run)))
  return { gates, runs, processor, actors }
}
const partOf = (key: string) => Consumer.partitionOf(key, partitions)
/**
 * Keys `a` and `b` of partition 0 (this instance's), each on an actor of its own (of four), `c`
 * of partition 0 too, and `q` of partition 1 (another instance's until acquired), on an actor
 * neither `a` nor `b` is on.
 */
const [aKey, bKey, cKey, qKey] = (() => {
  const candidates = Array.from({ length: 200 }, (_, i) => `k${i}`)
  const a = candidates.find((k) => partOf(k) === 0)!
  const b = candidates.find((k) => partOf(k) === 0 && Consumer.partitionOf(k, most) !== Consumer.partitionOf(a, most))!
  const c = candidates.find((k) => partOf(k) === 0 && k !== a && k !== b)!
  const q = candidates.find((k) => partOf(k) === 1 && Consumer.partitionOf(k, most) !== Consumer.partitionOf(a, most) && Consumer.partitionOf(k, most) !== Consumer.partitionOf(b, most))!
  return [a, b, c, q]
})()

describe("Consumer: a partition acquired while its backlog is being read (PostgreSQL)", () => {
  it("runs the acquired partition's pending messages in arrival order per key, each once", async () => {
    const h0 = await alonePg(partitions, cleanups, "CREATE TABLE effects (n BIGSERIAL PRIMARY KEY, id TEXT NOT NULL)")
    // Partition 1 is another (dead) instance's until acquired here.
    const ownedParts = new Set([0])
    const owned = { has: (key: string) => ownedParts.has(partOf(key)) }
    let pages = 0
    let acquire: (() => void) | undefined
    const h: Harness = {
      ...h0,
      inbox: {
        ...h0.inbox,
        pendingPage: async (processor: string, after: number, limit: number) => {
          // The second page of a pass: the partition was acquired meanwhile.
          if (after > 0 && ++pages === 1) acquire?.()
          return h0.inbox.pendingPage(processor, after, limit)
        }
      }
    }
    const { gates, runs, processor, actors } = gated(h, "p-h-")
    const consumer = Consumer.make({
      processor,
      actors,
      store: h.store,
      inbox: h.inbox,
      outbox: h.outbox,
      reject: h.reject,
      poke: () => undefined,
      router: h.router,
      routePublic: true,
      logger: Log.silent,
      maxScheduled: most,
      cluster: { owns: (key) => owned.has(key), holds: (key) => Effect.succeed(owned.has(key)) }
    })
    acquire = () => {
      ownedParts.add(1)
      void consumer.recover([1])
    }
    try {
      const eventOf = eventsOf("h")
      // In arrival order: four scheduled (held: x1 and x2 running, x3 and x4 behind them on their keys), then q1 (not owned yet), f1, then q2 of the same key as q1.
      const x1 = eventOf(aKey), x2 = eventOf(bKey), x3 = eventOf(aKey), x4 = eventOf(bKey)
      const q1 = eventOf(qKey), f1 = eventOf(cKey), q2 = eventOf(qKey)
      const all = [x1, x2, x3, x4, q1, f1, q2]
      for (const e of [x1, x2, x3, x4]) gates.set(e.id, gate())
      for (const e of all) await h.store.transaction(h.inbox.receive("p", { envelopeId: e.id, topic: "events/x", key: e.key, payload: JSON.stringify(e) }))
      for (const e of [x1, x2, x3, x4]) void consumer.schedule(e, "events/x", JSON.stringify(e))
      expect(consumer.inFlight()).toBe(most)
      // Arrivals past the room: left in the inbox, a backlog.
      for (const e of [q1, f1, q2]) void consumer.schedule(e, "events/x", JSON.stringify(e))
      expect(consumer.backlogged()).toBe(true)
      // Half the room free: the backlog's reader reads x3, x4 (running), q1 (not owned), f1 | q2.
      gates.get(x1.id)!.open()
      gates.get(x2.id)!.open()
      await within(
        (async () => {
          while (pages === 0) await new Promise((r) => setTimeout(r, 5))
          await new Promise((r) => setTimeout(r, 200))
          for (;;) {
            for (const g of gates.values()) g.open()
            await consumer.idle()
            const pending = await h.store.run(h.store.query("SELECT COUNT(*) AS n FROM inbox WHERE status = 'pending'").get())
            if (Number(pending?.n) === 0) return
            for (const g of gates.values()) g.open()
            if (consumer.inFlight() === 0 && !consumer.backlogged()) await consumer.recover([0, 1])
            await new Promise((r) => setTimeout(r, 10))
          }
        })(),
        10_000,
        "every message done"
      )
      expect(pages).toBeGreaterThan(0)
      for (const e of all) expect(runs.get(e.id), e.id).toBe(1)
      const order = (await h.store.run(h.store.query("SELECT id FROM effects ORDER BY n").all())).map((r) => String(r.id))
      expect(order.filter((id) => id === q1.id || id === q2.id), "q's messages in arrival order").toEqual([q1.id, q2.id])
    } finally {
      await closeHarness(h0)
    }
  }, 30_000)
})

describe("Consumer: a cluster's sweep during each pass of a backlog's reader (PostgreSQL)", () => {
  /**
   * A pass over the processor's pending rows reads other instances' partitions' too (skipped): with
   * a large backlog elsewhere a pass outlasts the sweep's period, and a sweep comes during every
   * pass. Once this instance's own messages are all done, the backlog ends all the same (a sweep
   * that finds nothing of its partitions pending and not running does not keep it going).
   */
  it("leaves backlog mode once its own messages are done, though a sweep comes during every pass", async () => {
    const h0 = await alonePg(partitions, cleanups, "CREATE TABLE effects (n BIGSERIAL PRIMARY KEY, id TEXT NOT NULL)")
    let passes = 0
    let consumer: Consumer.Consumer | undefined
    const h: Harness = {
      ...h0,
      inbox: {
        ...h0.inbox,
        pendingPage: async (processor: string, after: number, limit: number) => {
          // The first page of a pass; the sweep comes while the pass reads its later pages (at most 40 times).
          if (after === 0 && ++passes <= 40) queueMicrotask(() => void consumer?.recover([0]))
          return h0.inbox.pendingPage(processor, after, limit)
        }
      }
    }
    const gates = new Map<string, ReturnType<typeof gate>>()
    const processor: Processor = {
      name: "p",
      consumes: [],
      topics: ["events/x"],
      handle: (event) => Effect.as(Effect.andThen(Effect.promise(() => gates.get(event.id)?.opened ?? Promise.resolve()), h.store.query("INSERT INTO effects (id) VALUES (?)").run(event.id)), [])
    }
    const actors = Array.from({ length: most }, (_, a) => Supervisor.make(h.system, `p-s-${a}`, { maxAttempts: 3, initialDelayMs: 1, maxDelayMs: 5, factor: 2, maxRestarts: 1000, windowMs: 60_000 }))
    h.fibers.push(...actors.map((a) => Effect.runFork(a.run)))
    consumer = Consumer.make({
      processor, actors, store: h.store, inbox: h.inbox, outbox: h.outbox, reject: h.reject, poke: () => undefined, router: h.router, routePublic: true, logger: Log.silent, maxScheduled: most,
      cluster: { owns: (key) => partOf(key) === 0, holds: (key) => Effect.succeed(partOf(key) === 0) }
    })
    try {
      const eventOf = eventsOf("s")
      // Another instance's backlog (partition 1): more than a page.
      for (let i = 0; i < 3 * most; i++) {
        const e = eventOf(qKey)
        await h.store.transaction(h.inbox.receive("p", { envelopeId: e.id, topic: "events/x", key: e.key, payload: JSON.stringify(e) }))
      }
      const own = [eventOf(aKey), eventOf(bKey), eventOf(aKey), eventOf(bKey), eventOf(cKey)]
      for (const e of own.slice(0, most)) gates.set(e.id, gate())
      for (const e of own) await h.store.transaction(h.inbox.receive("p", { envelopeId: e.id, topic: "events/x", key: e.key, payload: JSON.stringify(e) }))
      for (const e of own) void consumer.schedule(e, "events/x", JSON.stringify(e))
      expect(consumer.backlogged()).toBe(true)
      for (const g of gates.values()) g.open()
      await within(
        (async () => {
          for (;;) {
            await consumer!.idle()
            const pending = await h.store.run(h.store.query(`SELECT COUNT(*) AS n FROM inbox WHERE status = 'pending' AND envelope_id IN (${own.map(() => "?").join(", ")})`).get(...own.map((e) => e.id)))
            if (Number(pending?.n) === 0 && !consumer!.backlogged()) return
            await new Promise((r) => setTimeout(r, 10))
          }
        })(),
        10_000,
        "own messages done"
      )
      expect(passes, "passes of the backlog's reader").toBeLessThan(5)
    } finally {
      await closeHarness(h0)
    }
  }, 30_000)
})

describe("Consumer: a partition acquired while the end of a backlog's pass reads what was swept (PostgreSQL)", () => {
  /**
   * The pass's last page read, a sweep's partitions' pending rows are read once; a partition
   * acquired meanwhile (its messages skipped by the pass, not owned then) is read too before the
   * backlog ends: its message runs without waiting for another sweep.
   */
  it("runs the acquired partition's message, with no sweep after it", async () => {
    const h0 = await alonePg(partitions, cleanups, "CREATE TABLE effects (n BIGSERIAL PRIMARY KEY, id TEXT NOT NULL)")
    const ownedParts = new Set([0])
    let consumer: Consumer.Consumer | undefined
    let swept = false
    let acquired = false
    const h: Harness = {
      ...h0,
      inbox: {
        ...h0.inbox,
        pendingPage: async (processor: string, after: number, limit: number) => {
          // A sweep while the pass is out.
          if (!swept) {
            swept = true
            queueMicrotask(() => void consumer?.recover([0]))
          }
          return h0.inbox.pendingPage(processor, after, limit)
        },
        pendingIn: async (processor: string, parts: ReadonlyArray<number>) => {
          const rows = await h0.inbox.pendingIn(processor, parts)
          // Partition 1 acquired while the swept partitions' rows are read.
          if (!acquired) {
            acquired = true
            ownedParts.add(1)
            void consumer?.recover([1])
          }
          return rows
        }
      }
    }
    const gates = new Map<string, ReturnType<typeof gate>>()
    const processor: Processor = {
      name: "p",
      consumes: [],
      topics: ["events/x"],
      handle: (event) => Effect.as(Effect.andThen(Effect.promise(() => gates.get(event.id)?.opened ?? Promise.resolve()), h.store.query("INSERT INTO effects (id) VALUES (?)").run(event.id)), [])
    }
    const actors = Array.from({ length: most }, (_, a) => Supervisor.make(h.system, `p-e-${a}`, { maxAttempts: 3, initialDelayMs: 1, maxDelayMs: 5, factor: 2, maxRestarts: 1000, windowMs: 60_000 }))
    h.fibers.push(...actors.map((a) => Effect.runFork(a.run)))
    const owns = (key: string) => ownedParts.has(partOf(key))
    consumer = Consumer.make({
      processor, actors, store: h.store, inbox: h.inbox, outbox: h.outbox, reject: h.reject, poke: () => undefined, router: h.router, routePublic: true, logger: Log.silent, maxScheduled: most,
      cluster: { owns, holds: (key) => Effect.succeed(owns(key)) }
    })
    try {
      const eventOf = eventsOf("e")
      const q1 = eventOf(qKey)
      const own = [eventOf(aKey), eventOf(bKey), eventOf(aKey), eventOf(bKey), eventOf(cKey)]
      for (const e of own.slice(0, most)) gates.set(e.id, gate())
      for (const e of [q1, ...own]) await h.store.transaction(h.inbox.receive("p", { envelopeId: e.id, topic: "events/x", key: e.key, payload: JSON.stringify(e) }))
      for (const e of own) void consumer.schedule(e, "events/x", JSON.stringify(e))
      expect(consumer.backlogged()).toBe(true)
      for (const g of gates.values()) g.open()
      await within(
        (async () => {
          for (;;) {
            await consumer!.idle()
            const pending = await h.store.run(h.store.query("SELECT COUNT(*) AS n FROM inbox WHERE status = 'pending'").get())
            if (Number(pending?.n) === 0) return
            await new Promise((r) => setTimeout(r, 10))
          }
        })(),
        3_000,
        "every message done (no sweep after the acquisition)"
      )
      expect(acquired).toBe(true)
    } finally {
      await closeHarness(h0)
    }
  }, 30_000)
})

describe("Consumer: a partition lost and acquired again while its backlog is being read (PostgreSQL)", () => {
  /**
   * The pass ran a message of the partition (scheduled in its tenure then), the partition changed
   * hands twice before the pass's next page (lost, acquired again: a new tenure), and the pass met
   * none of its rows meanwhile. The message scheduled in the old tenure is skipped when its turn
   * comes (stale); the key's later message, met on the next page under the new tenure, must not run
   * before it.
   */
  it("runs the partition's messages in arrival order per key, each once", async () => {
    const parts3 = 3
    const partOf3 = (key: string) => Consumer.partitionOf(key, parts3)
    const actorOf = (key: string) => Consumer.partitionOf(key, most)
    const names = Array.from({ length: 400 }, (_, i) => `k${i}`)
    // q: partition 1 (lost and acquired again); s: partition 0, on q's actor (held: q's messages queue behind it);
    // a, b, c: partition 0, on other actors; y: partition 2 (another instance's).
    const q = names.find((k) => partOf3(k) === 1)!
    const s = names.find((k) => partOf3(k) === 0 && actorOf(k) === actorOf(q))!
    const [a, b, c] = names.filter((k) => partOf3(k) === 0 && actorOf(k) !== actorOf(q)).slice(0, 3) as [string, string, string]
    const y = names.find((k) => partOf3(k) === 2)!
    const h0 = await alonePg(parts3, cleanups, "CREATE TABLE effects (n BIGSERIAL PRIMARY KEY, id TEXT NOT NULL)")
    const ownedParts = new Set([0, 1])
    const tenures = new Map([[0, 1], [1, 1]])
    let consumer: Consumer.Consumer | undefined
    let handedOver = false
    const h: Harness = {
      ...h0,
      inbox: {
        ...h0.inbox,
        pendingPage: async (processor: string, after: number, limit: number) => {
          if (after > 0 && !handedOver) {
            // Between two pages: partition 1 lost and acquired again (a new claim: epoch 2), then Consuming's `acquired`.
            handedOver = true
            await h0.store.transaction(h0.store.query("UPDATE cluster_partitions SET epoch = 2 WHERE part = 1").run())
            tenures.set(1, 2)
            void consumer?.recover([1])
          }
          return h0.inbox.pendingPage(processor, after, limit)
        }
      }
    }
    const { gates, runs, processor, actors } = gated(h, "p-l-")
    const owns = (key: string) => ownedParts.has(partOf3(key))
    consumer = Consumer.make({
      processor, actors, store: h.store, inbox: h.inbox, outbox: h.outbox, reject: h.reject, poke: () => undefined, router: h.router, routePublic: true, logger: Log.silent, maxScheduled: most,
      cluster: { owns, holds: (key) => Effect.succeed(owns(key)), tenure: (key) => tenures.get(partOf3(key)) ?? 0 }
    })
    try {
      const eventOf = eventsOf("l")
      const x1 = eventOf(s), x2 = eventOf(a), x3 = eventOf(b), x4 = eventOf(c)
      const q1 = eventOf(q), y1 = eventOf(y), q2 = eventOf(q)
      const all = [x1, x2, x3, x4, q1, y1, q2]
      for (const e of [x1, x2, x3, x4]) gates.set(e.id, gate())
      for (const e of all) await h.store.transaction(h.inbox.receive("p", { envelopeId: e.id, topic: "events/x", key: e.key, payload: JSON.stringify(e) }))
      for (const e of [x1, x2, x3, x4]) void consumer.schedule(e, "events/x", JSON.stringify(e))
      expect(consumer.inFlight()).toBe(most)
      for (const e of [q1, y1, q2]) void consumer.schedule(e, "events/x", JSON.stringify(e))
      expect(consumer.backlogged()).toBe(true)
      // Half the room free: the pass's first page is x1, x4 (running), q1 (run, behind x1), y1 (not owned) | q2.
      gates.get(x2.id)!.open()
      gates.get(x3.id)!.open()
      await within(
        (async () => {
          while (!handedOver) await new Promise((r) => setTimeout(r, 5))
          await new Promise((r) => setTimeout(r, 200))
          for (;;) {
            for (const g of gates.values()) g.open()
            await consumer!.idle()
            const pending = await h.store.run(h.store.query("SELECT COUNT(*) AS n FROM inbox WHERE status = 'pending' AND part <> 2").get())
            if (Number(pending?.n) === 0) return
            if (consumer!.inFlight() === 0 && !consumer!.backlogged()) await consumer!.recover([0, 1])
            await new Promise((r) => setTimeout(r, 10))
          }
        })(),
        10_000,
        "every message of partitions 0 and 1 done"
      )
      for (const e of [x1, x2, x3, x4, q1, q2]) expect(runs.get(e.id), e.id).toBe(1)
      const order = (await h.store.run(h.store.query("SELECT id FROM effects ORDER BY n").all())).map((r) => String(r.id))
      expect(order.filter((id) => id === q1.id || id === q2.id), "q's messages in arrival order").toEqual([q1.id, q2.id])
    } finally {
      await closeHarness(h0)
    }
  }, 30_000)
})
