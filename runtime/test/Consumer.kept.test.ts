/**
 * What the inbox keeps of a processed message (Consumer's `kept`): masked from the event in memory
 * where the consumer has it with its payload's encoding (the router's deliveries, a backlog's
 * page, a chained run), from the text otherwise. Over the real SQLite store, for any events with
 * cards and sensitive fields (and values whose JSON is not what they are in memory: dates, NaN,
 * undefined, objects under the sensitive name), routed to a processor that forwards each to
 * another (run in its transaction, `chain`), with little room in memory (backlogs read back in
 * pages): every done row keeps exactly `mask.text` of the payload when it mentions a sensitive
 * field, else the payload as it was.
 */
import { afterAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Fiber } from "effect"
import { Log, Sensitive, type Envelope, type Processor } from "@baton/core"
import { Supervisor } from "@baton/actors"
import { Inbox, Outbox, Rejections, Sqlite } from "@baton/store"
import * as Consumer from "../src/Consumer.ts"
import * as ErrorPath from "../src/ErrorPath.ts"
import * as Router from "../src/Router.ts"
import { settle } from "./settle.ts"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 4) * 5
const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
})

const card = fc.constantFrom("4242424242424242", "4000 0000 0000 0002", "5555-5555-5555-4444")
/** A value under the sensitive name, or anywhere: some of them are not as their JSON reads back. */
const odd = fc.oneof(fc.constantFrom(undefined, NaN, null, 4242424242424242), fc.date({ noInvalidDate: true }), fc.record({ number: card }))
const data = fc.record(
  {
    card: fc.oneof(card, odd),
    note: fc.oneof(fc.string(), card.map((c) => `card ${c} declined`)),
    items: fc.array(fc.record({ sku: fc.string({ maxLength: 6 }), qty: fc.integer(), at: fc.oneof(fc.string(), odd) }), { maxLength: 2 }),
    payment: fc.record({ card: fc.oneof(card, odd) }, { requiredKeys: [] })
  },
  { requiredKeys: ["note"] }
)

describe("Consumer: what the inbox keeps of a processed message", () => {
  it("for any events with cards, routed, chained and read back from a backlog: each done row keeps mask.text of its payload when it mentions a sensitive field, else the payload", async () => {
    let round = 0
    await fc.assert(
      fc.asyncProperty(fc.array(data, { minLength: 1, maxLength: 12 }), fc.integer({ min: 1, max: 4 }), async (datas, maxScheduled) => {
        round++
        const dir = mkdtempSync(join(tmpdir(), "baton-kept-"))
        cleanups.push(async () => rmSync(dir, { recursive: true, force: true }))
        const store = await Sqlite.open({ path: join(dir, "baton.db") })
        const inbox = await Inbox.make(store)
        const outbox = await Outbox.make(store)
        const reject = ErrorPath.make({ outbox, rejections: await Rejections.make(store), logger: Log.silent })
        const mask = Sensitive.masker(["card"])
        const system = Supervisor.system()
        const router = Router.make(inbox)
        const fibers: Array<Fiber.Fiber<unknown, unknown>> = []
        const consumers: Array<Consumer.Consumer> = []
        const host = (name: string, topic: string, processor: Processor) => {
          const actors = Array.from({ length: 2 }, (_, i) => Supervisor.make(system, `${name}-${round}-${i}`, { maxAttempts: 3, initialDelayMs: 1, maxDelayMs: 5, factor: 2, maxRestarts: 1000, windowMs: 60_000 }))
          fibers.push(...actors.map((a) => Effect.runFork(a.run)))
          const consumer = Consumer.make({ processor, actors, store, inbox, outbox, reject, poke: () => undefined, router, routePublic: true, logger: Log.silent, mask, maxScheduled })
          consumers.push(consumer)
          router.add(topic, { name, schedule: consumer.schedule, chain: consumer.chain })
        }
        // The first forwards each event (the same data, in memory) to the second, which runs it in the first's transaction.
        host("first", "events/in", { name: "first", consumes: [], topics: ["events/in"], handle: (event) => Effect.succeed([{ type: "fwd", topic: "events/fwd", data: event.data }]) })
        host("second", "events/fwd", { name: "second", consumes: [], topics: ["events/fwd"], handle: () => Effect.succeed([]) })
        const sent = new Map<string, string>()
        const deliveries: Array<() => void> = []
        for (const [i, d] of datas.entries()) {
          const id = `00000000-0000-7000-8000-${String(i).padStart(12, "0")}`
          const event: Envelope.Envelope = { id, type: "in", correlationId: id, causationId: id, key: `k${i % 3}`, occurredAt: new Date(0).toISOString(), data: d }
          const payload = JSON.stringify(event)
          sent.set(id, payload)
          deliveries.push(...(await store.transaction(router.route("events/in", event, payload))))
        }
        for (const deliver of deliveries) deliver()
        await settle(store, consumers)
        // The forwarded events as written (unmasked) to the outbox: every public event goes there.
        for (const r of await store.run(store.query("SELECT payload FROM outbox WHERE topic = 'events/fwd'").all())) {
          const payload = String(r.payload)
          sent.set((JSON.parse(payload) as Envelope.Envelope).id, payload)
        }
        const rows = await store.run(store.query("SELECT processor, envelope_id, status, payload FROM inbox").all())
        expect(rows.length).toBe(datas.length * 2)
        for (const r of rows) {
          expect(r.status).toBe("done")
          const payload = sent.get(String(r.envelope_id))!
          expect(String(r.payload), `${String(r.processor)} ${payload}`).toBe(mask.mentions(payload) ? mask.text(payload) : payload)
        }
        for (const f of fibers) await Effect.runPromise(Fiber.interrupt(f))
        await store.close()
      }),
      { numRuns: runs }
    )
  }, 120_000)
})
