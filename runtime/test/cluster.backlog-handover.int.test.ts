/**
 * A dead member's partition acquired while this member's processor reads its backlog (more
 * pending than `maxScheduled`): the partition's pending messages, older and newer than where the
 * backlog's reader is in its pass, still apply once each and in order per key. Real Cluster.ts,
 * the runtime's Consumer wired as layers/Consuming.ts wires it; the backlog's reader's second
 * page of a pass is read once the partition is owned (the hand-over between two pages).
 */
import { describe, expect, it } from "vitest"
import { Effect, Fiber } from "effect"
import { Log, Topics, type Envelope, type Processor } from "@baton/core"
import { Supervisor } from "@baton/actors"
import { ddl, Inbox, Outbox, Postgres, Rejections } from "@baton/store"
import { freshSchema, query } from "@baton/testkit/postgres"
import * as Cluster from "../src/Cluster.ts"
import * as Consumer from "../src/Consumer.ts"
import * as ErrorPath from "../src/ErrorPath.ts"
import * as Router from "../src/Router.ts"
import { memberM1, peerM2, sleep, until } from "./handoverPg.ts"

const partitions = 6
const most = 4
const ofM2 = Cluster.assign(["m1", "m2"], partitions).flatMap((owner, part) => (owner === "m2" ? [part] : []))
const ofM1 = Cluster.assign(["m1", "m2"], partitions).flatMap((owner, part) => (owner === "m1" ? [part] : []))
const names = Array.from({ length: 400 }, (_, i) => `key-${i}`)
const partOf = (key: string) => Inbox.partitionOf(key, partitions)
const actorOf = (key: string) => Consumer.partitionOf(key, most)

