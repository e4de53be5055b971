/**
 * `Consumer.chain` in a cluster of two (Cluster.ts, real PostgreSQL): a member chains a handler's
 * event into a local consumer when it owns the event's key's partition, whatever the other
 * member owns; and a chained run stays fenced across a partition hand-over.
 *
 * Each member is wired as the runtime wires it (layers/ProcessorHost.ts, layers/Consuming.ts): its
 * own store, the inbox's guard, a router, a Consumer per processor fed by the cluster's hooks.
 * Processor `r` (the root) announces, for each message, an event to `c` of the key its data
 * names; `c` keeps a counter per key (read, then written: two runs of a key side by side lose one)
 * and records each message it applies.
 */
import { describe, expect, it } from "vitest"
import { Effect, Fiber } from "effect"
import { Log, Topics, type Envelope, type Processor } from "@baton/core"
import { Supervisor } from "@baton/actors"
import { ddl, Inbox, Outbox, Postgres, Rejections, type Store } from "@baton/store"
import { freshSchema, query } from "@baton/testkit/postgres"
import * as Cluster from "../src/Cluster.ts"
import * as Consumer from "../src/Consumer.ts"
import * as ErrorPath from "../src/ErrorPath.ts"
import * as Router from "../src/Router.ts"
import { sharedOut, sleep, until } from "./handoverPg.ts"

const partitions = 6
const heartbeatMs = 40
const deadAfterMs = 400
const { ofM1, ofM2, keysIn } = sharedOut(partitions)

/** What a member's consumer of `c` does on a chained event's first run (by its id): wait for this before its write (`before:<id>`: before its first statement). */
type Gates = Map<string, Promise<void>>

const member = async (instance: string, url: string, system: ReturnType<typeof Supervisor.system>, fibers: Array<Fiber.Fiber<unknown, unknown>>, gates: Gates) => {
  // Named, so that a test can cut its connections as a crash (SIGKILL) does.
  const store = await Postgres.open({ url, poolSize: 4, applicationName: `baton/${instance}` })
  const control = await Postgres.open({ url, poolSize: 2, applicationName: `baton/${instance}` })
  let cluster: Cluster.Cluster | undefined
  const inbox = await Inbox.make(store, { partitions, notify: (part) => cluster?.notify(part) ?? Effect.void, guard: Cluster.inboxGuard(instance) })
  const outbox = await Outbox.make(store)
  const reject = ErrorPath.make({ outbox, rejections: await Rejections.make(store), logger: Log.silent })
  const router = Router.make(inbox)
  const readCount = store.query("SELECT v FROM counters WHERE key = ?")
  const writeCount = store.query("INSERT INTO counters (key, v) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET v = excluded.v")
  const record = store.query("INSERT INTO effects (consumer, id, key, instance) VALUES (?, ?, ?, ?)")
  const chained = { n: 0 }
  const r: Processor<unknown> = {
    name: "r",
    consumes: [],
    topics: [Topics.event("r")],
    handle: (event) =>
      Effect.as(record.run("r", event.id, event.key, instance), [
        { type: "c", topic: Topics.event("c"), key: (event.data as { to: string }).to, id: `${event.id}-c`, data: { root: event.id } }
      ])
  }
  const c: Processor<unknown> = {
    name: "c",
    consumes: [],
    topics: [Topics.event("c")],
    handle: (event) =>
      Effect.gen(function* () {
        // Held before any statement: a chained run's row (which goes out with the first) not written yet.
        const before = gates.get(`before:${event.id}`)
        if (before !== undefined) {
          gates.delete(`before:${event.id}`)
          yield* Effect.promise(() => before)
        }
        const row = yield* readCount.get(event.key)
        const gate = gates.get(event.id)
        if (gate !== undefined) {
          gates.delete(event.id)
          yield* Effect.promise(() => gate)
        }
        yield* writeCount.run(event.key, Number(row?.v ?? 0) + 1)
        yield* record.run("c", event.id, event.key, instance)
        return []
      })
  }
  const partOf = (key: string) => Inbox.partitionOf(key, partitions)
  const consumers = new Map<string, Consumer.Consumer>()
  for (const processor of [r, c]) {
    const actors = Array.from({ length: 2 }, (_, i) => Supervisor.make(system, `${instance}-${processor.name}-${i}`, { maxAttempts: 3, initialDelayMs: 1, maxDelayMs: 5, factor: 2, maxRestarts: 1000, windowMs: 60_000 }))
    fibers.push(...actors.map((a) => Effect.runFork(a.run)))
    // As layers/ProcessorHost.ts gives the runtime's ownership.
    const ownership = {
      owns: (key: string) => cluster?.owns(partOf(key)) === true,
      holds: (key: string) => cluster!.holds(partOf(key)),
      chains: true,
      tenure: (key: string) => cluster!.tenure(partOf(key)),
      acquiring: (key: string) => cluster!.acquiring(partOf(key))
    }
    const consumer = Consumer.make({ processor, actors, store, inbox, outbox, reject, poke: () => undefined, router, routePublic: true, logger: Log.silent, cluster: ownership })
    consumers.set(processor.name, consumer)
    const chain = consumer.chain
    router.add(processor.topics![0]!, {
      name: processor.name,
      schedule: consumer.schedule,
      chaining: consumer.chaining,
      chain:
        chain === undefined
          ? undefined
          : (event, topic, payload, at) =>
              chain(event, topic, payload, at)?.pipe(
                Effect.map((ran) => {
                  if (ran !== undefined) chained.n++
                  return ran
                })
              )
    })
  }
  const all = [...consumers.values()]
  // The hooks as layers/Consuming.ts gives them.
  cluster = await Cluster.make({
    store,
    control,
    url,
    instance,
    partitions,
    heartbeatMs,
    deadAfterMs,
    address: { http: "-", mqtt: "-" },
    logger: Log.silent,
    acquired: async (parts) => void (await Promise.all(all.map((k) => k.recover(parts)))),
    released: () => undefined,
    pending: (parts) => void all.map((k) => k.recover(parts)),
    arrived: (entries) => {
      for (const e of entries) void consumers.get(e.processor)?.schedule(JSON.parse(e.payload) as Envelope.Envelope, e.topic, e.payload)
    },
    adopt: () => undefined
  })
  return {
    cluster,
    chained,
    idle: () => Promise.all(all.map((k) => k.idle())),
    close: async () => {
      await cluster!.abandon()
      await Promise.race([Promise.all(all.map((k) => k.idle())), sleep(5_000)])
      await store.close()
      await control.close()
    }
  }
}

