/**
 * Fencing (Cluster.ts) on PostgreSQL, in process: a member whose partitions another member took
 * over in the store while it still thinks it owns them (paused, cut off) runs messages of those
 * partitions through the runtime's Consumer, on every path that commits: a handler's effects, the
 * error path (a failing message rejected), parking (a message of a held key, a failing message
 * holding its key) and a domain mediator's workflow state. The same messages, run while it owned
 * the partitions, commit; after the takeover nothing it commits survives, and its messages stay
 * pending for the new owner. The inbox's pending-to-done update cannot catch this: the new owner
 * has not run them yet.
 */
import { describe, expect, it } from "vitest"
import { Effect, Fiber } from "effect"
import { Log, Topics, type Envelope, type Processor } from "@baton/core"
import { Supervisor } from "@baton/actors"
import { Mediator, WorkflowStore } from "@baton/mediator"
import { Parking, ParkingPolicy } from "@baton/repair"
import { ddl, Inbox, Outbox, Postgres, Rejections, type Store } from "@baton/store"
import { freshSchema, query } from "@baton/testkit/postgres"
import * as Cluster from "../src/Cluster.ts"
import * as Consumer from "../src/Consumer.ts"
import * as ErrorPath from "../src/ErrorPath.ts"
import * as Router from "../src/Router.ts"

const partitions = 2
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const member = (store: Store, url: string, instance: string) =>
  Cluster.make({
    store,
    url,
    instance,
    partitions,
    heartbeatMs: 40,
    deadAfterMs: 200,
    address: { http: "-", mqtt: "-" },
    logger: Log.silent,
    acquired: () => undefined,
    released: () => undefined,
    pending: () => undefined,
    adopt: () => undefined
  })

