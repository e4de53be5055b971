/**
 * `Consumer.call`: a message run inside its sender's transaction (a domain mediator's command on
 * its channel), its answer given back to the sender. Over the real SQLite store, for any keyed
 * stream where each message is sent either as any other (pending, scheduled) or called first
 * (queued as any other when the call cannot run it or did not), some handlers failing
 * twice (the sender's transaction fails and runs again, the message then queued), and messages sent
 * again (redeliveries): each message's effect applied once, in order per key, each called one
 * answered once, nothing left pending. A channel whose processor has a `prepare` (one that only
 * reads) is never called: its handler needs what `prepare` made. The reference mailer without SMTP
 * that renders again (`renderAgain`) renders in its transaction instead, with no `prepare`: it is
 * called, and each mail is recorded and acknowledged once.
 */
import { afterAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Fiber } from "effect"
import { Log, type Envelope, type Processor } from "@baton/core"
import { Mediator } from "@baton/mediator"
import * as Mailer from "@baton/order-entry/mailer"
import { Baton, Schema } from "@baton/sdk"
import { Supervisor } from "@baton/actors"
import { Inbox, Outbox, Rejections, Sqlite, type Store } from "@baton/store"
import * as Consumer from "../src/Consumer.ts"
import * as Decision from "../src/Decision.ts"
import * as ErrorPath from "../src/ErrorPath.ts"
import * as Router from "../src/Router.ts"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 4) * 5
const keys = ["k1", "k2", "k3"]
const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
})

const answers = "baton/mediator/test"
const topic = "baton/channel/p"

/**
 * A processor (`make`) consumed over a fresh SQLite store (`ddl` run first), and `send`: a message sent as a
 * mediator sends a command, called first (when `called`), else (or when the call cannot run it or
 * did not) queued in the same transaction; a sender's transaction that the call failed runs again,
 * the message then queued. What was answered to a call and to the sender's queue is kept.
 */
const harness = async (make: (store: Store) => Processor, ddl: string, round: number) => {
  const dir = mkdtempSync(join(tmpdir(), "baton-call-"))
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }))
  const store = await Sqlite.open({ path: join(dir, "baton.db") })
  await store.transaction(store.query(ddl).run())
  const inbox = await Inbox.make(store)
  const outbox = await Outbox.make(store)
  const reject = ErrorPath.make({ outbox, rejections: await Rejections.make(store), logger: Log.silent })
  const processor = make(store)
  const system = Supervisor.system()
  const actors = Array.from({ length: 2 }, (_, i) => Supervisor.make(system, `p-${round}-${i}`, { maxAttempts: 5, initialDelayMs: 1, maxDelayMs: 5, factor: 2, maxRestarts: 1000, windowMs: 60_000 }))
  const fibers = actors.map((a) => Effect.runFork(a.run))
  const router = Router.make(inbox)
  const consumer = Consumer.make({ processor, actors, store, inbox, outbox, reject, poke: () => undefined, router, routePublic: true, logger: Log.silent })
  router.add(topic, { name: "p", schedule: consumer.schedule })
  /** Answers to calls (`called`) and of messages run from the queue (as to a mediator's queue: a consumer that takes them). */
  const answered = { called: [] as Array<Envelope.Envelope>, queued: [] as Array<Envelope.Envelope> }
  router.add(answers, { name: "sender", schedule: (event) => void answered.queued.push(event) })
  const counts = { called: 0, queuedAfterCall: 0 }
  const scheduled: Array<Promise<void>> = []
  const send = async (event: Envelope.Envelope, called: boolean) => {
    const payload = JSON.stringify(event)
    const queued = router.route(topic, event, payload)
    const once = Effect.suspend(() => {
      const run = called ? consumer.call?.(event, topic, payload) : undefined
      if (run === undefined) return queued
      return Effect.flatMap(run, (outcome) => {
        if (outcome === undefined) return queued
        return Effect.succeed([
          () => {
            counts.called++
            outcome.committed()
            for (const a of outcome.answers) answered.called.push({ ...event, id: `${event.id}/answer`, type: a.type, data: a.data })
          }
        ])
      })
    })
    let deliveries: ReadonlyArray<() => void>
    try {
      deliveries = await store.transaction(once)
    } catch (error) {
      expect(error).toBeInstanceOf(Decision.RunElsewhere)
      counts.queuedAfterCall++
      deliveries = await store.transaction(once)
    }
    scheduled.push(...deliveries.map((d) => Promise.resolve(d())))
  }
  const settle = async () => {
    await Promise.all(scheduled)
    await consumer.idle()
  }
  const stop = async () => {
    for (const f of fibers) await Effect.runPromise(Fiber.interrupt(f))
    await store.close()
  }
  return { store, inbox, consumer, send, settle, answered, counts, stop }
}

/** How a message is sent. */
const sending = {
  key: fc.constantFrom(...keys),
  /** Called in a sender's transaction first, or sent as any other. */
  called: fc.boolean(),
  /** Its handler (the mailer: its record's insert) fails on its first two runs. */
  fails: fc.nat(5).map((n) => n === 0),
  /** Sent again afterwards (called or not). */
  again: fc.option(fc.boolean(), { nil: undefined }),
  /** Whether the sender waits for everything in flight before the next message. */
  settle: fc.nat(3).map((n) => n === 0)
}

