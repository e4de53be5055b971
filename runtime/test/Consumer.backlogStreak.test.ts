/**
 * Reading the inbox's backlog that keeps failing (not an outage: the real SQLite inbox's page read
 * refused by the test a few times) is retried every 500 ms but logged once per failure streak, and
 * once when the backlog is read again (issue #15); every message still runs once.
 */
import { describe, expect, it } from "vitest"
import { Effect, Fiber } from "effect"
import { Log, type Envelope, type Processor } from "@baton/core"
import { Supervisor } from "@baton/actors"
import { Inbox, Outbox, Rejections, Sqlite } from "@baton/store"
import * as Consumer from "../src/Consumer.ts"
import * as ErrorPath from "../src/ErrorPath.ts"
import * as Router from "../src/Router.ts"

describe("Consumer: reading the backlog failing again and again", () => {
  it("logs one line per failure streak, one when the backlog is read again, and runs every message once", async () => {
    const store = await Sqlite.open({ path: ":memory:" })
    const system = Supervisor.system()
    const actors = Array.from({ length: 2 }, (_, i) => Supervisor.make(system, `s-${i}`, { maxAttempts: 3, initialDelayMs: 1, maxDelayMs: 5, factor: 2, maxRestarts: 100, windowMs: 60_000 }))
    const fibers = actors.map((a) => Effect.runFork(a.run))
    try {
      const real = await Inbox.make(store)
      // The first page (recover's) is read; the next three reads of a page fail, then they go through.
      let pages = 0
      const inbox: Inbox.Inbox = {
        ...real,
        pendingPage: (...args) => (++pages >= 2 && pages <= 4 ? Promise.reject(new Error("page refused by the test")) : real.pendingPage(...args))
      }
      const outbox = await Outbox.make(store)
      const logger = Log.memory()
      const reject = ErrorPath.make({ outbox, rejections: await Rejections.make(store), logger })
      const applied: Array<string> = []
      const processor: Processor = { name: "p", consumes: ["x"], handle: (event: Envelope.Envelope) => Effect.sync(() => (applied.push(event.id), [])) }
      const router = Router.make(inbox)
      const consumer = Consumer.make({ processor, actors, store, inbox, outbox, reject, poke: () => undefined, router, routePublic: true, logger, maxScheduled: 2 })
      router.add("events/x", { name: "p", schedule: consumer.schedule })
      // Committed to the inbox and never scheduled: what a crashed process leaves behind.
      const ids = Array.from({ length: 10 }, (_, i) => `m-${i}`)
      for (const id of ids) {
        const event: Envelope.Envelope = { id, type: "x", correlationId: "c", causationId: "c", key: id, occurredAt: new Date().toISOString(), data: {} }
        await store.transaction(router.route("events/x", event, JSON.stringify(event)))
      }
      await consumer.recover()
      for (let i = 0; i < 200 && (consumer.backlogged() || consumer.inFlight() > 0 || applied.length < ids.length); i++) await new Promise((r) => setTimeout(r, 25))
      expect(pages, "the failing reads were retried").toBeGreaterThanOrEqual(5)
      expect([...applied].sort(), "every message once").toEqual([...ids].sort())
      const lines = (event: string) => logger.lines.filter((l) => l.includes(event))
      expect(lines("reading the inbox backlog failed"), "one line for the streak").toEqual([expect.stringMatching(/processor=p .*page refused by the test/)])
      expect(lines("reading the inbox backlog again"), "one line when back").toEqual([expect.stringContaining("processor=p")])
    } finally {
      for (const f of fibers) await Effect.runPromise(Fiber.interrupt(f))
      await store.close()
    }
  })
})