describe("fencing (Cluster.ts) on PostgreSQL", () => {
  // The fencing check in its own statement (`holds`), and folded into the inbox's done mark (the guard the runtime uses).
  it.each([
    ["checked by holds", false],
    ["checked by the inbox's guard", true]
  ] as const)("a member that lost its partitions without knowing it commits nothing: effects, error path, parking, workflow state (%s)", async (_how, guarded) => {
    const db = await freshSchema()
    const store = await Postgres.open({ url: db.url, poolSize: 4 })
    const other = await Postgres.open({ url: db.url })
    const stale = await member(store, db.url, "m1")
    await stale.start()
    let owner: Cluster.Cluster | undefined
    const system = Supervisor.system()
    const fibers: Array<Fiber.Fiber<unknown, unknown>> = []
    try {
      await store.migrate([{ name: "test/effects", sql: ddl((t) => `CREATE TABLE effects (n ${t.serialKey}, id TEXT NOT NULL)`) }])
      const inbox = await Inbox.make(store, { partitions, notify: (part) => stale.notify(part), ...(guarded ? { guard: Cluster.inboxGuard("m1") } : {}) })
      const outbox = await Outbox.make(store)
      const reject = ErrorPath.make({ outbox, rejections: await Rejections.make(store), logger: Log.silent })
      const parking = await Parking.make(store)
      const workflows = await WorkflowStore.inStore(store)
      const router = Router.make(inbox)
      const record = store.query("INSERT INTO effects (id) VALUES (?)")
      const fails = (event: Envelope.Envelope) => (event.data as { fail?: boolean }).fail === true
      const mediator = Mediator.domain({
        domain: "order",
        workflows: [{ name: "w", domain: "order", steps: [{ name: "s1", commands: [{ name: "c", channel: "pay", type: "pay", data: () => ({}) }] }] }],
        store: workflows,
        defaults: { timeoutMs: 60_000, maxAttempts: 1 },
        logger: Log.silent
      })
      // The failing messages fail before their transaction (in `prepare`): the transaction's own
      // check would stop a handler, so this is how a failure reaches the error path after the
      // partition moved (as when it moves between a handler's last failed attempt and the
      // recording of its failure).
      const failure = (event: Envelope.Envelope) => (fails(event) ? Effect.fail(new Error(`${event.id} fails`)) : Effect.void)
      const processors: ReadonlyArray<Processor<unknown>> = [
        { name: "plain", consumes: ["plain"], handle: (event) => Effect.as(record.run(event.id), []) },
        { name: "failing", consumes: ["failing"], prepare: failure, handle: () => Effect.succeed([]) },
        { name: "parked", consumes: ["parked"], onFailure: "park", prepare: failure, handle: (event) => Effect.as(record.run(event.id), []) },
        mediator.processor as Processor<unknown>
      ]
      // The member still believes it owns every partition; only the store knows better.
      const cluster = { owns: () => true, holds: (key: string) => stale.holds(Inbox.partitionOf(key, partitions)) }
      const consumers = processors.map((processor, i) => {
        const actors = [Supervisor.make(system, `fence-${i}`, { maxAttempts: 1, initialDelayMs: 1, maxDelayMs: 1, factor: 2, maxRestarts: 1000, windowMs: 60_000 })]
        fibers.push(...actors.map((a) => Effect.runFork(a.run)))
        const consumer = Consumer.make({ processor, actors, store, inbox, outbox, reject, parking: ParkingPolicy.make(parking, Log.silent), poke: () => undefined, router, routePublic: false, logger: Log.silent, cluster })
        for (const topic of processor.topics ?? processor.consumes.map(Topics.event)) router.add(topic, { name: processor.name, schedule: consumer.schedule })
        return consumer
      })
      // Where the workflow's command and the hand-off go (recorded in their inboxes, not run).
      for (const topic of [Topics.channel("pay"), Topics.repair]) router.add(topic, { name: topic, schedule: () => undefined })

      const send = async (topic: string, id: string, key: string, data: unknown = {}, type = "x") => {
        const event: Envelope.Envelope = { id, type, correlationId: id, causationId: id, key, occurredAt: new Date().toISOString(), data }
        for (const deliver of await store.transaction(router.route(topic, event, JSON.stringify(event)))) deliver()
        for (const c of consumers) await c.idle()
      }
      /** Runs one message down each path; `tag` keeps the rounds' ids apart. */
      const round = async (tag: string) => {
        await send(Topics.event("plain"), `plain-${tag}`, "k1")
        await send(Topics.event("failing"), `failing-${tag}`, "k2", { fail: true })
        // The key `held` is held from the first round on: its messages park behind it.
        if (tag === "owner") await send(Topics.event("parked"), `parked-fail-${tag}`, "held", { fail: true })
        await send(Topics.event("parked"), `parked-${tag}`, "held")
        await send(Topics.event("parked"), `parked-fail-${tag}-2`, `fails-${tag}`, { fail: true })
        await send(Topics.mediator("order"), `wf-${tag}`, `wf-${tag}`, { workflow: "w", input: {} }, Mediator.messages.start)
      }
      const count = async (sql: string) => Number((await query<{ n: string }>(db.url, sql))[0]!.n)
      /** What the round `tag` committed (its ids are in every row it wrote, events carry them as causes). */
      const committed = async (tag: string) => ({
        effects: await count(`SELECT COUNT(*) AS n FROM effects WHERE id LIKE '%-${tag}'`),
        rejected: await count(`SELECT COUNT(*) AS n FROM rejections WHERE body LIKE '%failing-${tag}%'`),
        outbox: Math.min(1, await count(`SELECT COUNT(*) AS n FROM outbox WHERE payload LIKE '%-${tag}%'`)),
        // Parked behind the key `held` (held from the first round on), and the key a failing message holds.
        parked: await count("SELECT COALESCE(SUM(parked), 0) AS n FROM held_keys WHERE key = 'held'"),
        held: await count(`SELECT COUNT(*) AS n FROM held_keys WHERE key = 'fails-${tag}'`),
        workflow: (await workflows.load(`wf-${tag}`)) === undefined ? 0 : 1,
        commands: await count(`SELECT COUNT(*) AS n FROM inbox WHERE processor = '${Topics.channel("pay")}' AND key = 'wf-${tag}'`),
        pending: await count(`SELECT COUNT(*) AS n FROM inbox WHERE status = 'pending' AND envelope_id LIKE '%-${tag}%' AND processor IN ('plain', 'failing', 'parked', 'order-mediator')`)
      })

      // While it owns the partitions, every path commits (so the check below can fail), and
      // nothing is left pending (the parked message is `parked`).
      await round("owner")
      expect(await committed("owner"), "every path commits for the partitions' owner").toEqual({ effects: 1, rejected: 1, outbox: 1, parked: 1, held: 1, workflow: 1, commands: 1, pending: 0 })

      // Another member takes the partitions over in the store (the first one's heartbeat stops).
      await stale.abandon()
      owner = await member(other, db.url, "m2")
      await owner.start()
      const deadline = Date.now() + 10_000
      while ((await owner.view()).partitions.some((p) => p.owner !== "m2")) {
        if (Date.now() > deadline) throw new Error("m2 did not take the partitions over within 10 s")
        await sleep(40)
      }

      await round("stale")
      expect(await committed("stale"), "nothing committed by a member that lost its partitions; its messages stay pending for the new owner").toEqual({
        effects: 0,
        rejected: 0,
        outbox: 0,
        parked: 1, // still only the first round's
        held: 0,
        workflow: 0,
        commands: 0,
        pending: 5
      })
      mediator.close()
    } finally {
      for (const f of fibers) await Effect.runPromise(Fiber.interrupt(f))
      await stale.abandon()
      await owner?.abandon()
      await store.close()
      await other.close()
      await db.drop()
    }
  }, 60_000)
})
