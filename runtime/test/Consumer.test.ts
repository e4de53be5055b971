/**
 * The consumer over the real stores (SQLite in a file, PostgreSQL in a throw-away schema): keyed
 * messages run through a pool of concurrent partitions, with random delays inside the handler's
 * transaction and random transient failures. For all such streams: every message's effect applied
 * once, in order per key; on PostgreSQL, transactions of different partitions really overlap.
 * `BATON_PROPERTY_RUNS` sets the number of runs.
 */
import { afterAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Fiber } from "effect"
import { Log, type Envelope, type Processor } from "@baton/core"
import { Supervisor } from "@baton/actors"
import { ddl, Inbox, Outbox, Postgres, Rejections, Sqlite, type Store } from "@baton/store"
import { freshSchema } from "@baton/testkit/postgres"
import * as Consumer from "../src/Consumer.ts"
import * as ErrorPath from "../src/ErrorPath.ts"
import * as Router from "../src/Router.ts"
import { Baton, Schema } from "@baton/sdk"
import * as Mailer from "@baton/order-entry/mailer"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 8)
const keys = ["k1", "k2", "k3", "k4", "k5", "k6"]
const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
})

const engines: ReadonlyArray<readonly [string, () => Promise<Store>]> = [
  [
    "SQLite",
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "baton-consumer-"))
      cleanups.push(async () => rmSync(dir, { recursive: true, force: true }))
      return Sqlite.open({ path: join(dir, "baton.db") })
    }
  ],
  [
    "PostgreSQL",
    async () => {
      const schema = await freshSchema()
      cleanups.push(schema.drop)
      return Postgres.open({ url: schema.url, poolSize: 8 })
    }
  ]
]

const plan = fc.record({
  messages: fc.array(fc.constantFrom(...keys), { minLength: 10, maxLength: 80 }),
  delays: fc.array(fc.nat({ max: 4 }), { minLength: 80, maxLength: 80 }),
  failures: fc.array(fc.boolean(), { minLength: 80, maxLength: 80 }),
  partitions: fc.integer({ min: 2, max: 6 }),
  /** Back-pressure: messages in memory at most (the rest wait in the inbox); the default when absent. */
  maxScheduled: fc.option(fc.integer({ min: 1, max: 12 }), { nil: undefined }),
  /** Runs of a key's waiting messages in one transaction (`Processor.batch`), of at most this many. */
  batch: fc.option(fc.integer({ min: 2, max: 5 }), { nil: undefined })
})

const coveringPlan = {
  messages: Array.from({ length: 80 }, (_, i) => keys[i % keys.length]!),
  delays: Array.from({ length: 80 }, () => 4),
  failures: Array.from({ length: 80 }, () => false),
  partitions: 6,
  maxScheduled: undefined,
  batch: 5
}

