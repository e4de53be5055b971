/**
 * Order per key across a partition hand-over (Cluster.ts), through the runtime's Consumer wired as
 * the runtime wires it (layers/Consuming.ts: `acquired` and `pending` read the partitions' pending
 * messages and schedule them, `arrived` schedules what a notification handed over at once).
 *
 * A dead member's partitions are claimed one after another in one heartbeat, and a claim can
 * wait (for the dead member's transaction still in flight on that partition: its share lock).
 * The partitions claimed before it are owned meanwhile (notifications for them are taken), but
 * `acquired` is called only once every claim is done. A message arriving for such a partition
 * then must not be handed over alone (a read of what arrived since the horizon of the partitions
 * owned before: it is the only one such a read finds) ahead of its key's older messages, which
 * only `acquired`'s read will schedule: it would be applied first. The older messages were
 * written while the partition was still the dead member's, so no read of this member saw them.
 *
 * Here the blocking transaction is held on purpose (a share lock on a later partition's row, as
 * the dead member's in-flight transaction takes it through `holds` or the inbox's guard), so the
 * window is open as long as the test wants. `BATON_PROPERTY_RUNS` sets the number of runs.
 */
import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { Effect, Fiber } from "effect"
import { Log, Topics, type Envelope, type Processor } from "@baton/core"
import { Supervisor } from "@baton/actors"
import { ddl, Inbox, Outbox, Postgres, Rejections, type Store } from "@baton/store"
import { freshSchema, query } from "@baton/testkit/postgres"
import * as Cluster from "../src/Cluster.ts"
import * as Consumer from "../src/Consumer.ts"
import * as ErrorPath from "../src/ErrorPath.ts"
import * as Router from "../src/Router.ts"
import { peerM2, sharedOut, sleep, until } from "./handoverPg.ts"

const partitions = 6
const heartbeatMs = 40
const deadAfterMs = 200

/** The partitions m2 gets beside m1 (rendezvous hashing over the two names), in claim order. */
const shared = sharedOut(partitions)
const { ofM1, ofM2, names } = shared
const keysIn = (part: number) => shared.keysIn(part).slice(0, 3)

/**
 * Per key of the first partition m1 claims from m2: messages written while m2 owned it (`before`)
 * and while m1 owned it but had not yet claimed the others (`after`); how long the window stays
 * open after those (the claim of the blocked partition waiting).
 */
const plan = fc.record({
  keys: fc.array(fc.record({ key: fc.nat({ max: 2 }), before: fc.integer({ min: 1, max: 4 }), after: fc.integer({ min: 1, max: 3 }) }), { minLength: 1, maxLength: 3 }),
  window: fc.integer({ min: 30, max: 150 })
})