describe("a partition acquired during a backlog (Cluster.ts with the runtime's Consumer) on PostgreSQL", () => {
  it("applies the dead member's pending messages once each, in order per key", async () => {
    const db = await freshSchema()
    const system = Supervisor.system()
    const fibers: Array<Fiber.Fiber<unknown, unknown>> = []
    const store = await Postgres.open({ url: db.url, poolSize: 4 })
    const producer = await Postgres.open({ url: db.url, poolSize: 2 })
    await producer.migrate([{ name: "test/effects", sql: ddl((t) => `CREATE TABLE effects (n ${t.serialKey}, key TEXT NOT NULL, seq ${t.int} NOT NULL)`) }])
    // a, b: m1's, on actors of their own (held in `prepare`); c: m1's; q: m2's until it dies.
    const a = names.find((k) => ofM1.includes(partOf(k)))!
    const b = names.find((k) => ofM1.includes(partOf(k)) && actorOf(k) !== actorOf(a))!
    const c = names.find((k) => ofM1.includes(partOf(k)) && k !== a && k !== b)!
    const q = names.find((k) => partOf(k) === ofM2[0])!
    const gates = new Map<string, PromiseWithResolvers<void>>()
    const gate = (id: string) => gates.get(id) ?? gates.set(id, Promise.withResolvers<void>()).get(id)!
    let cluster: Cluster.Cluster | undefined
    const base = await Inbox.make(store, { partitions, notify: (part) => cluster?.notify(part) ?? Effect.void, guard: Cluster.inboxGuard("m1") })
    let betweenPages: (() => Promise<void>) | undefined
    const inbox: Inbox.Inbox = {
      ...base,
      pendingPage: async (processor, after, limit) => {
        const hook = after > 0 ? betweenPages : undefined
        if (hook !== undefined) {
          betweenPages = undefined
          await hook()
        }
        return base.pendingPage(processor, after, limit)
      }
    }
    const outbox = await Outbox.make(store)
    const reject = ErrorPath.make({ outbox, rejections: await Rejections.make(store), logger: Log.silent })
    const record = store.query("INSERT INTO effects (key, seq) VALUES (?, ?)")
    const processor: Processor<unknown> = {
      name: "p",
      consumes: ["x"],
      handle: (event) => Effect.as(record.run(event.key, (event.data as { seq: number }).seq), []),
      prepare: (event: Envelope.Envelope) => Effect.promise(() => (event.key === a || event.key === b ? gate(event.id).promise : Promise.resolve()))
    }
    const actors = Array.from({ length: most }, (_, i) => Supervisor.make(system, `bh-${i}`, { maxAttempts: 3, initialDelayMs: 1, maxDelayMs: 5, factor: 2, maxRestarts: 1000, windowMs: 60_000 }))
    fibers.push(...actors.map((x) => Effect.runFork(x.run)))
    const ownership = { owns: (key: string) => cluster?.owns(partOf(key)) === true, holds: (key: string) => cluster!.holds(partOf(key)), tenure: (key: string) => cluster!.tenure(partOf(key)) }
    const consumer = Consumer.make({ processor, actors, store, inbox, outbox, reject, poke: () => undefined, router: Router.make(inbox), routePublic: false, logger: Log.silent, cluster: ownership, maxScheduled: most })
    cluster = await memberM1(store, db.url, partitions, () => consumer)
    const m2 = await peerM2(db.url, ofM2)
    const notify = producer.query("SELECT pg_notify(?, ?)")
    const sending = await Inbox.make(producer, { partitions, notify: (part) => Effect.asVoid(notify.get(cluster!.channel, String(part))) })
    const seqs = new Map<string, number>()
    const send = (key: string) => {
      const seq = (seqs.get(key) ?? 0) + 1
      seqs.set(key, seq)
      const id = `${key}-${seq}`
      const event: Envelope.Envelope = { id, type: "x", correlationId: id, causationId: id, key, occurredAt: new Date().toISOString(), data: { seq } }
      return producer.transaction(sending.receive("p", { envelopeId: id, topic: Topics.event("x"), key, payload: JSON.stringify(event) }))
    }
    try {
      await cluster.start()
      await until("m1 owns its partitions", () => ofM1.every((p) => cluster!.owns(p)) && !cluster!.owns(ofM2[0]!))
      for (const k of [a, b, a, b]) await send(k)
      await until("four held", () => consumer.inFlight() === most && gates.has(`${a}-1`) && gates.has(`${b}-1`))
      // q-1 while q's partition is m2's, then c-1 (left in the inbox: a backlog), then q-2.
      await send(q)
      await send(c)
      await send(q)
      await until("a backlog", () => consumer.backlogged())
      // The pass's second page is read once m2 is dead and its partitions are m1's.
      let handedOver = false
      betweenPages = async () => {
        await m2.die()
        await until("m1 acquired m2's partitions", () => cluster!.owns(ofM2[0]!))
        handedOver = true
      }
      gate(`${a}-1`).resolve()
      gate(`${b}-1`).resolve()
      await until("the hand-over between two pages", () => handedOver)
      await sleep(100)
      for (const k of [a, b]) for (let i = 1; i <= 2; i++) gate(`${k}-${i}`).resolve()
      await until("every message applied", async () => Number((await query<{ n: string }>(db.url, "SELECT COUNT(*) AS n FROM inbox WHERE status = 'pending'"))[0]!.n) === 0, 15_000)
      await consumer.idle()
      const applied = await query<{ key: string; seq: string }>(db.url, "SELECT key, seq FROM effects ORDER BY n")
      for (const key of seqs.keys()) {
        const order = applied.filter((x) => x.key === key).map((x) => Number(x.seq))
        expect(order, `effects of ${key}: once each, in order`).toEqual(Array.from({ length: seqs.get(key)! }, (_, i) => i + 1))
      }
    } finally {
      await m2.die()
      for (const g of gates.values()) g.resolve()
      await cluster.abandon()
      await Promise.race([consumer.idle(), sleep(5_000)])
      for (const f of fibers) await Effect.runPromise(Fiber.interrupt(f))
      for (const s of [store, producer]) await s.close()
      await db.drop()
    }
  }, 30_000)
})