describe.each(engines)("Consumer on %s", (engine, open) => {
  it("for any keyed stream over concurrent partitions, with delays, transient failures, any bound on what is in memory and runs of a key's messages or not: each effect once, in order per key, within the bound", async () => {
    let round = 0
    let overlapSeen = 0
    let runsSeen = 0
    await fc.assert(
      fc.asyncProperty(plan, async ({ messages, delays, failures, partitions, maxScheduled, batch }) => {
        const store = await open()
        const table = `effects_${++round}`
        await store.migrate([{ name: `test/${table}`, sql: ddl((t) => `CREATE TABLE ${table} (n ${t.serialKey}, key TEXT NOT NULL, seq ${t.int} NOT NULL)`) }])
        const inbox = await Inbox.make(store)
        const outbox = await Outbox.make(store)
        const reject = ErrorPath.make({ outbox, rejections: await Rejections.make(store), logger: Log.silent })
        const last = store.query(`SELECT MAX(seq) AS seq FROM ${table} WHERE key = ?`)
        const record = store.query(`INSERT INTO ${table} (key, seq) VALUES (?, ?)`)
        const failedOnce = new Set<string>()
        let inside = 0
        let overlap = 0
        let scheduledMax = 0
        let consumer: Consumer.Consumer | undefined
        const handle = (event: Envelope.Envelope) =>
            Effect.gen(function* () {
              const { seq, i } = event.data as { seq: number; i: number }
              inside++
              overlap = Math.max(overlap, inside)
              scheduledMax = Math.max(scheduledMax, consumer?.inFlight() ?? 0)
              try {
                // The previous message of the key is committed before this one runs.
                const before = Number((yield* last.get(event.key))?.seq ?? 0)
                if (before !== seq - 1) return yield* Effect.die(new Error(`${event.key}: seq ${seq} ran after ${before}`))
                yield* Effect.sleep(delays[i % delays.length]!)
                yield* record.run(event.key, seq)
                if (failures[i % failures.length] === true && !failedOnce.has(event.id)) {
                  failedOnce.add(event.id)
                  return yield* Effect.fail(new Error("transient"))
                }
                return []
              } finally {
                inside--
              }
            })
        const processor: Processor = {
          name: "p",
          consumes: ["x"],
          handle,
          // A run applies its messages in order in one transaction; a transient failure of one fails the run.
          ...(batch === undefined
            ? {}
            : {
                batch: {
                  max: batch,
                  prepare: () => Effect.void,
                  handle: (events: ReadonlyArray<Envelope.Envelope>) =>
                    Effect.forEach(events, handle).pipe(Effect.tap(() => Effect.sync(() => void (runsSeen += events.length > 1 ? 1 : 0))))
                }
              })
        }
        const system = Supervisor.system()
        const actors = Array.from({ length: partitions }, (_, i) => Supervisor.make(system, `p-${round}-${i}`, { maxAttempts: 5, initialDelayMs: 1, maxDelayMs: 5, factor: 2, maxRestarts: 1000, windowMs: 60_000 }))
        const fibers = actors.map((a) => Effect.runFork(a.run))
        const router = Router.make(inbox)
        consumer = Consumer.make({ processor, actors, store, inbox, outbox, reject, poke: () => undefined, router, routePublic: true, logger: Log.silent, ...(maxScheduled === undefined ? {} : { maxScheduled }) })
        router.add("events/x", { name: "p", schedule: consumer.schedule })
        try {
          const seqs = new Map<string, number>()
          const scheduled: Array<Promise<void>> = []
          for (const [i, key] of messages.entries()) {
            const seq = (seqs.get(key) ?? 0) + 1
            seqs.set(key, seq)
            const event: Envelope.Envelope = { id: `${key}-${seq}-${round}`, type: "x", correlationId: "c", causationId: "c", key, occurredAt: new Date().toISOString(), data: { seq, i } }
            const payload = JSON.stringify(event)
            const deliver = await store.transaction(router.route("events/x", event, payload))
            scheduled.push(...deliver.map((d) => Promise.resolve(d())))
          }
          await Promise.all(scheduled)
          await consumer.idle()
          const rows = await store.run(store.query(`SELECT key, seq FROM ${table} ORDER BY n`).all())
          expect(rows.length, "every message applied once").toBe(messages.length)
          for (const key of keys) {
            const order = rows.filter((r) => r.key === key).map((r) => Number(r.seq))
            expect(order, `effects of ${key}: once each, in order`).toEqual(Array.from({ length: seqs.get(key) ?? 0 }, (_, i) => i + 1))
          }
          expect(await inbox.pending("p"), "nothing left pending").toEqual([])
          expect(scheduledMax, "messages in memory within the bound").toBeLessThanOrEqual(maxScheduled ?? 1000)
          expect(consumer.backlogged(), "the backlog read out").toBe(false)
          if (overlap > 1) overlapSeen++
        } finally {
          for (const f of fibers) await Effect.runPromise(Fiber.interrupt(f))
          await store.close()
        }
      }),
      // Besides the random plans, one that makes both coverage checks below hold whatever the
      // machine's load: six partitions, handlers that sleep, runs of five (random plans alone left
      // them to chance with 8 runs, and one failed once on a loaded machine).
      { numRuns: runs, endOnFailure: true, examples: [[coveringPlan]] }
    )
    // Partitions run side by side: their handlers (inside their transactions) overlapped on
    // PostgreSQL's pool. SQLite's single connection runs one transaction at a time (group commit).
    if (engine === "PostgreSQL") expect(overlapSeen, "handlers of different partitions overlapped in some run").toBeGreaterThan(0)
    expect(runsSeen, "some runs of several messages of a key were applied").toBeGreaterThan(0)
  }, 240_000)
})

/** A SQLite store with `table` migrated, its queues, and how many times the inbox's status read ran so far. */
const statusHarness = async (name: string, table: string) => {
  const store = await engines[0]![1]()
  cleanups.push(() => store.close())
  await store.migrate([{ name, sql: ddl(() => table) }])
  const inbox = await Inbox.make(store)
  const outbox = await Outbox.make(store)
  const reject = ErrorPath.make({ outbox, rejections: await Rejections.make(store), logger: Log.silent })
  const status = "SELECT status FROM inbox WHERE processor = ? AND envelope_id = ?"
  const statusReads = () => store.breakdown().find((b) => b.text === status)?.count ?? 0
  /** `processor` on one actor, consuming `topic` through the router; its actor's fibers to interrupt at the end. */
  const consuming = (processor: Processor, topic: string) => {
    const system = Supervisor.system()
    const actors = [Supervisor.make(system, processor.name, { maxAttempts: 2, initialDelayMs: 1, maxDelayMs: 5, factor: 2, maxRestarts: 10, windowMs: 60_000 })]
    const fibers = actors.map((a) => Effect.runFork(a.run))
    const router = Router.make(inbox)
    const consumer = Consumer.make({ processor, actors, store, inbox, outbox, reject, poke: () => undefined, router, routePublic: true, logger: Log.silent })
    router.add(topic, { name: processor.name, schedule: consumer.schedule })
    return { router, consumer, stop: async () => { for (const f of fibers) await Effect.runPromise(Fiber.interrupt(f)) } }
  }
  return { store, inbox, outbox, reject, statusReads, consuming }
}