/** Two members' world: a fresh schema, a producer writing messages to `r`'s or `c`'s inbox (waking the owner). */
const world = async (body: (w: {
  readonly url: string
  readonly gates: Gates
  readonly start: (instance: string) => Promise<Awaited<ReturnType<typeof member>>>
  readonly send: (processor: "r" | "c", key: string, data: unknown) => Promise<string>
  readonly settled: (members: ReadonlyArray<Awaited<ReturnType<typeof member>>>) => Promise<void>
}) => Promise<void>) => {
  const db = await freshSchema()
  const system = Supervisor.system()
  const fibers: Array<Fiber.Fiber<unknown, unknown>> = []
  const members: Array<Awaited<ReturnType<typeof member>>> = []
  const producer: Store = await Postgres.open({ url: db.url, poolSize: 2 })
  try {
    await producer.migrate([
      {
        name: "test/effects",
        sql: ddl((t) => `CREATE TABLE effects (n ${t.serialKey}, consumer TEXT NOT NULL, id TEXT NOT NULL, key TEXT NOT NULL, instance TEXT NOT NULL); CREATE TABLE counters (key TEXT PRIMARY KEY, v ${t.int} NOT NULL)`)
      }
    ])
    await producer.migrate(Cluster.migrations)
    const gates: Gates = new Map()
    const notify = producer.query("SELECT pg_notify(?, ?)")
    let inbox: Inbox.Inbox | undefined
    let n = 0
    await body({
      url: db.url,
      gates,
      start: async (instance) => {
        const m = await member(instance, db.url, system, fibers, gates)
        members.push(m)
        await m.cluster.start()
        inbox ??= await Inbox.make(producer, { partitions, notify: (part) => Effect.asVoid(notify.get(m.cluster.channel, String(part))) })
        return m
      },
      send: async (processor, key, data) => {
        const id = `${processor}-${++n}`
        const event: Envelope.Envelope = { id, type: processor, correlationId: id, causationId: id, key, occurredAt: new Date().toISOString(), data }
        await producer.transaction(inbox!.receive(processor, { envelopeId: id, topic: Topics.event(processor), key, payload: JSON.stringify(event) }))
        return id
      },
      settled: async (ms) => {
        await until("every message applied", async () => Number((await query<{ n: string }>(db.url, "SELECT COUNT(*) AS n FROM inbox WHERE status = 'pending'"))[0]!.n) === 0, 20_000)
        await Promise.all(ms.map((m) => m.idle()))
      }
    })
  } finally {
    for (const m of members) await m.close()
    for (const f of fibers) await Effect.runPromise(Fiber.interrupt(f))
    await producer.close()
    await db.drop()
  }
}