/** Member m1, as the runtime runs it: its own store, the inbox's guard, a Consumer fed by the cluster's hooks. */
const runtimeMember = async (
  url: string,
  system: ReturnType<typeof Supervisor.system>,
  fibers: Array<Fiber.Fiber<unknown, unknown>>,
  tweak: { readonly actors?: number; readonly prepare?: (event: Envelope.Envelope) => Promise<void>; readonly heartbeatMs?: number; readonly deadAfterMs?: number; readonly batch?: number } = {}
) => {
  const store = await Postgres.open({ url, poolSize: 4 })
  let cluster: Cluster.Cluster | undefined
  const inbox = await Inbox.make(store, { partitions, notify: (part) => cluster?.notify(part) ?? Effect.void, guard: Cluster.inboxGuard("m1") })
  const outbox = await Outbox.make(store)
  const reject = ErrorPath.make({ outbox, rejections: await Rejections.make(store), logger: Log.silent })
  const router = Router.make(inbox)
  const record = store.query("INSERT INTO effects (key, seq) VALUES (?, ?)")
  const processor: Processor<unknown> = {
    name: "p",
    consumes: ["x"],
    handle: (event) => Effect.as(record.run(event.key, (event.data as { seq: number }).seq), []),
    ...(tweak.prepare === undefined ? {} : { prepare: (event: Envelope.Envelope) => Effect.promise(() => tweak.prepare!(event)) }),
    // Runs of a key (Processor.batch): its waiting messages applied in order in one transaction.
    ...(tweak.batch === undefined
      ? {}
      : {
          batch: {
            max: tweak.batch,
            prepare: () => Effect.void,
            handle: (events: ReadonlyArray<Envelope.Envelope>) => Effect.as(Effect.forEach(events, (event) => record.run(event.key, (event.data as { seq: number }).seq)), events.map(() => []))
          }
        })
  }
  const actors = Array.from({ length: tweak.actors ?? 4 }, (_, i) => Supervisor.make(system, `order-${i}`, { maxAttempts: 3, initialDelayMs: 1, maxDelayMs: 5, factor: 2, maxRestarts: 1000, windowMs: 60_000 }))
  fibers.push(...actors.map((a) => Effect.runFork(a.run)))
  const ownsKey = (key: string) => cluster?.owns(Inbox.partitionOf(key, partitions)) === true
  // As layers/ProcessorHost.ts gives the runtime's ownership.
  const partOf = (key: string) => Inbox.partitionOf(key, partitions)
  const ownership = { owns: ownsKey, holds: (key: string) => cluster!.holds(partOf(key)), tenure: (key: string) => cluster!.tenure(partOf(key)) }
  const consumer = Consumer.make({ processor, actors, store, inbox, outbox, reject, poke: () => undefined, router, routePublic: false, logger: Log.silent, cluster: ownership })
  // The hooks as layers/Consuming.ts gives them.
  cluster = await Cluster.make({
    store,
    url,
    instance: "m1",
    partitions,
    heartbeatMs: tweak.heartbeatMs ?? heartbeatMs,
    deadAfterMs: tweak.deadAfterMs ?? deadAfterMs,
    address: { http: "-", mqtt: "-" },
    logger: Log.silent,
    acquired: async (parts) => void (await consumer.recover(parts)),
    released: () => undefined,
    pending: (parts) => void consumer.recover(parts),
    arrived: (entries) => {
      for (const e of entries) void consumer.schedule(JSON.parse(e.payload) as Envelope.Envelope, e.topic, e.payload)
    },
    adopt: () => undefined
  })
  return { store, cluster, consumer }
}

/** Sends keyed messages to processor `p`'s inbox, waking the owner; then checks that each key's effects are once each, in order. */
const sender = async (producer: Store, channel: string, url: string) => {
  const notify = producer.query("SELECT pg_notify(?, ?)")
  const inbox = await Inbox.make(producer, { partitions, notify: (part) => Effect.asVoid(notify.get(channel, String(part))) })
  const seqs = new Map<string, number>()
  const send = (key: string) => {
    const seq = (seqs.get(key) ?? 0) + 1
    seqs.set(key, seq)
    const id = `${key}-${seq}`
    const event: Envelope.Envelope = { id, type: "x", correlationId: id, causationId: id, key, occurredAt: new Date().toISOString(), data: { seq } }
    return producer.transaction(inbox.receive("p", { envelopeId: id, topic: Topics.event("x"), key, payload: JSON.stringify(event) }))
  }
  const inOrder = async (consumer: Consumer.Consumer) => {
    await until("every message applied", async () => Number((await query<{ n: string }>(url, "SELECT COUNT(*) AS n FROM inbox WHERE status = 'pending'"))[0]!.n) === 0, 15_000)
    await consumer.idle()
    const applied = await query<{ key: string; seq: string }>(url, "SELECT key, seq FROM effects ORDER BY n")
    for (const key of seqs.keys()) {
      const order = applied.filter((a) => a.key === key).map((a) => Number(a.seq))
      expect(order, `effects of ${key}: once each, in order`).toEqual(Array.from({ length: seqs.get(key)! }, (_, i) => i + 1))
    }
  }
  return { send, inOrder }
}

const seen = { inWindow: 0, heldAcross: 0 }

/**
 * Member m1 (one actor: every key's messages queue behind each other; a message `gated` picks
 * waits in `prepare` until its `gate` is let go) beside m2 (`peerM2`, owning nothing); `body` runs, then all is closed.
 */