describe("Consumer: a prepare that only reads", () => {
  it("runs without a read of the message's status first (one statement less); a message handled already is still skipped by its done mark: its effect once", async () => {
    const { store, statusReads, consuming } = await statusHarness("test/reads-only", "CREATE TABLE reads_only (key TEXT NOT NULL)")
    const record = store.query("INSERT INTO reads_only (key) VALUES (?)")
    const run = async (readsOnly: boolean) => {
      let prepared = 0
      const processor: Processor<number> = {
        name: `reads-only-${readsOnly}`,
        consumes: ["x"],
        prepare: () => Effect.sync(() => ++prepared),
        prepareReadsOnly: readsOnly,
        handle: (event) => Effect.as(record.run(event.key), [])
      }
      const topic = `events/x-${readsOnly}`
      const { router, consumer, stop } = consuming(processor, topic)
      try {
        const event: Envelope.Envelope = { id: `e-${readsOnly}`, type: "x", correlationId: "c", causationId: "c", key: `k-${readsOnly}`, occurredAt: new Date().toISOString(), data: {} }
        const payload = JSON.stringify(event)
        const before = statusReads()
        for (const deliver of await store.transaction(router.route(topic, event, payload))) await deliver()
        await consumer.idle()
        // Delivered again (a recovery racing the first run): handled once.
        await consumer.schedule(event, topic, payload)
        await consumer.idle()
        const rows = await store.run(store.query("SELECT COUNT(*) AS n FROM reads_only WHERE key = ?").all(event.key))
        return { effects: Number(rows[0]?.n), prepared, statusReads: statusReads() - before }
      } finally {
        await stop()
      }
    }
    const reading = await run(false)
    const readsOnly = await run(true)
    expect(reading).toEqual({ effects: 1, prepared: 1, statusReads: 2 })
    // Prepared again for the redelivery (it only reads), and nothing of it committed.
    expect(readsOnly).toEqual({ effects: 1, prepared: 2, statusReads: 0 })
  })
})

describe("Consumer: the reference mailer's prepare, without a status read", () => {
  it("for any mail events, some delivered again after they were handled or while they run: each mail sent once and recorded once, and no read of a message's status", async () => {
    const { store, inbox, outbox, reject, statusReads } = await statusHarness("test/mails", "CREATE TABLE mails (cause_id TEXT PRIMARY KEY, recipient TEXT NOT NULL, message_id TEXT NOT NULL)")
    const insert = store.query("INSERT INTO mails (cause_id, recipient, message_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING RETURNING recipient, message_id")
    const existing = store.query("SELECT recipient, message_id FROM mails WHERE cause_id = ?")
    const sentOf = (row: Readonly<Record<string, unknown>> | undefined) => (row === undefined ? undefined : { to: String(row.recipient), messageId: String(row.message_id) })
    const ordered = Baton.event("ordered", Schema.Struct({ email: Schema.String }))
    let round = 0
    await fc.assert(
      fc.asyncProperty(fc.array(fc.constantFrom("once", "again-after", "again-racing"), { minLength: 1, maxLength: 12 }), async (plans) => {
        round++
        const sent = new Map<string, number>()
        const processor = Mailer.processor({
          name: `mail-${round}`,
          on: ordered,
          mailer: {
            transport: "store",
            send: async (mail) => {
              sent.set(mail.subject, (sent.get(mail.subject) ?? 0) + 1)
              return { messageId: `<${mail.subject}@test>`, message: undefined }
            }
          },
          store: { sql: store.sql },
          letter: (event) => ({ to: event.data.email, subject: event.id, text: "thanks" }),
          record: (event, l, s) => Effect.map(insert.get(event.id, l.to, s.messageId), sentOf),
          recorded: (event) => Effect.map(existing.get(event.id), sentOf)
        })
        const system = Supervisor.system()
        const actors = [0, 1].map((i) => Supervisor.make(system, `${processor.name}-${i}`, { maxAttempts: 2, initialDelayMs: 1, maxDelayMs: 5, factor: 2, maxRestarts: 10, windowMs: 60_000 }))
        const fibers = actors.map((a) => Effect.runFork(a.run))
        const router = Router.make(inbox)
        const consumer = Consumer.make({ processor: processor as Processor, actors, store, inbox, outbox, reject, poke: () => undefined, router, routePublic: true, logger: Log.silent })
        const topic = `events/ordered-${round}`
        router.add(topic, { name: processor.name, schedule: consumer.schedule })
        const before = statusReads()
        try {
          const events = plans.map((plan, i) => ({ plan, event: { id: `r${round}-m${i}`, type: "ordered", correlationId: "c", causationId: "c", key: `k${i % 3}`, occurredAt: new Date().toISOString(), data: { email: "a@example.com" } } satisfies Envelope.Envelope }))
          for (const { plan, event } of events) {
            const payload = JSON.stringify(event)
            for (const deliver of await store.transaction(router.route(topic, event, payload))) deliver()
            // Scheduled again while its first run is under way (a recovery racing it).
            if (plan === "again-racing") void consumer.schedule(event, topic, payload)
          }
          await consumer.idle()
          // Scheduled again once handled: its prepare finds its mail recorded, and its done mark skips it.
          for (const { plan, event } of events) if (plan === "again-after") await consumer.schedule(event, topic, JSON.stringify(event))
          await consumer.idle()
          for (const { event } of events) {
            expect(sent.get(event.id), event.id).toBe(1)
            expect(await store.run(existing.all(event.id))).toHaveLength(1)
          }
          expect(statusReads() - before).toBe(0)
        } finally {
          for (const f of fibers) await Effect.runPromise(Fiber.interrupt(f))
        }
      }),
      { numRuns: runs * 3 }
    )
  })
})

