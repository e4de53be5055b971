/**
 * `Consumer.chain` on PostgreSQL (one instance), the in-memory key holds (`openHere`) and the
 * fencing of chained runs, under failures of the chain's transaction: p0's handler announces an
 * event to p1, which runs it in p0's transaction. Each way that transaction can fail (p1's handler
 * failing, its connection cut, a pending message of the key failing `receiveDoneFirst` with
 * 40001, another message of the group failing after it, the partition taken by another instance
 * meanwhile) must release the key it opened: the key's next message from outside is handled, and
 * a later root chains into the key again. Real PostgreSQL, a fresh schema per round.
 */
import { afterAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import { Effect } from "effect"
import type { Envelope, Processor } from "@baton/core"
import { Inbox } from "@baton/store"
import type * as Consumer from "../src/Consumer.ts"
import { alone as alonePg, closeHarness, eventsOf, routedConsumers, settled } from "./chainPg.ts"

const partitions = 4
const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
})

/** What happens to p1's run of a root's event in the root's transaction (its first run only). */
type Mode = "ok" | "fails" | "cut" | "pending" | "group-fails" | "moved" | "again" | "not-alone" | "elsewhere" | "held" | "held-early"
const modes: ReadonlyArray<Mode> = ["ok", "fails", "cut", "pending", "group-fails", "moved", "again", "not-alone", "elsewhere"]
/** A root's key (p0's), in a partition of neither of p1's keys. */
const rootKey = (() => {
  const taken = new Set(["k1", "k2"].map((k) => Inbox.partitionOf(k, partitions)))
  for (let i = 0; ; i++) if (!taken.has(Inbox.partitionOf(`r${i}`, partitions))) return `r${i}`
})()

const within = <A>(p: Promise<A>, ms: number, what: string): Promise<A> =>
  Promise.race([p, new Promise<A>((_, reject) => setTimeout(() => reject(new Error(`${what}: not within ${ms} ms (a key held forever?)`)), ms))])