const plan = fc.record({
  /** The channel's processor has a `prepare` that only reads (its value needed by the handler). */
  prepared: fc.boolean(),
  messages: fc.array(fc.record(sending), { minLength: 1, maxLength: 40 })
})

describe("Consumer.call on SQLite", () => {
  it("for any keyed stream called in its senders' transactions or sent as any other, with failing handlers, redeliveries and a read-only prepare or none: each effect once, with what its prepare made, in order per key, each called message answered once, nothing left pending", async () => {
    let round = 0
    let calledSeen = 0
    let queuedAfterCall = 0
    await fc.assert(
      fc.asyncProperty(plan, async ({ prepared, messages }) => {
        const table = `effects_${++round}`
        const failures = new Map<string, number>()
        /** Messages that ran before the one before them of their key had committed. */
        const outOfOrder: Array<string> = []
        /** Messages handled without what their `prepare` made. */
        const unprepared: Array<string> = []
        const last = `SELECT MAX(seq) AS seq FROM ${table} WHERE key = ?`
        const processor = (store: Store): Processor<string | undefined> => ({
          name: "p",
          consumes: [],
          topics: [topic],
          ...(prepared ? { prepare: (event: Envelope.Envelope) => Effect.succeed(event.id), prepareReadsOnly: true } : {}),
          handle: (event, made) =>
            Effect.gen(function* () {
              const { seq, fails } = event.data as { seq: number; fails: boolean }
              if (prepared && made !== event.id) unprepared.push(event.id)
              const before = Number((yield* store.query(last).get(event.key))?.seq ?? 0)
              if (before !== seq - 1) outOfOrder.push(`${event.key}: ${seq} after ${before}`)
              yield* store.query(`INSERT INTO ${table} (key, seq) VALUES (?, ?)`).run(event.key, seq)
              if (fails && (failures.get(event.id) ?? 0) < 2) {
                failures.set(event.id, (failures.get(event.id) ?? 0) + 1)
                return yield* Effect.fail(new Error("transient"))
              }
              return event.replyTo === undefined ? [] : [{ type: "answer", topic: event.replyTo, key: event.key, data: { id: event.id } }]
            })
        })
        const h = await harness((store) => processor(store) as Processor, `CREATE TABLE ${table} (n INTEGER PRIMARY KEY, key TEXT NOT NULL, seq INTEGER NOT NULL)`, round)
        expect(h.consumer.call === undefined, "a processor on SQLite alone can be called unless it has a prepare").toBe(prepared)
        try {
          const seqs = new Map<string, number>()
          const sent: Array<Envelope.Envelope> = []
          for (const m of messages) {
            const seq = (seqs.get(m.key) ?? 0) + 1
            seqs.set(m.key, seq)
            const event: Envelope.Envelope = { id: `${m.key}-${seq}-${round}`, type: "x", correlationId: "c", causationId: "c", key: m.key, occurredAt: new Date().toISOString(), replyTo: answers, data: { seq, fails: m.fails } }
            sent.push(event)
            await h.send(event, m.called)
            if (m.again !== undefined) await h.send(sent[Math.floor(sent.length / 2)]!, m.again)
            if (m.settle) await h.settle()
          }
          await h.settle()
          const rows = await h.store.run(h.store.query(`SELECT key, seq FROM ${table} ORDER BY n`).all())
          expect(outOfOrder, "no message ran before an older one of its key").toEqual([])
          expect(unprepared, "every message handled with what its prepare made").toEqual([])
          expect(rows.length, "every message applied once").toBe(messages.length)
          for (const key of keys) {
            const order = rows.filter((r) => r.key === key).map((r) => Number(r.seq))
            expect(order, `effects of ${key}: once each, in order`).toEqual(Array.from({ length: seqs.get(key) ?? 0 }, (_, i) => i + 1))
          }
          const called = h.answered.called.map((a) => String((a.data as { id: string }).id))
          expect(new Set(called).size, "each called message answered once").toBe(called.length)
          expect(await h.inbox.pending("p"), "nothing left pending").toEqual([])
          calledSeen += h.counts.called
          queuedAfterCall += h.counts.queuedAfterCall
        } finally {
          await h.stop()
        }
      }),
      {
        numRuns: runs,
        endOnFailure: true,
        // Always among the runs (the counts below are not left to chance): a message called at once,
        // a second one whose call fails its sender's transaction and is queued.
        examples: [
          [
            {
              prepared: false,
              messages: [
                { key: keys[0]!, called: true, fails: false, again: undefined, settle: true },
                { key: keys[0]!, called: true, fails: true, again: undefined, settle: true }
              ]
            }
          ]
        ]
      }
    )
    expect(calledSeen, "some messages ran in their sender's transaction").toBeGreaterThan(0)
    expect(queuedAfterCall, "some calls failed their sender's transaction, and the message was queued").toBeGreaterThan(0)
  }, 240_000)
})