describe("Consumer: recovery past the bound", () => {
  it("for any stored backlog larger than the bound (a restart after a crash): every message runs once, in order per key, never more in memory than the bound", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.constantFrom(...keys), { minLength: 5, maxLength: 40 }), fc.integer({ min: 1, max: 4 }), async (messages, maxScheduled) => {
        const store = await engines[0]![1]()
        const inbox = await Inbox.make(store)
        const outbox = await Outbox.make(store)
        const reject = ErrorPath.make({ outbox, rejections: await Rejections.make(store), logger: Log.silent })
        const applied: Array<string> = []
        let consumer: Consumer.Consumer | undefined
        let scheduledMax = 0
        const processor: Processor = {
          name: "p",
          consumes: ["x"],
          handle: (event: Envelope.Envelope) =>
            Effect.sync(() => {
              scheduledMax = Math.max(scheduledMax, consumer?.inFlight() ?? 0)
              applied.push(`${event.key}:${(event.data as { seq: number }).seq}`)
              return []
            })
        }
        const system = Supervisor.system()
        const actors = Array.from({ length: 3 }, (_, i) => Supervisor.make(system, `r-${i}`, { maxAttempts: 3, initialDelayMs: 1, maxDelayMs: 5, factor: 2, maxRestarts: 100, windowMs: 60_000 }))
        const fibers = actors.map((a) => Effect.runFork(a.run))
        const router = Router.make(inbox)
        consumer = Consumer.make({ processor, actors, store, inbox, outbox, reject, poke: () => undefined, router, routePublic: true, logger: Log.silent, maxScheduled })
        router.add("events/x", { name: "p", schedule: consumer.schedule })
        try {
          // Committed to the inbox and never scheduled: what a crashed process leaves behind.
          const seqs = new Map<string, number>()
          for (const key of messages) {
            const seq = (seqs.get(key) ?? 0) + 1
            seqs.set(key, seq)
            const event: Envelope.Envelope = { id: `${key}-${seq}`, type: "x", correlationId: "c", causationId: "c", key, occurredAt: new Date().toISOString(), data: { seq } }
            await store.transaction(router.route("events/x", event, JSON.stringify(event)))
          }
          await consumer.recover()
          for (let i = 0; i < 100 && (consumer.backlogged() || consumer.inFlight() > 0); i++) await consumer.idle()
          expect(applied.length, "every message once").toBe(messages.length)
          for (const key of keys) {
            expect(applied.filter((a) => a.startsWith(`${key}:`)), `${key} in order`).toEqual(Array.from({ length: seqs.get(key) ?? 0 }, (_, i) => `${key}:${i + 1}`))
          }
          expect(await inbox.pending("p"), "nothing left pending").toEqual([])
          expect(scheduledMax, "within the bound").toBeLessThanOrEqual(maxScheduled)
        } finally {
          for (const f of fibers) await Effect.runPromise(Fiber.interrupt(f))
          await store.close()
        }
      }),
      { numRuns: runs, endOnFailure: true }
    )
  }, 120_000)
})