/**
 * m1 and m2 sharing the partitions; m1 chains root `r-1`'s event into `c` (key `k`, m1's) and its
 * run is held (`held`) after its row was written (the partition's row locked to its commit).
 */
const chainHeld = async ({ gates, start, send }: Pick<Parameters<Parameters<typeof world>[0]>[0], "gates" | "start" | "send">) => {
  const m1 = await start("m1")
  const m2 = await start("m2")
  await until("the partitions shared out", () => ofM1.every((p) => m1.cluster.owns(p)) && ofM2.every((p) => m2.cluster.owns(p)) && ofM1.every((p) => !m2.cluster.owns(p)))
  const [rootKey, k] = [keysIn(...ofM1)[0]!, keysIn(...ofM1)[1]!]
  const held = Promise.withResolvers<void>()
  const root = "r-1"
  gates.set(`${root}-c`, held.promise)
  expect(await send("r", rootKey, { to: k })).toBe(root)
  await until("the chained run held after its row", () => !gates.has(`${root}-c`))
  return { m1, m2, k, root, held }
}

/** Every message of `c` applied once, and each key's counter the number of them (no run of a key beside another). */
const onceEach = async (url: string, sent: ReadonlyArray<{ readonly id: string; readonly key: string }>) => {
  const effects = await query<{ id: string; key: string }>(url, "SELECT id, key FROM effects WHERE consumer = 'c' ORDER BY n")
  for (const s of sent) expect(effects.filter((e) => e.id === s.id), `c applied ${s.id} once`).toHaveLength(1)
  expect(effects).toHaveLength(sent.length)
  const counters = new Map((await query<{ key: string; v: string }>(url, "SELECT key, v FROM counters")).map((r) => [r.key, Number(r.v)]))
  for (const key of new Set(sent.map((s) => s.key))) expect(counters.get(key), `counter of ${key}: one per message (no lost update)`).toBe(sent.filter((s) => s.key === key).length)
}

