/**
 * A message delivered in-process for a partition this member has just taken over from a dead one,
 * before the partition's pending messages were read (`acquired`'s `recover`): it runs after its
 * key's older pending messages, not ahead of them (the README: "the new owner schedules the
 * partition's pending messages in arrival order"). Real Cluster.ts and the runtime's Consumer
 * on PostgreSQL; the arrival comes through the processor's own handler (as a broker session or
 * the router delivers it) once the partition is owned, while the `acquired` hook's read of its
 * pending rows is still to come.
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
const ofM2 = Cluster.assign(["m1", "m2"], partitions).flatMap((owner, part) => (owner === "m2" ? [part] : []))
const partOf = (key: string) => Inbox.partitionOf(key, partitions)

describe("a message delivered in-process for a partition just taken over (Cluster.ts with the runtime's Consumer) on PostgreSQL", () => {
  it("runs after its key's older pending messages", async () => {
    const db = await freshSchema()
    const system = Supervisor.system()
    const fibers: Array<Fiber.Fiber<unknown, unknown>> = []
    const store = await Postgres.open({ url: db.url, poolSize: 4 })
    const producer = await Postgres.open({ url: db.url, poolSize: 2 })
    await producer.migrate([{ name: "test/effects", sql: ddl((t) => `CREATE TABLE effects (n ${t.serialKey}, key TEXT NOT NULL, seq ${t.int} NOT NULL)`) }])
    // q: m2's partition until m2 dies.
    const q = Array.from({ length: 400 }, (_, i) => `key-${i}`).find((k) => partOf(k) === ofM2[0])!
    let cluster: Cluster.Cluster | undefined
    /** Runs once the partition is owned, before its pending rows are read (the `acquired` hook's read). */
    let beforeRead: (() => Promise<void>) | undefined
    const base = await Inbox.make(store, { partitions, notify: (part) => cluster?.notify(part) ?? Effect.void, guard: Cluster.inboxGuard("m1") })
    const inbox: Inbox.Inbox = {
      ...base,
      pendingIn: async (processor, parts) => {
        const hook = parts.includes(ofM2[0]!) ? beforeRead : undefined
        beforeRead = undefined
        if (hook !== undefined) await hook()
        return base.pendingIn(processor, parts)
      }
    }
    const outbox = await Outbox.make(store)
    const reject = ErrorPath.make({ outbox, rejections: await Rejections.make(store), logger: Log.silent })
    const record = store.query("INSERT INTO effects (key, seq) VALUES (?, ?)")
    const processor: Processor<unknown> = { name: "p", consumes: ["x"], handle: (event) => Effect.as(record.run(event.key, (event.data as { seq: number }).seq), []) }
    const actors = Array.from({ length: 2 }, (_, i) => Supervisor.make(system, `aa-${i}`, { maxAttempts: 3, initialDelayMs: 1, maxDelayMs: 5, factor: 2, maxRestarts: 1000, windowMs: 60_000 }))
    fibers.push(...actors.map((x) => Effect.runFork(x.run)))
    const ownership = {
      owns: (key: string) => cluster?.owns(partOf(key)) === true,
      holds: (key: string) => cluster!.holds(partOf(key)),
      tenure: (key: string) => cluster!.tenure(partOf(key)),
      acquiring: (key: string) => cluster?.acquiring(partOf(key)) === true
    }
    const consumer = Consumer.make({ processor, actors, store, inbox, outbox, reject, poke: () => undefined, router: Router.make(inbox), routePublic: false, logger: Log.silent, cluster: ownership })
    cluster = await memberM1(store, db.url, partitions, () => consumer)
    const m2 = await peerM2(db.url, ofM2)
    const sending = await Inbox.make(producer, { partitions })
    const eventOf = (seq: number): Envelope.Envelope => {
      const id = `${q}-${seq}`
      return { id, type: "x", correlationId: id, causationId: id, key: q, occurredAt: new Date().toISOString(), data: { seq } }
    }
    try {
      await cluster.start()
      await until("m1 owns its partitions", () => cluster!.owns(Cluster.assign(["m1", "m2"], partitions).indexOf("m1")) && !cluster!.owns(ofM2[0]!))
      // q-1 and q-2 written while q's partition is m2's (m2 never ran them: it dies).
      for (const seq of [1, 2]) {
        const e = eventOf(seq)
        await producer.transaction(sending.receive("p", { envelopeId: e.id, topic: Topics.event("x"), key: q, payload: JSON.stringify(e) }))
      }
      // q-3 delivered here once the partition is m1's, before its pending rows are read.
      let delivered = false
      beforeRead = async () => {
        expect(cluster!.owns(ofM2[0]!)).toBe(true)
        const e = eventOf(3)
        await consumer.handler({ topic: Topics.event("x"), payload: Buffer.from(JSON.stringify(e)) } as Parameters<typeof consumer.handler>[0])
        // Whatever it scheduled has its turn before the read comes back.
        await sleep(100)
        delivered = true
      }
      await m2.die()
      await until("m1 acquired m2's partitions and q-3 delivered", () => delivered)
      await until("every message applied", async () => Number((await query<{ n: string }>(db.url, "SELECT COUNT(*) AS n FROM inbox WHERE status = 'pending'"))[0]!.n) === 0, 15_000)
      await consumer.idle()
      const applied = await query<{ key: string; seq: string }>(db.url, "SELECT key, seq FROM effects ORDER BY n")
      expect(applied.map((x) => Number(x.seq)), `effects of ${q}: once each, in arrival order`).toEqual([1, 2, 3])
    } finally {
      await m2.die()
      await cluster.abandon()
      await Promise.race([consumer.idle(), sleep(5_000)])
      for (const f of fibers) await Effect.runPromise(Fiber.interrupt(f))
      for (const s of [store, producer]) await s.close()
      await db.drop()
    }
  }, 30_000)
})