describe.each(engines)("Consumer on %s: idle while a broker session's batch is committed", (_, open) => {
  it("idle() waits for a batch handed over by the session (handlerAll) still being committed to the inbox, and for its messages to run", async () => {
    const store = await open()
    const inbox = await Inbox.make(store)
    const outbox = await Outbox.make(store)
    const reject = ErrorPath.make({ outbox, rejections: await Rejections.make(store), logger: Log.silent })
    const applied: Array<string> = []
    const processor: Processor = { name: "idle-batch", consumes: ["x"], handle: (event: Envelope.Envelope) => Effect.sync(() => (applied.push(event.id), [])) }
    const system = Supervisor.system()
    const actors = Array.from({ length: 2 }, (_, i) => Supervisor.make(system, `ib-${i}`, { maxAttempts: 3, initialDelayMs: 1, maxDelayMs: 5, factor: 2, maxRestarts: 100, windowMs: 60_000 }))
    const fibers = actors.map((a) => Effect.runFork(a.run))
    const consumer = Consumer.make({ processor, actors, store, inbox, outbox, reject, poke: () => undefined, router: Router.make(inbox), routePublic: false, logger: Log.silent })
    try {
      const ids = ["b-1", "b-2", "b-3"]
      const message = (id: string) => ({ topic: "events/x", payload: Buffer.from(JSON.stringify({ id, type: "x", correlationId: "c", causationId: "c", key: id, occurredAt: new Date().toISOString(), data: {} })) })
      // The session hands the batch over; the runtime asks whether it is idle before its transaction committed.
      const handed = consumer.handlerAll(ids.map(message))
      await consumer.idle()
      expect([...applied].sort(), "the batch committed and ran").toEqual(ids)
      expect(consumer.busy()).toBe(false)
      await handed
    } finally {
      for (const f of fibers) await Effect.runPromise(Fiber.interrupt(f))
      await store.close()
    }
  })
})

describe.each(engines)("Consumer on %s: the relay's poke", (_, open) => {
  it("for any messages announcing public events or none: the relay is poked once after the commit of each that wrote to the outbox (its entry already readable), never for one that wrote nothing", async () => {
    const store = await open()
    cleanups.push(() => store.close())
    const inbox = await Inbox.make(store)
    const reject = ErrorPath.make({ outbox: await Outbox.make(store), rejections: await Rejections.make(store), logger: Log.silent })
    let run = 0
    await fc.assert(
      fc.asyncProperty(fc.array(fc.boolean(), { minLength: 1, maxLength: 12 }), async (announces) => {
        const outbox = await Outbox.make(store, { instance: `poke-${++run}` })
        const processor: Processor = { name: `poke-${run}`, consumes: ["x"], handle: (event) => Effect.succeed((event.data as { announce: boolean }).announce ? [{ type: "y", data: {} }] : []) }
        const system = Supervisor.system()
        const actors = [Supervisor.make(system, processor.name, { maxAttempts: 1, initialDelayMs: 1, maxDelayMs: 5, factor: 2, maxRestarts: 10, windowMs: 60_000 })]
        const fibers = actors.map((a) => Effect.runFork(a.run))
        const seen: Array<Promise<number>> = []
        const router = Router.make(inbox)
        const consumer = Consumer.make({ processor, actors, store, inbox, outbox, reject, poke: () => void seen.push(outbox.size()), router, routePublic: true, logger: Log.silent })
        const topic = `events/x-${run}`
        router.add(topic, { name: processor.name, schedule: consumer.schedule })
        try {
          // One key: in order, each committed before the next runs.
          for (const [i, announce] of announces.entries()) {
            const event: Envelope.Envelope = { id: `p-${run}-${i}`, type: "x", correlationId: "c", causationId: "c", key: "k", occurredAt: new Date().toISOString(), data: { announce } }
            for (const deliver of await store.transaction(router.route(topic, event, JSON.stringify(event)))) deliver()
          }
          await consumer.idle()
          const sizes = await Promise.all(seen)
          expect(sizes).toHaveLength(announces.filter((a) => a).length)
          // The n-th poke finds n entries at least (later messages may have committed meanwhile).
          sizes.forEach((n, i) => expect(n).toBeGreaterThanOrEqual(i + 1))
        } finally {
          for (const f of fibers) await Effect.runPromise(Fiber.interrupt(f))
        }
      }),
      { numRuns: runs }
    )
  })
})

