/**
 * `Consumer.handlerAll` (the messages of an external broker's session that arrived together, one
 * transaction) on PostgreSQL, with a message PostgreSQL cannot store as it is: an envelope whose
 * key (or id) holds a NUL character (`\u0000` in its JSON: valid JSON, a valid envelope, but not
 * valid in a TEXT column). It is a bad message: recorded as a rejection, and the others of its
 * batch committed, not the whole batch failing (and so never acknowledged: the broker sends it
 * again and again, the processor's session stuck behind it).
 */
import { afterAll, describe, expect, it } from "vitest"
import { Effect, Fiber } from "effect"
import { Log, type Envelope, type Processor } from "@baton/core"
import { Supervisor } from "@baton/actors"
import { Inbox, Outbox, Postgres, Rejections } from "@baton/store"
import { freshSchema } from "@baton/testkit/postgres"
import * as Consumer from "../src/Consumer.ts"
import * as ErrorPath from "../src/ErrorPath.ts"
import * as Router from "../src/Router.ts"

const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
})

/** A consumer of processor `p` on a fresh schema: what it ran, its rejections. */
const consumerOn = async () => {
  const schema = await freshSchema()
  cleanups.push(schema.drop)
  const store = await Postgres.open({ url: schema.url, poolSize: 4 })
  cleanups.push(() => store.close())
  const inbox = await Inbox.make(store)
  const outbox = await Outbox.make(store)
  const rejections = await Rejections.make(store)
  const reject = ErrorPath.make({ outbox, rejections, logger: Log.silent })
  const ran: Array<string> = []
  const processor: Processor = { name: "p", consumes: ["x"], handle: (event: Envelope.Envelope) => Effect.sync(() => void ran.push(event.id)).pipe(Effect.as([])) }
  const system = Supervisor.system()
  const actors = [Supervisor.make(system, "p-0", { maxAttempts: 2, initialDelayMs: 1, maxDelayMs: 5, factor: 2, maxRestarts: 10, windowMs: 60_000 })]
  const fibers = actors.map((a) => Effect.runFork(a.run))
  const router = Router.make(inbox)
  const consumer = Consumer.make({ processor, actors, store, inbox, outbox, reject, poke: () => undefined, router, routePublic: false, logger: Log.silent })
  return { consumer, ran, rejections, fibers }
}

describe("Consumer on PostgreSQL: a batch holding an envelope PostgreSQL cannot store", () => {
  it("the bad one is rejected, the others committed and run", async () => {
    const { consumer, ran, rejections, fibers } = await consumerOn()
    try {
      const envelope = (id: string, key: string) => ({ id, type: "x", correlationId: "c", causationId: "c", key, occurredAt: new Date().toISOString(), data: {} })
      const message = (e: object) => ({ topic: "events/x", payload: Buffer.from(JSON.stringify(e)) })
      await consumer.handlerAll([message(envelope("a", "k")), message(envelope("bad", "k\u0000")), message(envelope("nul\u0000id", "k")), message(envelope("b", "k"))])
      await consumer.idle()
      expect(ran).toEqual(["a", "b"])
      expect(await rejections.counts()).toEqual({ "schema-violation": 2 })
    } finally {
      for (const f of fibers) await Effect.runPromise(Fiber.interrupt(f))
    }
  }, 30_000)

  it("a payload with a raw NUL byte (not JSON) is rejected, the others of its batch committed and run", async () => {
    const { consumer, ran, rejections, fibers } = await consumerOn()
    try {
      const envelope = (id: string) => ({ id, type: "x", correlationId: "c", causationId: "c", key: "k", occurredAt: new Date().toISOString(), data: {} })
      const message = (e: object) => ({ topic: "events/x", payload: Buffer.from(JSON.stringify(e)) })
      // V8's JSON.parse error message quotes the text it could not parse, the NUL byte with it.
      await consumer.handlerAll([message(envelope("a")), { topic: "events/x", payload: Buffer.from('{"id":\u0000}') }, message(envelope("b"))])
      await consumer.idle()
      expect(ran).toEqual(["a", "b"])
      expect(await rejections.counts()).toEqual({ "malformed-json": 1 })
    } finally {
      for (const f of fibers) await Effect.runPromise(Fiber.interrupt(f))
    }
  }, 30_000)
})