const mails = fc.record({
  /** The mailer renders again (`renderAgain`): no `prepare`, the mail rendered in the transaction. */
  renderAgain: fc.boolean(),
  messages: fc.array(
    fc.record({
      ...sending,
      /** A plain address (rendered at once) or one nodemailer renders (asynchronously). */
      to: fc.constantFrom("ann@example.com", "Bob@Example.COM", "Ann <ann@example.com>"),
      /** Whether the event asks for a mail. */
      wants: fc.nat(4).map((n) => n !== 0),
      /** Whether its id is fit for a message id (the mail's id then its cause's). */
      fit: fc.boolean()
    }),
    { minLength: 1, maxLength: 30 }
  )
})

describe("Consumer.call on SQLite: the reference mailer on a mediator's channel", () => {
  it("for any mail commands called in their senders' transactions or queued, with failing records and redeliveries: each mail recorded once, each command acknowledged once with its record, and without SMTP rendering again, called in the sender's transaction", async () => {
    let round = 0
    await fc.assert(
      fc.asyncProperty(mails, async ({ renderAgain, messages }) => {
        const table = `mails_${++round}`
        const ordered = Baton.event("ordered", Schema.Struct({ to: Schema.String, wants: Schema.Boolean }))
        const failing = new Map<string, number>()
        const sentOf = (row: Readonly<Record<string, unknown>> | undefined) => (row === undefined ? undefined : { to: String(row.recipient), messageId: String(row.message_id) })
        const mailer = (store: Store) =>
          Mediator.channel(
            Mailer.processor({
              name: "p",
              on: ordered,
              mailer: Mailer.make(),
              store: { sql: store.sql },
              letter: (event) => (event.data.wants ? { to: event.data.to, subject: `Order ${event.id}`, text: "Thank you." } : undefined),
              record: (event, l, s) => {
                const n = failing.get(event.id)
                if (n !== undefined && n < 2) return Effect.suspend(() => (failing.set(event.id, n + 1), Effect.fail(new Error("transient"))))
                return Effect.map(store.query(`INSERT INTO ${table} (cause_id, recipient, message_id, message) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING recipient, message_id`).get(event.id, l.to, s.messageId, s.message ?? null), sentOf)
              },
              recorded: (event) => Effect.map(store.query(`SELECT recipient, message_id FROM ${table} WHERE cause_id = ?`).get(event.id), sentOf),
              renderAgain
            }) as Processor
          )
        const h = await harness(mailer, `CREATE TABLE ${table} (cause_id TEXT PRIMARY KEY, recipient TEXT NOT NULL, message_id TEXT NOT NULL, message TEXT)`, round)
        expect(h.consumer.call !== undefined, "callable when it renders in its transaction").toBe(renderAgain)
        try {
          const sent: Array<Envelope.Envelope> = []
          const ids: Array<string> = []
          for (const [i, m] of messages.entries()) {
            const id = m.fit ? `r${round}-m${i}` : `r${round} m${i}`
            if (m.fails) failing.set(id, 0)
            const event: Envelope.Envelope = { id, type: "ordered", correlationId: "c", causationId: "c", key: m.key, occurredAt: new Date().toISOString(), replyTo: answers, data: { to: m.to, wants: m.wants } }
            sent.push(event)
            ids.push(id)
            await h.send(event, m.called)
            if (i === 0 && renderAgain && m.called && !m.fails) expect(h.counts.called, "the first mail, nothing pending, ran in its sender's transaction").toBe(1)
            if (m.again !== undefined) await h.send(sent[Math.floor(sent.length / 2)]!, m.again)
            if (m.settle) await h.settle()
          }
          await h.settle()
          const rows = new Map((await h.store.run(h.store.query(`SELECT cause_id, recipient, message_id, message FROM ${table}`).all())).map((r) => [String(r.cause_id), r]))
          const acks = [...h.answered.called, ...h.answered.queued].map((a) => a.data as { commandId: string; results: ReadonlyArray<{ type: string; data: unknown }> })
          expect(acks.map((a) => a.commandId).sort(), "each command acknowledged once").toEqual([...ids].sort())
          for (const [i, m] of messages.entries()) {
            const id = ids[i]!
            const row = rows.get(id)
            expect(row !== undefined, `${id}: its mail recorded once, when it asks for one`).toBe(m.wants)
            if (row !== undefined) expect(JSON.parse(String(row.message)).messageId, `${id}: the record keeps the rendered mail`).toBe(row.message_id)
            expect(acks.find((a) => a.commandId === id)!.results, `${id}: acknowledged with its record`).toEqual(row === undefined ? [] : [{ type: "email-sent", data: sentOf(row) }])
          }
          expect(rows.size, "no other mail").toBe(messages.filter((m) => m.wants).length)
          expect(await h.inbox.pending("p"), "nothing left pending").toEqual([])
        } finally {
          await h.stop()
        }
      }),
      { numRuns: runs, endOnFailure: true }
    )
  }, 240_000)
})