describe.each(engines)("Consumer on %s: the relay's offer", (_, open) => {
  it("for any messages announcing public events (none, one or several) and replies or not: after the commit of each that wrote to the outbox, the relay is offered exactly its entries (already readable, in order), never poked", async () => {
    const store = await open()
    cleanups.push(() => store.close())
    const inbox = await Inbox.make(store)
    const reject = ErrorPath.make({ outbox: await Outbox.make(store), rejections: await Rejections.make(store), logger: Log.silent })
    const readable = store.query("SELECT seq, topic, payload FROM outbox WHERE seq = ?")
    let run = 0
    await fc.assert(
      fc.asyncProperty(fc.array(fc.record({ announce: fc.integer({ min: 0, max: 3 }), reply: fc.boolean() }), { minLength: 1, maxLength: 10 }), async (messages) => {
        const outbox = await Outbox.make(store, { instance: `offer-${++run}` })
        const processor: Processor = {
          name: `offer-${run}`,
          consumes: ["x"],
          handle: (event) => Effect.succeed(Array.from({ length: (event.data as { announce: number }).announce }, (_, j) => ({ type: "y", data: { j } }))),
          reply: (event) => ((event.data as { reply: boolean }).reply ? { ok: true } : undefined)
        }
        const system = Supervisor.system()
        const actors = [Supervisor.make(system, processor.name, { maxAttempts: 1, initialDelayMs: 1, maxDelayMs: 5, factor: 2, maxRestarts: 10, windowMs: 60_000 })]
        const fibers = actors.map((a) => Effect.runFork(a.run))
        const offered: Array<Promise<ReadonlyArray<{ readonly entry: Outbox.Entry; readonly row: unknown }>>> = []
        let pokes = 0
        const router = Router.make(inbox)
        const consumer = Consumer.make({
          processor,
          actors,
          store,
          inbox,
          outbox,
          reject,
          poke: () => void pokes++,
          offer: (entries) => void offered.push(Promise.all(entries.map(async (entry) => ({ entry, row: await store.run(readable.get(entry.seq)) })))),
          router,
          routePublic: true,
          logger: Log.silent
        })
        const topic = `events/x-${run}`
        router.add(topic, { name: processor.name, schedule: consumer.schedule })
        try {
          // One key: in order, each committed before the next runs.
          for (const [i, data] of messages.entries()) {
            const event: Envelope.Envelope = { id: `o-${run}-${i}`, type: "x", correlationId: "c", causationId: "c", key: "k", occurredAt: new Date().toISOString(), ...(data.reply ? { replyTo: "reply/c/r" } : {}), data }
            for (const deliver of await store.transaction(router.route(topic, event, JSON.stringify(event)))) deliver()
          }
          await consumer.idle()
          const offers = (await Promise.all(offered)).flat()
          expect(pokes).toBe(0)
          // Each entry readable when offered, as written.
          for (const { entry, row } of offers) expect(row).toEqual({ seq: entry.seq, topic: entry.topic, payload: entry.payload })
          // Exactly what the messages wrote, in the order written (sequence numbers without a gap).
          const expected = messages.flatMap((m, i) => [...Array.from({ length: m.announce }, () => `events/y:o-${run}-${i}`), ...(m.reply ? [`reply/c/r:o-${run}-${i}`] : [])])
          expect(offers.map(({ entry }) => `${entry.topic}:${(JSON.parse(entry.payload) as { causationId: string }).causationId}`)).toEqual(expected)
          offers.forEach(({ entry }, i) => i > 0 && expect(entry.seq).toBe(offers[i - 1]!.entry.seq + 1))
          expect(offers.map(({ entry }) => entry.qos)).toEqual(expected.map((t) => (t.startsWith("reply/") ? 0 : 1)))
        } finally {
          for (const f of fibers) await Effect.runPromise(Fiber.interrupt(f))
        }
      }),
      { numRuns: runs }
    )
  })
})

