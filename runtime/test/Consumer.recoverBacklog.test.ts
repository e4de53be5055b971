/**
 * After a restart, `recover` reads the inbox's first page; a full page may have more behind it, so
 * it marks a backlog, read once half the room is free (a message's end starts that read). When
 * every message in flight finished while the page was being read (they were scheduled already,
 * their rows still pending in it), no message's end was left to start it: the flag stayed set with
 * nothing reading the backlog, and the next arrival waited in the inbox behind it until a read it
 * started itself. Real SQLite store, inbox and actors; the page's read made slow by the test.
 */
import { describe, expect, it } from "vitest"
import { Effect, Fiber } from "effect"
import { Log, type Envelope, type Processor } from "@baton/core"
import { Supervisor } from "@baton/actors"
import { Inbox, Outbox, Rejections, Sqlite } from "@baton/store"
import * as Consumer from "../src/Consumer.ts"
import * as ErrorPath from "../src/ErrorPath.ts"
import * as Router from "../src/Router.ts"

describe("Consumer: recovery while what it reads finishes", () => {
  it("a full first page whose messages all finished during its read: the backlog is read out, and idle() resolves with it read", async () => {
    const store = await Sqlite.open({ path: ":memory:" })
    const system = Supervisor.system()
    const actors = Array.from({ length: 2 }, (_, i) => Supervisor.make(system, `r-${i}`, { maxAttempts: 3, initialDelayMs: 1, maxDelayMs: 5, factor: 2, maxRestarts: 100, windowMs: 60_000 }))
    const fibers = actors.map((a) => Effect.runFork(a.run))
    try {
      const real = await Inbox.make(store)
      const applied: Array<string> = []
      // The page's answer comes once the messages in flight have finished.
      const inbox: Inbox.Inbox = {
        ...real,
        pendingPage: async (...args) => {
          const page = await real.pendingPage(...args)
          while (applied.length < 2) await new Promise((r) => setTimeout(r, 1))
          await new Promise((r) => setTimeout(r, 5))
          return page
        }
      }
      const outbox = await Outbox.make(store)
      const reject = ErrorPath.make({ outbox, rejections: await Rejections.make(store), logger: Log.silent })
      const processor: Processor = { name: "p", consumes: ["x"], handle: (event: Envelope.Envelope) => Effect.sync(() => (applied.push(event.id), [])) }
      const router = Router.make(inbox)
      const consumer = Consumer.make({ processor, actors, store, inbox, outbox, reject, poke: () => undefined, router, routePublic: true, logger: Log.silent, maxScheduled: 2 })
      router.add("events/x", { name: "p", schedule: consumer.schedule })
      const event = (id: string): Envelope.Envelope => ({ id, type: "x", correlationId: "c", causationId: "c", key: id, occurredAt: new Date().toISOString(), data: {} })
      const route = (id: string) => store.transaction(router.route("events/x", event(id), JSON.stringify(event(id))))
      // Two messages committed to the inbox and scheduled; `recover` reads them as a full page while they run.
      for (const id of ["m-0", "m-1"]) await route(id)
      for (const id of ["m-0", "m-1"]) void consumer.schedule(event(id), "events/x", JSON.stringify(event(id)))
      expect(await consumer.recover(), "a full page").toBe(2)
      await consumer.idle()
      expect({ inFlight: consumer.inFlight(), backlogged: consumer.backlogged() }, "nothing left to read, no read owed").toEqual({ inFlight: 0, backlogged: false })
      // The next arrival runs at once, not behind a read of the inbox.
      for (const deliver of await route("m-2")) deliver()
      expect(consumer.inFlight(), "m-2 scheduled at once").toBe(1)
      await consumer.idle()
      expect([...applied].sort()).toEqual(["m-0", "m-1", "m-2"])
    } finally {
      for (const f of fibers) await Effect.runPromise(Fiber.interrupt(f))
      await store.close()
    }
  })
})