const setUp = async (round: string, ownRows: boolean) => {
  const h = await alonePg(partitions, cleanups, "CREATE TABLE effects (n BIGSERIAL PRIMARY KEY, consumer TEXT NOT NULL, id TEXT NOT NULL, key TEXT NOT NULL)")
  const { store, inbox, router } = h
  const seen = { chained: 0, handled: new Map<string, number>() }
  /** p1's first chained run of an event does this (by the event's id), and what p1's handler does first. */
  const first = new Map<string, Mode>()
  /** p1's runs of each event, and whether they were in a chain. */
  const p1Runs: Array<string> = []
  /** p0's runs of each root. */
  const p0Runs = new Map<string, number>()
  const processors: Array<Processor> = [
    {
      name: "p0",
      consumes: [],
      // events/both: p2 too (one delivery for both: they run in one group commit, p0's first).
      topics: ["events/in-p0", "events/both"],
      ...(ownRows ? { ownRows: true } : {}),
      handle: (event) =>
        Effect.as(Effect.andThen(Effect.sync(() => void p0Runs.set(event.id, (p0Runs.get(event.id) ?? 0) + 1)), store.query("INSERT INTO effects (consumer, id, key) VALUES (?, ?, ?)").run("p0", event.id, event.key)), [
          // Of p1's key (data.to), with a stable id (sent again, it is known as a duplicate).
          { type: "x", topic: "events/to-p1", key: (event.data as { to: string }).to, id: `${event.id}-to-p1`, data: { root: event.id } }
        ])
    },
    {
      name: "p1",
      consumes: [],
      topics: ["events/to-p1", "events/in-p1"],
      ...(ownRows ? { ownRows: true } : {}),
      handle: (event) =>
        Effect.gen(function* () {
          const root = (event.data as { root?: string }).root
          const mode = root === undefined ? undefined : first.get(root)
          p1Runs.push(`${root ?? event.id}${mode === undefined ? "" : ` ${mode}`}`)
          if (root !== undefined) first.delete(root)
          if (mode === "fails") return yield* Effect.fail(new Error(`p1 fails ${event.id} in its chain`))
          if (mode === "cut") yield* store.query("SELECT pg_terminate_backend(pg_backend_pid())").get()
          // Another instance joins meanwhile (and takes the partitions of neither p0's nor p1's keys): the chain's transaction goes on.
          if (mode === "not-alone") alone = false
          // Held until the test lets it go (its transaction open meanwhile): after a statement (its
          // inbox row, written first, went out with it), or before any.
          if (mode === "held") yield* store.query("SELECT 1").get()
          if (mode === "held" || mode === "held-early") yield* Effect.promise(() => held.promise)
          yield* store.query("INSERT INTO effects (consumer, id, key) VALUES (?, ?, ?)").run("p1", root ?? event.id, event.key)
          return []
        })
    },
    {
      // A message of another processor that fails, in the same group commit as a root (its optimistic run rolled back).
      name: "p2",
      consumes: [],
      topics: ["events/both"],
      handle: (event) => ((event.data as { fails?: boolean }).fails === true ? Effect.fail(new Error("p2 fails")) : Effect.succeed([]))
    }
  ]
  const consumers = new Map<string, Consumer.Consumer>()
  let alone = true
  /** Partitions another instance owns (in memory: their rows still say this one's). */
  const elsewhere = new Set<number>()
  const ours = new Set([rootKey, "k1", "k2"].map((k) => Inbox.partitionOf(k, partitions)))
  /** Not alone: only the partitions of p0's and p1's keys are this instance's. */
  const owns = (key: string) => !elsewhere.has(Inbox.partitionOf(key, partitions)) && (alone || ours.has(Inbox.partitionOf(key, partitions)))
  const held = (() => {
    let release!: () => void
    const promise = new Promise<void>((r) => (release = r))
    return { promise, release, reached: 0 }
  })()
  for (const [name, consumer] of routedConsumers(h, processors, round, seen.handled, owns, { onChained: () => void seen.chained++ })) consumers.set(name, consumer)
  const close = () => closeHarness(h)
  const eventOf = eventsOf(round)
  /** A message from outside on `topic`: received pending, then scheduled (as a broker session hands it over). */
  const arrive = async (topic: string, event: Envelope.Envelope) => {
    const deliveries = await store.transaction(router.route(topic, event, JSON.stringify(event)))
    return Promise.all(deliveries.map((d) => Promise.resolve(d())))
  }
  const idle = () => settled(h, consumers)
  const partOf = (key: string) => Inbox.partitionOf(key, partitions)
  const setOwner = (key: string, owner: string) => store.transaction(store.query("UPDATE cluster_partitions SET owner = ? WHERE part = ?").run(owner, partOf(key)))
  return {
    store,
    inbox,
    consumers,
    seen,
    first,
    p1Runs,
    p0Runs,
    eventOf,
    arrive,
    idle,
    setOwner,
    close,
    held,
    setAlone: (a: boolean) => void (alone = a),
    isAlone: () => alone,
    setElsewhere: (key: string, away: boolean) => void (away ? elsewhere.add(Inbox.partitionOf(key, partitions)) : elsewhere.delete(Inbox.partitionOf(key, partitions))),
    effects: async (consumer: string) => (await store.run(store.query("SELECT id, key FROM effects WHERE consumer = ? ORDER BY n").all(consumer))).map((r) => `${r.id} ${r.key}`)
  }
}

/**
 * One root at p0 of `key`, whose event's first run in p1 goes as `mode` says; resolves once
 * everything it caused is settled.
 */