const gatedBeside = async (
  gated: (event: Envelope.Envelope) => boolean,
  tweak: { readonly heartbeatMs?: number; readonly deadAfterMs?: number; readonly batch?: number },
  body: (run: {
    readonly db: { readonly url: string }
    readonly producer: Store
    readonly m1: Awaited<ReturnType<typeof runtimeMember>>
    readonly m2: Awaited<ReturnType<typeof peerM2>>
    readonly gates: ReadonlyMap<string, PromiseWithResolvers<void>>
    readonly gate: (id: string) => PromiseWithResolvers<void>
  }) => Promise<void>
) => {
  const db = await freshSchema()
  const system = Supervisor.system()
  const fibers: Array<Fiber.Fiber<unknown, unknown>> = []
  const producer = await Postgres.open({ url: db.url, poolSize: 2 })
  await producer.migrate([{ name: "test/effects", sql: ddl((t) => `CREATE TABLE effects (n ${t.serialKey}, key TEXT NOT NULL, seq ${t.int} NOT NULL)`) }])
  const gates = new Map<string, PromiseWithResolvers<void>>()
  const gate = (id: string) => gates.get(id) ?? gates.set(id, Promise.withResolvers<void>()).get(id)!
  const m1 = await runtimeMember(db.url, system, fibers, { actors: 1, ...tweak, prepare: (event) => (gated(event) ? gate(event.id).promise : Promise.resolve()) })
  const m2 = await peerM2(db.url)
  try {
    await body({ db, producer, m1, m2, gates, gate })
  } finally {
    await m2.die()
    for (const g of gates.values()) g.resolve()
    await m1.cluster.abandon()
    await Promise.race([m1.consumer.idle(), sleep(5_000)])
    for (const f of fibers) await Effect.runPromise(Fiber.interrupt(f))
    for (const s of [m1.store, producer]) await s.close()
    await db.drop()
  }
}

/**
 * Member m1 loses a partition to m2 and gets it back (m2 dies) while the partition's key's messages
 * wait in m1's one actor: its mailbox slow-1 (another key's, held in `prepare`), key 1..skipped,
 * slow-2 (held), key skipped+1..skipped+queued; key messages `lost` more arrive while the partition is
 * m2's. Then each key's effects must be once each, in order. `batch`: runs of a key at most so long.
 */
const lostAndBack = async ({ skipped, queued, lost, batch }: { readonly skipped: number; readonly queued: number; readonly lost: number; readonly batch?: number }) => {
  const [part, other] = [ofM1[ofM1.length - 1]!, ofM1[0]!]
  const [key, slow] = [keysIn(part)[0]!, keysIn(other)[0]!]
  // The slow key's messages wait in `prepare` until let go; one actor: every key's messages queue behind them.
  await gatedBeside((event) => event.key === slow, batch === undefined ? {} : { batch }, async ({ db, producer, m1, m2, gates, gate }) => {
    await m1.cluster.start()
    await until("m1 owns its partitions", () => ofM1.every((p) => m1.cluster.owns(p)))
    const { send, inOrder } = await sender(producer, m1.cluster.channel, db.url)
    await send(slow)
    await until("slow-1 running", () => gates.has(`${slow}-1`))
    for (let i = 0; i < skipped; i++) await send(key)
    await send(slow)
    for (let i = 0; i < queued; i++) await send(key)
    await until("every message scheduled", () => m1.consumer.inFlight() === skipped + queued + 2)
    // m2 takes the partition over (m1 seemed dead to it); m1 sees it is m2's.
    await query(db.url, `UPDATE cluster_partitions SET owner = 'm2', epoch = epoch + 1 WHERE part = ${part}`)
    await until("m1 lost the partition", () => !m1.cluster.owns(part))
    // Arrived while the partition is m2's: nobody schedules them until m1 gets it back.
    for (let i = 0; i < lost; i++) await send(key)
    // slow-1 ends: the key's first messages run while the partition is m2's (skipped), up to slow-2.
    gate(`${slow}-1`).resolve()
    await until("slow-2 running", () => gates.has(`${slow}-2`))
    // m2 dies: m1 claims the partition back and schedules its pending messages (behind the stale entries still queued).
    await m2.die()
    await until("m1 got the partition back", () => m1.cluster.owns(part))
    await until("the pending messages scheduled again", () => m1.consumer.inFlight() >= 1 + queued + skipped + lost)
    gate(`${slow}-2`).resolve()
    await inOrder(m1.consumer)
  })
}

