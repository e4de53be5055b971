/**
 * `Consumer.call`: a message run inside its sender's transaction (a domain mediator's command on
 * its channel), its answer given back to the sender. Over the real SQLite store, for any keyed
 * stream where each message is sent either as any other (pending, scheduled) or called first
 * (queued as any other when the call cannot run it or did not), some handlers failing
 * twice (the sender's transaction fails and runs again, the message then queued), and messages sent
 * again (redeliveries): each message's effect applied once, in order per key, each called one
 * answered once, nothing left pending.
 */
import { afterAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Fiber } from "effect"
import { Log, type Envelope, type Processor } from "@baton/core"
import { Supervisor } from "@baton/actors"
import { Inbox, Outbox, Rejections, Sqlite } from "@baton/store"
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

const plan = fc.record({
  messages: fc.array(
    fc.record({
      key: fc.constantFrom(...keys),
      /** Called in a sender's transaction first, or sent as any other. */
      called: fc.boolean(),
      /** Its handler fails on its first two runs. */
      fails: fc.nat(5).map((n) => n === 0),
      /** Sent again afterwards (called or not). */
      again: fc.option(fc.boolean(), { nil: undefined }),
      /** Whether the sender waits for everything in flight before the next message. */
      settle: fc.nat(3).map((n) => n === 0)
    }),
    { minLength: 1, maxLength: 40 }
  )
})

const answers = "baton/mediator/test"

describe("Consumer.call on SQLite", () => {
  it("for any keyed stream called in its senders' transactions or sent as any other, with failing handlers and redeliveries: each effect once, in order per key, each called message answered once, nothing left pending", async () => {
    let round = 0
    let calledSeen = 0
    let queuedAfterCall = 0
    await fc.assert(
      fc.asyncProperty(plan, async ({ messages }) => {
        const dir = mkdtempSync(join(tmpdir(), "baton-call-"))
        cleanups.push(async () => rmSync(dir, { recursive: true, force: true }))
        const store = await Sqlite.open({ path: join(dir, "baton.db") })
        const table = `effects_${++round}`
        await store.transaction(store.query(`CREATE TABLE ${table} (n INTEGER PRIMARY KEY, key TEXT NOT NULL, seq INTEGER NOT NULL)`).run())
        const inbox = await Inbox.make(store)
        const outbox = await Outbox.make(store)
        const reject = ErrorPath.make({ outbox, rejections: await Rejections.make(store), logger: Log.silent })
        const last = store.query(`SELECT MAX(seq) AS seq FROM ${table} WHERE key = ?`)
        const record = store.query(`INSERT INTO ${table} (key, seq) VALUES (?, ?)`)
        const failures = new Map<string, number>()
        /** Messages that ran before the one before them of their key had committed. */
        const outOfOrder: Array<string> = []
        const processor: Processor = {
          name: "p",
          consumes: [],
          topics: ["baton/channel/p"],
          handle: (event) =>
            Effect.gen(function* () {
              const { seq, fails } = event.data as { seq: number; fails: boolean }
              const before = Number((yield* last.get(event.key))?.seq ?? 0)
              if (before !== seq - 1) outOfOrder.push(`${event.key}: ${seq} after ${before}`)
              yield* record.run(event.key, seq)
              if (fails && (failures.get(event.id) ?? 0) < 2) {
                failures.set(event.id, (failures.get(event.id) ?? 0) + 1)
                return yield* Effect.fail(new Error("transient"))
              }
              return event.replyTo === undefined ? [] : [{ type: "answer", topic: event.replyTo, key: event.key, data: { id: event.id } }]
            })
        }
        const system = Supervisor.system()
        const actors = Array.from({ length: 2 }, (_, i) => Supervisor.make(system, `p-${round}-${i}`, { maxAttempts: 5, initialDelayMs: 1, maxDelayMs: 5, factor: 2, maxRestarts: 1000, windowMs: 60_000 }))
        const fibers = actors.map((a) => Effect.runFork(a.run))
        const router = Router.make(inbox)
        const consumer = Consumer.make({ processor, actors, store, inbox, outbox, reject, poke: () => undefined, router, routePublic: true, logger: Log.silent })
        router.add("baton/channel/p", { name: "p", schedule: consumer.schedule })
        expect(consumer.call, "a processor without prepare on SQLite alone can be called").toBeDefined()
        // The answers of messages run from the queue (as to a mediator's queue): a consumer that takes them.
        router.add(answers, { name: "sender", schedule: () => undefined })
        const answered: Array<string> = []
        try {
          const seqs = new Map<string, number>()
          const sent: Array<readonly [Envelope.Envelope, boolean]> = []
          const scheduled: Array<Promise<void>> = []
          /** Sends a message as a mediator does: called first, else (or when the call fails) queued in the same transaction. */
          const send = async (event: Envelope.Envelope, called: boolean) => {
            const payload = JSON.stringify(event)
            const queued = router.route("baton/channel/p", event, payload)
            const once = Effect.suspend(() => {
              const run = called ? consumer.call?.(event, "baton/channel/p", payload) : undefined
              if (run === undefined) return queued
              return Effect.flatMap(run, (outcome) => {
                if (outcome === undefined) return queued
                return Effect.succeed([
                  () => {
                    calledSeen++
                    outcome.committed()
                    for (const a of outcome.answers) answered.push(String((a.data as { id: string }).id))
                  }
                ])
              })
            })
            // The sender's transaction runs again when the call failed it (as a lost conflict); the message is then queued.
            let deliveries: ReadonlyArray<() => void>
            try {
              deliveries = await store.transaction(once)
            } catch (error) {
              expect(error).toBeInstanceOf(Decision.RunElsewhere)
              queuedAfterCall++
              deliveries = await store.transaction(once)
            }
            scheduled.push(...deliveries.map((d) => Promise.resolve(d())))
          }
          for (const m of messages) {
            const seq = (seqs.get(m.key) ?? 0) + 1
            seqs.set(m.key, seq)
            const event: Envelope.Envelope = { id: `${m.key}-${seq}-${round}`, type: "x", correlationId: "c", causationId: "c", key: m.key, occurredAt: new Date().toISOString(), replyTo: answers, data: { seq, fails: m.fails } }
            sent.push([event, m.called])
            await send(event, m.called)
            if (m.again !== undefined) {
              const [earlier] = sent[Math.floor(sent.length / 2)]!
              await send(earlier, m.again)
            }
            if (m.settle) {
              await Promise.all(scheduled)
              await consumer.idle()
            }
          }
          await Promise.all(scheduled)
          await consumer.idle()
          const rows = await store.run(store.query(`SELECT key, seq FROM ${table} ORDER BY n`).all())
          expect(outOfOrder, "no message ran before an older one of its key").toEqual([])
          expect(rows.length, "every message applied once").toBe(messages.length)
          for (const key of keys) {
            const order = rows.filter((r) => r.key === key).map((r) => Number(r.seq))
            expect(order, `effects of ${key}: once each, in order`).toEqual(Array.from({ length: seqs.get(key) ?? 0 }, (_, i) => i + 1))
          }
          expect(new Set(answered).size, "each called message answered once").toBe(answered.length)
          expect(await inbox.pending("p"), "nothing left pending").toEqual([])
        } finally {
          for (const f of fibers) await Effect.runPromise(Fiber.interrupt(f))
          await store.close()
        }
      }),
      { numRuns: runs, endOnFailure: true }
    )
    expect(calledSeen, "some messages ran in their sender's transaction").toBeGreaterThan(0)
    expect(queuedAfterCall, "some calls failed their sender's transaction, and the message was queued").toBeGreaterThan(0)
  }, 240_000)
})