describe("Consumer: the committed step", () => {
  it("for any keyed stream, with or without a committed step (some throwing): it runs once per message, after its commit; a throw is logged and the message stays done", async () => {
    let round = 0
    await fc.assert(
      fc.asyncProperty(fc.array(fc.constantFrom(...keys), { minLength: 1, maxLength: 30 }), fc.option(fc.array(fc.boolean(), { minLength: 30, maxLength: 30 }), { nil: undefined }), async (messages, throws) => {
        const store = await engines[0]![1]()
        const table = `committed_${++round}`
        await store.migrate([{ name: `test/${table}`, sql: ddl(() => `CREATE TABLE ${table} (id TEXT NOT NULL)`) }])
        const inbox = await Inbox.make(store)
        const outbox = await Outbox.make(store)
        const reject = ErrorPath.make({ outbox, rejections: await Rejections.make(store), logger: Log.silent })
        const record = store.query(`INSERT INTO ${table} (id) VALUES (?)`)
        const find = store.query(`SELECT COUNT(*) AS n FROM ${table} WHERE id = ?`)
        const committed: Array<string> = []
        const warned: Array<string> = []
        const processor: Processor = {
          name: "p",
          consumes: ["x"],
          handle: (event: Envelope.Envelope) => Effect.as(record.run(event.id), []),
          ...(throws === undefined
            ? {}
            : {
                committed: async (event: Envelope.Envelope) => {
                  // After the commit: the message's effect is there to read.
                  const seen = Number((await store.run(find.get(event.id)))?.n)
                  committed.push(`${event.id}:${seen}`)
                  if (throws[(event.data as { i: number }).i % throws.length] === true) throw new Error("after-commit")
                }
              })
        }
        const logger: Log.Logger = { log: (level, event, fields) => void (level === "warn" && event === "after-commit step failed" ? warned.push(String(fields?.envelope)) : undefined) }
        const system = Supervisor.system()
        const actors = Array.from({ length: 2 }, (_, i) => Supervisor.make(system, `c-${round}-${i}`, { maxAttempts: 3, initialDelayMs: 1, maxDelayMs: 5, factor: 2, maxRestarts: 100, windowMs: 60_000 }))
        const fibers = actors.map((a) => Effect.runFork(a.run))
        const router = Router.make(inbox)
        const consumer = Consumer.make({ processor, actors, store, inbox, outbox, reject, poke: () => undefined, router, routePublic: true, logger })
        router.add("events/x", { name: "p", schedule: consumer.schedule })
        try {
          const ids: Array<string> = []
          const scheduled: Array<Promise<void>> = []
          for (const [i, key] of messages.entries()) {
            const event: Envelope.Envelope = { id: `${key}-${i}-${round}`, type: "x", correlationId: "c", causationId: "c", key, occurredAt: new Date().toISOString(), data: { i } }
            ids.push(event.id)
            scheduled.push(...(await store.transaction(router.route("events/x", event, JSON.stringify(event)))).map((d) => Promise.resolve(d())))
          }
          await Promise.all(scheduled)
          await consumer.idle()
          expect(await inbox.pending("p"), "every message done").toEqual([])
          expect(Number((await store.run(store.query(`SELECT COUNT(*) AS n FROM ${table}`).get()))?.n), "each effect once").toBe(messages.length)
          if (throws === undefined) {
            expect(committed).toEqual([])
            expect(warned).toEqual([])
          } else {
            expect([...committed].sort(), "committed once per message, each after its commit").toEqual(ids.map((id) => `${id}:1`).sort())
            expect([...warned].sort(), "each throw logged").toEqual(ids.filter((_, i) => throws[i % throws.length] === true).sort())
          }
        } finally {
          for (const f of fibers) await Effect.runPromise(Fiber.interrupt(f))
          await store.close()
        }
      }),
      { numRuns: runs * 2 }
    )
  }, 120_000)
})

describe("Consumer: the order-entry mailer's prepare", () => {
  it("for all events, redeliveries and transports: each mail recorded once; through SMTP sent once per event (a redelivery is skipped by the status read first); without SMTP no status read", async () => {
    const { processor: mailing } = await import("@baton/order-entry/mailer")
    const { store, statusReads, consuming } = await statusHarness("test/mails", "CREATE TABLE mails (cause_id TEXT NOT NULL, message_id TEXT NOT NULL)")
    const insert = store.query("INSERT INTO mails (cause_id, message_id) VALUES (?, ?)")
    const find = store.query("SELECT message_id FROM mails WHERE cause_id = ?")
    let round = 0
    await fc.assert(
      fc.asyncProperty(fc.constantFrom("store" as const, "smtp" as const), fc.array(fc.nat(3), { minLength: 1, maxLength: 8 }), async (transport, order) => {
        round++
        const sends = new Map<string, number>()
        const processor = mailing({
          name: `mailer-${round}`,
          consumes: ["x"],
          mailer: { transport, send: async (mail) => (sends.set(mail.to, (sends.get(mail.to) ?? 0) + 1), { messageId: `m-${mail.to}`, message: undefined }) },
          store: { sql: store.sql },
          letter: (event) => ({ to: event.id, subject: "s", text: "t" }),
          record: (event, _letter, sent) => Effect.map(insert.run(event.id, sent.messageId), () => ({ messageId: sent.messageId })),
          recorded: (event) => Effect.map(find.get(event.id), (row) => (row === undefined ? undefined : { messageId: String(row.message_id) }))
        })
        const topic = `events/x-${round}`
        const { router, consumer, stop } = consuming(processor as Processor, topic)
        const before = statusReads()
        let runs = 0
        try {
          const seen = new Set<number>()
          for (const i of order) {
            const event: Envelope.Envelope = { id: `e-${round}-${i}`, type: "x", correlationId: "c", causationId: "c", key: `k-${i % 2}`, occurredAt: new Date().toISOString(), data: {} }
            const payload = JSON.stringify(event)
            // The first delivery through the inbox; then again (a recovery racing the first run).
            if (seen.has(i)) await consumer.schedule(event, topic, payload)
            else for (const deliver of await store.transaction(router.route(topic, event, payload))) await deliver()
            seen.add(i)
            runs++
            await consumer.idle()
          }
          for (const i of seen) {
            const rows = await store.run(find.all(`e-${round}-${i}`))
            expect(rows).toHaveLength(1)
            if (transport === "smtp") expect(sends.get(`e-${round}-${i}`)).toBe(1)
          }
          expect(statusReads() - before).toBe(transport === "store" ? 0 : runs)
        } finally {
          await stop()
        }
      }),
      { numRuns: 30 }
    )
  })
})