describe("Consumer.chain in a cluster of two (PostgreSQL)", () => {
  it("each member chains the events of the keys it owns into its consumers; the others' are queued to their owner", async () => {
    await world(async ({ url, start, send, settled }) => {
      const m1 = await start("m1")
      const m2 = await start("m2")
      await until("the partitions shared out", () => ofM1.every((p) => m1.cluster.owns(p)) && ofM2.every((p) => m2.cluster.owns(p)) && ofM1.every((p) => !m2.cluster.owns(p)))
      const [own1, own2] = [keysIn(...ofM1), keysIn(...ofM2)]
      const sent: Array<{ id: string; key: string }> = []
      // Roots of each member's keys, their events to a key of the same member's or of the other's.
      for (let i = 0; i < 8; i++)
        for (const [rootKeys, toKeys] of [[own1, own1], [own1, own2], [own2, own2], [own2, own1]] as const) {
          const to = toKeys[i % 3]!
          const id = await send("r", rootKeys[i]!, { to })
          sent.push({ id: `${id}-c`, key: to })
        }
      await settled([m1, m2])
      // Then one root at a time on each member, its event of a key that member owns: with nothing of
      // `c` running there (in the burst above, a busy `c` may refuse every chain: no `ownRows`), it is
      // chained, in the root's transaction.
      const before = [m1.chained.n, m2.chained.n]
      for (const [i, own] of [own1, own2].entries()) {
        const id = await send("r", own[3]!, { to: own[4]! })
        sent.push({ id: `${id}-c`, key: own[4]! })
        await settled([m1, m2])
        expect([m1, m2][i]!.chained.n, `m${i + 1} chained its own key's event`).toBe(before[i]! + 1)
      }
      await onceEach(url, sent)
      // Every event applied by the owner of its key.
      const effects = await query<{ key: string; instance: string }>(url, "SELECT key, instance FROM effects WHERE consumer = 'c'")
      for (const e of effects) expect(e.instance, `${e.key}'s event applied by its owner`).toBe(ofM1.includes(Inbox.partitionOf(e.key, partitions)) ? "m1" : "m2")
    })
  }, 60_000)

  /**
   * m1 alone chains a root's event into `c` (key `k`, of a partition m2 gets once it joins); the
   * chained run's row is written (it went out with the run's first read) and its run is held.
   * m2 joins meanwhile, and a message of `k` arrives. The chained run's row locks the partition's
   * row to its commit (the inbox's guard): m1 cannot hand the partition over before that, nor m2
   * claim it, so `k`'s two messages never run side by side on the two members (a lost update of
   * its counter), and each is applied once. Unfenced, m2 takes the partition and applies the new
   * message while m1's chained run is still open: counter 1 for 2 messages.
   */
  it("a chained run held across a partition hand-over: the hand-over waits for it; each message of its key once, never side by side", async () => {
    await world(async ({ url, gates, start, send, settled }) => {
      const m1 = await start("m1")
      await until("m1 owns every partition", () => Array.from({ length: partitions }, (_, p) => p).every((p) => m1.cluster.owns(p)))
      const [rootKey, k] = [keysIn(...ofM1)[0]!, keysIn(...ofM2)[0]!]
      // The root's event to `c` waits in its chained run until let go.
      const release = Promise.withResolvers<void>()
      const root = `r-1`
      gates.set(`${root}-c`, release.promise)
      expect(await send("r", rootKey, { to: k })).toBe(root)
      await until("the chained run held", () => !gates.has(`${root}-c`))
      const m2 = await start("m2")
      // The hand-over would happen now: it waits for the chained run's transaction (or, unfenced, does not).
      const part = Inbox.partitionOf(k, partitions)
      await Promise.race([until("m2 owns k's partition", () => m2.cluster.owns(part)), sleep(1_500)])
      const later = await send("c", k, {})
      // Unfenced, m2 applies it now (m1's chained run still open).
      await Promise.race([until("the later message applied", async () => (await query(url, `SELECT 1 FROM effects WHERE id = '${later}'`)).length > 0), sleep(800)])
      release.resolve()
      await until("m2 owns k's partition", () => m2.cluster.owns(part))
      await settled([m1, m2])
      await onceEach(url, [
        { id: `${root}-c`, key: k },
        { id: later, key: k }
      ])
      expect(m1.chained.n, "the root's event was chained on m1").toBeGreaterThan(0)
    })
  }, 60_000)

  /**
   * Lose-then-reclaim with a chained run decided and its row not yet written: m1 chains a root's
   * event into `c` (key `k`, partition 4: m1's with m2, m3's once m3 joins) and its run is held
   * before its first statement, so its row (which goes out with that statement, fenced on the
   * tenure the run was decided in) is not written and locks nothing. m3 joins, m1 releases the
   * partition to m3, and a later message of `k` arrives; m3 dies, m1 claims the partition back (a
   * new tenure). Then the held run goes on: its row finds the partition m1's again.
   * - `applied by m3`: m3 applied the later message before it died.
   * - `pending across`: m3's run of it was held too (nothing written), so it is still pending when
   *   m1 claims the partition back, and m1's claim schedules it (it waits for the chained run's
   *   transaction, `openHere`). The chained row must not commit ahead of it: its write finds a
   *   pending message of its key (`receiveDoneFirst`), and its fence's tenure is no longer m1's.
   *   Either refuses it (red only with both taken out: c applied the chained event first).
   * Each message of `k` once, the counter 2 (no lost update), in the order they reached the inbox.
   */
  it.each(["applied by m3", "pending across"] as const)("a chained run decided under a tenure whose row goes out after the partition was lost and claimed back (%s): each message once, in order", async (mode) => {
    await world(async ({ url, gates, start, send, settled }) => {
      const m1 = await start("m1")
      const m2 = await start("m2")
      await until("the partitions shared out", () => ofM1.every((p) => m1.cluster.owns(p)) && ofM2.every((p) => m2.cluster.owns(p)) && ofM1.every((p) => !m2.cluster.owns(p)))
      // Partition 4: m1's of two, m3's of three; the root's key in partition 0 (m1's in both).
      const part = 4
      expect(Cluster.assign(["m1", "m2"], partitions)[part]).toBe("m1")
      expect(Cluster.assign(["m1", "m2", "m3"], partitions)[part]).toBe("m3")
      expect(Cluster.assign(["m1", "m2", "m3"], partitions)[0]).toBe("m1")
      const [rootKey, k] = [keysIn(0)[0]!, keysIn(part)[0]!]
      const tenure = m1.cluster.tenure(part)
      const held = Promise.withResolvers<void>()
      const root = "r-1"
      gates.set(`before:${root}-c`, held.promise)
      expect(await send("r", rootKey, { to: k })).toBe(root)
      await until("the chained run held before its first statement", () => !gates.has(`before:${root}-c`))
      const m3 = await start("m3")
      await until("m3 owns the partition", () => m3.cluster.owns(part) && !m1.cluster.owns(part))
      // The later message: m3's run of it held before its first statement (`pending across`, never let go).
      const heldOnM3 = Promise.withResolvers<void>()
      if (mode === "pending across") gates.set("before:c-2", heldOnM3.promise)
      const later = await send("c", k, {})
      expect(later).toBe("c-2")
      if (mode === "applied by m3") await until("m3 applied the later message", async () => (await query(url, `SELECT 1 FROM effects WHERE id = '${later}' AND instance = 'm3'`)).length > 0)
      else await until("m3's run of the later message held", () => !gates.has("before:c-2"))
      await m3.cluster.abandon()
      await until("m1 claimed the partition back", () => m1.cluster.owns(part) && m1.cluster.tenure(part) > tenure && !m1.cluster.acquiring(part), 10_000)
      held.resolve()
      await settled([m1, m2])
      heldOnM3.resolve()
      await onceEach(url, [
        { id: later, key: k },
        { id: `${root}-c`, key: k }
      ])
      const effects = await query<{ id: string }>(url, `SELECT id FROM effects WHERE consumer = 'c' AND key = '${k}' ORDER BY n`)
      expect(effects.map((e) => e.id), "c applied k's messages in their order").toEqual([later, `${root}-c`])
    })
  }, 60_000)

  /**
   * A crash (SIGKILL) with a chained run open: m1 chains a root's event into `c` (key `k`, m1's)
   * and its run is held after its row was written (the partition's row locked to the commit).
   * m1 dies: its heartbeat stops and its connections are cut (as the kernel closes a killed
   * process's sockets), so the root's transaction rolls back, chained run with it. m2 claims m1's
   * partitions once m1 is dead, runs the root again (chaining its event into `c` now that it owns
   * `k`, or queueing it) after a later message of `k` (sent before m2 claimed). Each once, the
   * counter 2, in order; m1's chained run never commits (its connection gone).
   */
  it("a crash (SIGKILL) with a chained run open: the survivor claims the partitions and runs the root again; each message once, in order", async () => {
    await world(async ({ url, gates, start, send, settled }) => {
      const { m1, m2, k, root, held } = await chainHeld({ gates, start, send })
      await m1.cluster.abandon()
      await query(url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'baton/m1'")
      const later = await send("c", k, {})
      await until("m2 owns m1's partitions", () => ofM1.every((p) => m2.cluster.owns(p) && !m2.cluster.acquiring(p)), 10_000)
      held.resolve()
      await settled([m2])
      await onceEach(url, [
        { id: `${root}-c`, key: k },
        { id: later, key: k }
      ])
      const effects = await query<{ id: string; instance: string }>(url, `SELECT id, instance FROM effects WHERE consumer = 'c' AND key = '${k}' ORDER BY n`)
      // The later message reached the inbox before the root ran again (and announced its event again).
      expect(effects.map((e) => `${e.id}@${e.instance}`), "applied by m2, in order").toEqual([`${later}@m2`, `${root}-c@m2`])
    })
  }, 60_000)

  /**
   * A member hung (SIGSTOP, a paused VM: silent, its connections open) with a chained run open
   * after its row: the partition's row stays locked to that transaction's end, so the survivor's
   * claim of it waits (up to `lock_timeout`). The survivor must keep heartbeating meanwhile, or
   * a third member would take it for dead too (its heartbeat older than `deadAfterMs`) and claim
   * its partitions in turn. Once the hung run ends, the claim goes through; each message once.
   */
  it("a member hung with a chained run open: the survivor's claim waits for it, and the survivor keeps heartbeating meanwhile", async () => {
    await world(async ({ url, gates, start, send, settled }) => {
      const { m1, m2, k, root, held } = await chainHeld({ gates, start, send })
      // Hung: no heartbeat, nothing more of its own; its open transaction stays.
      await m1.cluster.abandon()
      const age = async () => Number((await query<{ age: string }>(url, "SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint - heartbeat_ms AS age FROM cluster_members WHERE instance = 'm2'"))[0]!.age)
      // m1 dead (400 ms), m2's claims begin; watch m2's heartbeat for 1.5 s while its claim of k's partition waits.
      await sleep(deadAfterMs + 2 * heartbeatMs)
      let oldest = 0
      const claimed = await (async () => {
        try {
          for (const until = Date.now() + 1_500; Date.now() < until; await sleep(20)) oldest = Math.max(oldest, await age())
          return m2.cluster.owns(Inbox.partitionOf(k, partitions))
        } finally {
          held.resolve()
        }
      })()
      expect(claimed, "k's partition not claimed while the hung run holds it").toBe(false)
      expect(oldest, "m2's heartbeat age while its claim waits").toBeLessThan(deadAfterMs)
      await until("m2 owns m1's partitions", () => ofM1.every((p) => m2.cluster.owns(p)), 10_000)
      await settled([m2])
      await onceEach(url, [{ id: `${root}-c`, key: k }])
    })
  }, 60_000)
})