const rootWith = async (h: Awaited<ReturnType<typeof setUp>>, key: string, mode: Mode): Promise<ReadonlyArray<{ readonly id: string; readonly applied: number }>> => {
  const more: Array<{ readonly id: string; readonly applied: number }> = []
  const root = h.eventOf(rootKey, { to: key })
  h.first.set(root.id, mode)
  if (mode === "again") {
    // Its event to p1 already there, done (delivered once before): its chained row cannot be written (40001); not run again.
    const e = { envelopeId: `${root.id}-to-p1`, topic: "events/to-p1", key, payload: "{}" }
    expect(await h.store.transaction(h.inbox.receiveDone("p1", e))).toBe(true)
  }
  if (mode === "pending") {
    // A message of the key committed pending for p1 and not yet in memory (arrived a moment ago):
    // the chained run's row cannot be written first (40001), the root runs again with p1 refusing.
    const before = h.eventOf(key)
    expect(await h.store.transaction(h.inbox.receive("p1", { envelopeId: before.id, topic: "events/in-p1", key, payload: JSON.stringify(before) }))).toBe(true)
    await h.arrive("events/in-p0", root)
    await h.consumers.get("p0")!.idle()
    await h.consumers.get("p1")!.recover()
  } else if (mode === "group-fails") {
    // p2 fails the root's event in the same group commit, after p0's: the optimistic run rolls back, the root runs again in a savepoint.
    await h.arrive("events/both", { ...root, data: { to: key, fails: true } })
  } else if (mode === "moved") {
    // Another instance took p1's partition (this one still thinks it owns it): the chained run's write fails the guard.
    await h.setOwner(key, "other")
    await h.arrive("events/in-p0", root)
    // p0's root committed, its event to p1 received pending (not in p1's partition, now another's: p1 skips it).
    await h.consumers.get("p0")!.idle()
    await h.consumers.get("p1")!.idle()
    await h.setOwner(key, "me")
    // The event p1 refused is pending in a partition of this instance's again: as after a claim.
    await h.consumers.get("p1")!.recover()
  } else if (mode === "not-alone") {
    await h.arrive("events/in-p0", root)
    await within(h.idle(), 15_000, "with another instance")
    expect(h.isAlone()).toBe(false)
    // While not alone, what this instance owns still chains: a root's event into p1's key runs in its transaction.
    const also = h.eventOf(rootKey, { to: key })
    const chained = h.seen.chained
    await h.arrive("events/in-p0", also)
    more.push({ id: also.id, applied: 1 })
    await within(h.idle(), 15_000, "a root while not alone")
    expect(h.seen.chained - chained, "chained while another instance owns other partitions").toBe(1)
    // Alone again (the other instance left).
    h.setAlone(true)
  } else if (mode === "elsewhere") {
    // p1's key's partition is another instance's (in memory): nothing chains into it, the root's event is queued.
    h.setElsewhere(key, true)
    const chained = h.seen.chained
    await h.arrive("events/in-p0", root)
    await h.consumers.get("p0")!.idle()
    await h.consumers.get("p1")!.idle()
    expect(h.seen.chained, "nothing chained into a key of another instance's partition").toBe(chained)
    expect(h.p0Runs.get(root.id), "elsewhere: the root ran once").toBe(1)
    // This instance's again (as after a claim): its pending event runs.
    h.setElsewhere(key, false)
    await h.consumers.get("p1")!.recover()
  } else await h.arrive("events/in-p0", root)
  await within(h.idle(), 15_000, `after a root with its chain ${mode}`)
  // p1 applies each root's event once, but one already there.
  return [{ id: root.id, applied: mode === "again" ? 0 : 1 }, ...more]
}

describe.each([false, true])("Consumer.chain on PostgreSQL (processors say ownRows: %s): the keys a chain's transaction holds", (ownRows) => {
  it("for any roots whose chained run fails in any way (handler, connection cut, 40001, group rollback, partition moved), then messages of the keys from outside and more roots: every message handled once, each key chained into again (no hold left behind)", async () => {
    let round = 0
    const seenModes = new Set<Mode>()
    await fc.assert(
      fc.asyncProperty(fc.array(fc.record({ key: fc.constantFrom("k1", "k2"), mode: fc.constantFrom(...modes) }), { minLength: 1, maxLength: 6 }), async (steps) => {
        round++
        const h = await setUp(`r${round}${ownRows ? "o" : ""}`, ownRows)
        try {
          const roots: Array<{ readonly id: string; readonly applied: number }> = []
          for (const step of steps) {
            seenModes.add(step.mode)
            const chained = h.seen.chained
            const [root, ...more] = await rootWith(h, step.key, step.mode)
            roots.push(root!, ...more)
            // The mode did what it says: the chained run failed its root's transaction (run again with p1 refusing), or ran.
            if (step.mode === "group-fails") expect(h.p0Runs.get(root!.id), "group-fails: the root ran again in a savepoint, its chain too").toBe(2)
            if (step.mode === "elsewhere") continue
            if (step.mode === "ok" || step.mode === "group-fails" || step.mode === "not-alone") expect(h.seen.chained - chained, `${step.mode}: chained`).toBeGreaterThan(0)
            // (A chained handler's blind writes are not waited for: the failure may surface after its run, at the chain's end.)
            else expect(h.p0Runs.get(root!.id), `${step.mode}: the chain failed its root's transaction, which ran again`).toBe(2)
          }
          // From outside, a message of each key to p1: handled (no hold of its key left behind).
          const outside = ["k1", "k2"].map((key) => h.eventOf(key))
          for (const e of outside) await h.arrive("events/in-p1", e)
          await within(h.idle(), 15_000, "the keys' messages from outside")
          // A root of each key again: its event chained into p1 (no other transaction holds the key).
          const chainedBefore = h.seen.chained
          for (const key of ["k1", "k2"]) roots.push(...(await rootWith(h, key, "ok")))
          expect(h.seen.chained - chainedBefore, "each key chained into again").toBe(2)
          const p1 = await h.effects("p1")
          for (const root of roots) expect(p1.filter((e) => e.startsWith(`${root.id} `)), `p1 applied ${root.id}'s event once (none already there)`).toHaveLength(root.applied)
          for (const e of outside) expect(p1.filter((r) => r.startsWith(`${e.id} `)), `p1 applied ${e.id} once`).toHaveLength(1)
          expect((await h.effects("p0")).length, "p0 applied each root once").toBe(roots.length)
          expect(h.seen.handled.get("p0 failed") ?? 0, "no root failed").toBe(0)
          expect(h.seen.handled.get("p1 failed") ?? 0, "no p1 message failed").toBe(0)
          const inbox = await h.store.run(h.store.query("SELECT processor, status, COUNT(*) AS n FROM inbox WHERE processor <> 'p2' GROUP BY processor, status ORDER BY processor, status").all())
          expect(inbox.every((r) => r.status === "done"), JSON.stringify(inbox)).toBe(true)
        } finally {
          await h.close()
        }
      }),
      {
        numRuns: Math.max(modes.length, Number(process.env.BATON_PROPERTY_RUNS ?? 4) * 2),
        endOnFailure: true,
        examples: modes.map((mode) => [[{ key: "k1", mode }, { key: "k1", mode: "ok" as Mode }]])
      }
    )
    expect([...seenModes].sort()).toEqual([...modes].sort())
  }, 240_000)
})