describe("Consumer on PostgreSQL: a processor whose rows are its messages' own", () => {
  it("for any mail events over concurrent partitions, some delivered again while they run: each recorded once and done, and several of them share a group commit (fewer transactions than messages)", async () => {
    const schema = await freshSchema()
    cleanups.push(schema.drop)
    const store = await Postgres.open({ url: schema.url, poolSize: 8 })
    cleanups.push(() => store.close())
    await store.migrate([{ name: "test/own-rows", sql: ddl(() => "CREATE TABLE own_mails (cause_id TEXT PRIMARY KEY, recipient TEXT NOT NULL, message_id TEXT NOT NULL)") }])
    const inbox = await Inbox.make(store)
    const outbox = await Outbox.make(store)
    const reject = ErrorPath.make({ outbox, rejections: await Rejections.make(store), logger: Log.silent })
    const insert = store.query("INSERT INTO own_mails (cause_id, recipient, message_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING RETURNING recipient, message_id")
    const existing = store.query("SELECT recipient, message_id FROM own_mails WHERE cause_id = ?")
    const sentOf = (row: Readonly<Record<string, unknown>> | undefined) => (row === undefined ? undefined : { to: String(row.recipient), messageId: String(row.message_id) })
    const ordered = Baton.event("ordered", Schema.Struct({ email: Schema.String }))
    const begins = () => store.breakdown().find((b) => b.text === "BEGIN")?.count ?? 0
    let round = 0
    await fc.assert(
      fc.asyncProperty(fc.array(fc.boolean(), { minLength: 6, maxLength: 16 }), fc.integer({ min: 4, max: 8 }), async (racing, partitions) => {
        round++
        const processor = Mailer.processor({
          name: `own-${round}`,
          on: ordered,
          mailer: { transport: "store", send: async (mail) => ({ messageId: `<${mail.subject}@test>`, message: undefined }) },
          store: { sql: store.sql },
          letter: (event) => ({ to: event.data.email, subject: event.id, text: "thanks" }),
          record: (event, l, s) => Effect.map(insert.get(event.id, l.to, s.messageId), sentOf),
          recorded: (event) => Effect.map(existing.get(event.id), sentOf),
          renderAgain: true,
          ownRows: true
        })
        const system = Supervisor.system()
        const actors = Array.from({ length: partitions }, (_, i) => Supervisor.make(system, `${processor.name}-${i}`, { maxAttempts: 2, initialDelayMs: 1, maxDelayMs: 5, factor: 2, maxRestarts: 10, windowMs: 60_000 }))
        const fibers = actors.map((a) => Effect.runFork(a.run))
        const router = Router.make(inbox)
        const consumer = Consumer.make({ processor: processor as Processor, actors, store, inbox, outbox, reject, poke: () => undefined, router, routePublic: true, logger: Log.silent })
        const topic = `events/own-${round}`
        router.add(topic, { name: processor.name, schedule: consumer.schedule })
        try {
          const events = racing.map((again, i) => ({ again, event: { id: `o${round}-m${i}`, type: "ordered", correlationId: "c", causationId: "c", key: `k${i}`, occurredAt: new Date().toISOString(), data: { email: "a@example.com" } } satisfies Envelope.Envelope }))
          // All routed in one transaction, then delivered at once: the partitions run them side by side.
          const deliveries = await store.transaction(Effect.forEach(events, ({ event }) => router.route(topic, event, JSON.stringify(event))))
          const before = begins()
          for (const deliver of deliveries.flat()) deliver()
          for (const { again, event } of events) if (again) void consumer.schedule(event, topic, JSON.stringify(event))
          await consumer.idle()
          const transactions = begins() - before
          for (const { event } of events) expect(await store.run(existing.all(event.id)), event.id).toHaveLength(1)
          expect(await inbox.pending(processor.name), "nothing left pending").toEqual([])
          expect(transactions, "messages sharing group commits").toBeLessThan(events.length)
        } finally {
          for (const f of fibers) await Effect.runPromise(Fiber.interrupt(f))
        }
      }),
      { numRuns: runs }
    )
  }, 120_000)
})