describe("order per key across a partition hand-over (Cluster.ts with the runtime's Consumer) on PostgreSQL", () => {
  it("a message arriving for a partition claimed while a later claim waits is not applied before its key's older messages", async () => {
    expect(ofM2.length).toBeGreaterThanOrEqual(2)
    const [first, blocked] = [ofM2[0]!, ofM2[ofM2.length - 1]!]
    const keys = keysIn(first)
    await fc.assert(
      fc.asyncProperty(plan, async ({ keys: sends, window }) => {
        const db = await freshSchema()
        const system = Supervisor.system()
        const fibers: Array<Fiber.Fiber<unknown, unknown>> = []
        const producer = await Postgres.open({ url: db.url, poolSize: 2 })
        await producer.migrate([{ name: "test/effects", sql: ddl((t) => `CREATE TABLE effects (n ${t.serialKey}, key TEXT NOT NULL, seq ${t.int} NOT NULL)`) }])
        const m1 = await runtimeMember(db.url, system, fibers)
        const m2store = await Postgres.open({ url: db.url, poolSize: 2 })
        // m2 runs nothing: what is written for its partitions stays pending (it dies next).
        const nothing = () => undefined
        const m2 = await Cluster.make({ store: m2store, url: db.url, instance: "m2", partitions, heartbeatMs, deadAfterMs, address: { http: "-", mqtt: "-" }, logger: Log.silent, acquired: nothing, released: nothing, pending: nothing, adopt: nothing })
        const locker = await Postgres.open({ url: db.url, poolSize: 1 })
        const unlock = Promise.withResolvers<void>()
        let holding: Promise<unknown> | undefined
        try {
          await m1.cluster.start()
          await m2.start()
          await until("the partitions shared out", () => ofM2.every((p) => m2.owns(p) && !m1.cluster.owns(p)) && ofM1.every((p) => m1.cluster.owns(p)))
          const { send, inOrder } = await sender(producer, m1.cluster.channel, db.url)
          // Written while m2 owns the partition: nobody runs them.
          for (const s of sends) for (let i = 0; i < s.before; i++) await send(keys[s.key]!)
          // Then m1 reads what arrived for its own partitions (its horizon passes them, as in a busy cluster).
          const own = names.find((k) => Inbox.partitionOf(k, partitions) === ofM1[ofM1.length - 1])!
          await send(own)
          await until("m1's own message applied", async () => (await query(db.url, "SELECT 1 FROM effects")).length === 1)
          // m2's transaction still in flight on the last of its partitions, then m2 dies.
          holding = locker.transaction(
            Effect.andThen(locker.query("SELECT owner FROM cluster_partitions WHERE part = ? FOR SHARE").all(blocked), Effect.promise(() => unlock.promise))
          )
          await sleep(20)
          await m2.abandon()
          await until("m1 claimed m2's first partition", () => m1.cluster.owns(first))
          // The claim of the blocked partition waits: messages arrive for the claimed one.
          for (const s of sends) for (let i = 0; i < s.after; i++) await send(keys[s.key]!)
          await sleep(window)
          // Applied while the claim still waited: the notification path ran in the window (else the test shows nothing).
          if ((await query(db.url, "SELECT 1 FROM effects")).length > 1) seen.inWindow++
          unlock.resolve()
          await holding
          await inOrder(m1.consumer)
        } finally {
          unlock.resolve()
          await holding?.catch(() => undefined)
          await m2.abandon()
          await m1.cluster.abandon()
          await Promise.race([m1.consumer.idle(), sleep(5_000)])
          for (const f of fibers) await Effect.runPromise(Fiber.interrupt(f))
          for (const s of [m1.store, m2store, producer, locker]) await s.close()
          await db.drop()
        }
      }),
      { numRuns: Number(process.env.BATON_PROPERTY_RUNS ?? 6), endOnFailure: true }
    )
    expect(seen.inWindow, "runs where messages were applied while the claim waited").toBeGreaterThan(0)
  }, 300_000)

  /**
   * A member loses a partition (another member took it while this one seemed dead) and gets it
   * back while messages of its key, scheduled before, still wait in an actor's mailbox behind
   * another key's slow message. Those run while it did not own the partition are skipped; the
   * reacquiring read schedules them again, behind the later ones still queued from before, which
   * the reacquired ownership lets run: those would be applied first.
   */
  it("messages scheduled before a partition was lost and got back are not applied before their key's older ones, skipped meanwhile", async () => {
    await fc.assert(
      fc.asyncProperty(fc.record({ skipped: fc.integer({ min: 1, max: 3 }), queued: fc.integer({ min: 1, max: 3 }) }), (run) => lostAndBack({ ...run, lost: 0 })),
      { numRuns: Number(process.env.BATON_PROPERTY_RUNS ?? 4), endOnFailure: true }
    )
  }, 300_000)

  /**
   * The same with runs of a key (Processor.batch): a run takes the key's waiting messages as they
   * stand in line. A stale entry (scheduled before the partition was lost) ends skipped, and its
   * end took every waiting entry of its message out of the line, the one scheduled again by the
   * reacquiring read too; a run of the key's older messages then took a message that arrived while
   * the partition was the other's along, ahead of the stale one's (effects 1, 2, 5, 3, 4).
   */
  it("with runs of a key, a stale entry's end does not take its message's new entry out of the line", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({ skipped: fc.integer({ min: 1, max: 3 }), queued: fc.integer({ min: 1, max: 3 }), lost: fc.integer({ min: 1, max: 3 }), batch: fc.integer({ min: 2, max: 8 }) }),
        lostAndBack
      ),
      { numRuns: Number(process.env.BATON_PROPERTY_RUNS ?? 4), endOnFailure: true }
    )
  }, 300_000)

  /**
   * A message whose run began before a lose-and-reclaim cycle and whose done mark runs after it
   * (its `prepare` held across the cycle): the partition is m2's in the store, which m1 has not
   * seen yet, so the key's older messages fail their fenced done marks (skipped) while its turn
   * begins; m1 then sees the partition lost, m2 dies, m1 claims it back and schedules the older
   * ones again. The held run's done mark, fenced on the owner only, found m1 the owner again and
   * committed ahead of them (effects 2, 1 with one older message); fenced on the claim's epoch
   * the message was scheduled under, it fails and is read again in order.
   */
  it("a message whose run began before a partition was lost and got back does not commit ahead of its key's older ones", async () => {
    const part = ofM1[ofM1.length - 1]!
    const key = keysIn(part)[0]!
    // Ticks far apart: the partition m2's in the store, m1 not yet knowing it, for the older messages' runs.
    const slowTicks = { heartbeatMs: 300, deadAfterMs: 900 }
    await fc.assert(
      fc.asyncProperty(fc.record({ older: fc.integer({ min: 1, max: 3 }), later: fc.integer({ min: 0, max: 2 }) }), async ({ older, later }) => {
        // The key's first message and the held one (the one after the older ones) wait in `prepare` until let go.
        const [first, held] = [`${key}-1`, `${key}-${older + 1}`]
        await gatedBeside((event) => event.id === first || event.id === held, slowTicks, async ({ db, producer, m1, m2, gates, gate }) => {
          await m1.cluster.start()
          await until("m1 owns its partitions", () => ofM1.every((p) => m1.cluster.owns(p)))
          const { send, inOrder } = await sender(producer, m1.cluster.channel, db.url)
          for (let i = 0; i < older + 1 + later; i++) await send(key)
          await until("the first message running", () => gates.has(first))
          await until("every message scheduled", () => m1.consumer.inFlight() === older + 1 + later)
          // m2 takes the partition over (m1 seemed dead to it); before m1 sees it, the older messages run (their done marks fail).
          await query(db.url, `UPDATE cluster_partitions SET owner = 'm2', epoch = epoch + 1 WHERE part = ${part}`)
          gate(first).resolve()
          await until("the held message running, or m1 saw the partition lost first", () => gates.has(held) || !m1.cluster.owns(part))
          // Held across the cycle only when its turn began while m1 still thought the partition its own.
          const across = gates.has(held)
          if (across) seen.heldAcross++
          await until("m1 lost the partition", () => !m1.cluster.owns(part))
          // m2 dies: m1 claims the partition back and schedules its pending messages (the older ones among them).
          await m2.die()
          await until("m1 got the partition back", () => m1.cluster.owns(part))
          // Its tenure now: the epoch of its new claim (the fence of what it schedules from here on).
          expect(m1.cluster.tenure(part)).toBe(Number((await query<{ epoch: string }>(db.url, `SELECT epoch FROM cluster_partitions WHERE part = ${part}`))[0]!.epoch))
          // Held across: its old run holds the one actor, so all that is scheduled again waits behind
          // it. Else nothing holds the actor: the older ones run at once (a count of all of them in
          // flight was seen only by chance: under load this test timed out whenever m1 saw the
          // partition lost first), and the held one, scheduled again behind them, waits in its
          // `prepare` again with the later ones behind it.
          if (across) await until("the pending messages scheduled again", () => m1.consumer.inFlight() >= older + 1 + later + 1)
          else await until("the pending messages scheduled again, the older ones run", () => gates.has(held) && m1.consumer.inFlight() >= 1 + later)
          gate(held).resolve()
          await inOrder(m1.consumer)
        })
      }),
      { numRuns: Number(process.env.BATON_PROPERTY_RUNS ?? 4), endOnFailure: true }
    )
    expect(seen.heldAcross, "runs where a message's run was held across the cycle").toBeGreaterThan(0)
  }, 300_000)
})