describe.each([false, true])("Consumer.chain on PostgreSQL (processors say ownRows: %s): a key held by a chain's open transaction", (ownRows) => {
  for (const mode of ["held", "held-early"] as const)
    it(`a message of the key from outside, and another root's event of the key, while a chained run of it is in its open transaction (${mode === "held" ? "its row written" : "its row not yet written"}): they wait for the transaction, never run beside it, and the order is that of the commits`, async () => {
      const h = await setUp(`${mode}${ownRows ? "o" : ""}`, ownRows)
      try {
        const root = h.eventOf(rootKey, { to: "k1" })
        h.first.set(root.id, mode)
        const delivered = h.arrive("events/in-p0", root)
        // p1's chained run has begun (and waits): its key is held by p0's transaction.
        while (!h.p1Runs.includes(`${root.id} ${mode}`)) await new Promise((r) => setTimeout(r, 2))
        const outside = h.eventOf("k1")
        await h.arrive("events/in-p1", outside)
        // Another root, on p0's other actor (not behind the first root): its transaction runs meanwhile.
        const otherKey = ["o1", "o2", "o3", "o4", "o5"].find((k) => Inbox.partitionOf(k, 2) !== Inbox.partitionOf(rootKey, 2))!
        const other = h.eventOf(otherKey, { to: "k1" })
        const otherDelivered = h.arrive("events/in-p0", other)
        // The other root commits meanwhile (waited for up to 10 s, not a fixed time: a loaded machine).
        for (const deadline = performance.now() + 10_000; (await h.effects("p0")).length === 0 && performance.now() < deadline; ) await new Promise((r) => setTimeout(r, 10))
        await new Promise((r) => setTimeout(r, 50))
        expect(h.p1Runs, "nothing else of p1's key k1 ran while the chain's transaction is open").toEqual([`${root.id} ${mode}`])
        expect(await h.effects("p0"), "the other root committed meanwhile").toEqual([`${other.id} ${otherKey}`])
        h.held.release()
        await Promise.all([delivered, otherDelivered])
        await within(h.idle(), 15_000, "after the chain's transaction")
        // Its row written, the chained run commits first; not yet written, it finds the others'
        // pending when it is (40001): its root runs again, its event queued after theirs.
        const order = mode === "held" ? [root, outside, other] : [outside, other, root]
        expect(await h.effects("p1"), "p1: each once, in the order of their commits").toEqual(order.map((e) => `${e.id} k1`))
        expect(h.p0Runs.get(root.id), "the chain's root ran once (run again when its row could not be written)").toBe(mode === "held" ? 1 : 2)
        expect(h.p0Runs.get(other.id), "the other root once").toBe(1)
      } finally {
        h.held.release()
        await h.close()
      }
    }, 60_000)
})
