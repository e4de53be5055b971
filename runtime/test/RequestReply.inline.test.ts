/**
 * Requests handled inside the ingress's append transaction (single instance, embedded broker,
 * SQLite; Consumer's `inline`): the real ingress log, ingress, router and consumer over a SQLite
 * file. For all streams of requests and plain events over a few keys, in batches or a turn apart,
 * with handlers that fail transiently (a failed run in the ingress's transaction fails it, and it
 * runs again at once with that request refused: received pending and scheduled as any other, the
 * batch's other requests run inline again; Consumer's `inline`): every event is acknowledged, every
 * effect applied once and in the order of the log per key, every request answered once, and
 * nothing left pending. Both ways (in the ingress's transaction and scheduled) are taken. A batch
 * run again keeps each event's ingress span and trace, and ends the spans of the runs rolled back.
 */
import { afterAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Fiber, Result } from "effect"
import { Log, Topics, Trace, type Envelope, type Processor } from "@baton/core"
import { Supervisor } from "@baton/actors"
import { ddl, Inbox, IngressLog, Outbox, Rejections, Sqlite } from "@baton/store"
import * as Consumer from "../src/Consumer.ts"
import * as ErrorPath from "../src/ErrorPath.ts"
import * as Ingress from "../src/Ingress.ts"
import type { Tracing } from "../src/Observability.ts"
import * as Router from "../src/Router.ts"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 30)
const keys = ["k1", "k2", "k3"]
const dir = mkdtempSync(join(tmpdir(), "baton-rr-inline-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const tick = () => new Promise<void>((resolve) => setImmediate(resolve))
const contracts = Ingress.contractsOf([{ name: "ping", processors: [], initiating: [{ name: "ping", decode: (d: unknown) => Result.succeed(d), key: (d) => (d as { key: string }).key }] }])

const scenario = fc.array(
  fc.record({
    key: fc.constantFrom(...keys),
    /** With `replyTo`: a request (only requests run in the ingress's transaction). */
    request: fc.nat(4).map((n) => n > 0),
    /** A turn of the event loop before it (its own batch), or appended with the ones before. */
    gap: fc.boolean(),
    /** Its handler's first runs fail. */
    fails: fc.nat(4).map((n) => (n < 3 ? 0 : n - 2))
  }),
  { minLength: 1, maxLength: 30 }
)

describe("Request-reply: requests handled in the ingress's transaction", () => {
  it("for any stream of requests and events, with transient handler failures: each acknowledged, each effect once in order per key, each request answered once", async () => {
    let inlined = 0
    let scheduled = 0
    let round = 0
    await fc.assert(
      fc.asyncProperty(scenario, async (steps) => {
        const store = await Sqlite.open({ path: join(dir, `baton-${++round}.db`) })
        const table = `effects_${round}`
        await store.migrate([{ name: `test/${table}`, sql: ddl((t) => `CREATE TABLE ${table} (n ${t.serialKey}, key TEXT NOT NULL, seq ${t.int} NOT NULL)`) }])
        const inbox = await Inbox.make(store)
        const outbox = await Outbox.make(store)
        const reject = ErrorPath.make({ outbox, rejections: await Rejections.make(store), logger: Log.silent })
        const record = store.query(`INSERT INTO ${table} (key, seq) VALUES (?, ?)`)
        const last = store.query(`SELECT MAX(seq) AS seq FROM ${table} WHERE key = ?`)
        const failures = new Map<string, number>()
        const outOfOrder: Array<string> = []
        const processor: Processor = {
          name: "p",
          consumes: ["ping"],
          handle: (event) =>
            Effect.gen(function* () {
              const { seq, fails } = event.data as { seq: number; fails: number }
              // The previous event of the key is applied (and committed, or in this transaction) before this one runs.
              const before = Number((yield* last.get(event.key))?.seq ?? 0)
              if (before !== seq - 1) outOfOrder.push(`${event.key}: ${seq} ran after ${before}`)
              yield* record.run(event.key, seq)
              const failed = failures.get(event.id) ?? 0
              if (failed < fails) {
                failures.set(event.id, failed + 1)
                return yield* Effect.fail(new Error("transient"))
              }
              return []
            }),
          reply: (event) => ({ seq: (event.data as { seq: number }).seq })
        }
        const system = Supervisor.system()
        const actors = Array.from({ length: 2 }, (_, i) => Supervisor.make(system, `p-${round}-${i}`, { maxAttempts: 10, initialDelayMs: 1, maxDelayMs: 2, factor: 2, maxRestarts: 1000, windowMs: 60_000 }))
        const fibers = actors.map((a) => Effect.runFork(a.run))
        const router = Router.make(inbox)
        const consumer = Consumer.make({ processor, actors, store, inbox, outbox, reject, poke: () => undefined, router, routePublic: true, logger: Log.silent })
        router.add(Topics.accepted("ping"), {
          name: "p",
          schedule: (event, topic, payload) => {
            scheduled++
            void consumer.schedule(event, topic, payload)
          },
          inline: (event, topic, payload) => {
            const run = consumer.inline(event, topic, payload)
            return run === undefined ? undefined : Effect.map(run, (after) => (after === undefined ? undefined : (inlined++, after)))
          }
        })
        let ingress: Ingress.Ingress | undefined
        const log = await IngressLog.make(store, { maxBytes: 4096, previewBytes: 16, inline: { forwarder: () => ingress!.inline.forwarder(), settled: () => ingress!.inline.settled(), again: (error) => ingress!.inline.again(error) } })
        ingress = Ingress.make({ contracts, maxPayloadBytes: 4096, store, log, outbox, reject, router, inline: true, logger: Log.silent })
        await ingress.start(() => undefined)
        try {
          const seqs = new Map<string, number>()
          const received: Array<Promise<boolean>> = []
          const requests = new Map<string, number>()
          for (const [i, step] of steps.entries()) {
            if (step.gap) await tick()
            const seq = (seqs.get(step.key) ?? 0) + 1
            seqs.set(step.key, seq)
            const id = `r-${round}-${i}`
            if (step.request) requests.set(id, seq)
            const envelope = { id, type: "ping", key: step.key, ...(step.request ? { replyTo: "reply/c/replies" } : {}), data: { key: step.key, seq, fails: step.fails } }
            received.push(ingress.receive("initiate/ping", Buffer.from(JSON.stringify(envelope)), "c").then(() => true, () => false))
          }
          expect(await Promise.all(received), "every event acknowledged").toEqual(steps.map(() => true))
          await consumer.idle()
          // A scheduled message's run may still be starting: wait until nothing is pending.
          for (let i = 0; i < 200 && (await inbox.pending("p")).length > 0; i++) {
            await new Promise((r) => setTimeout(r, 5))
            await consumer.idle()
          }
          expect(outOfOrder, "no event ran before an older one of its key").toEqual([])
          const rows = await store.run(store.query(`SELECT key, seq FROM ${table} ORDER BY n`).all())
          for (const key of keys)
            expect(rows.filter((r) => r.key === key).map((r) => Number(r.seq)), `effects of ${key}: once each, in order`).toEqual(Array.from({ length: seqs.get(key) ?? 0 }, (_, i) => i + 1))
          expect(await inbox.pending("p"), "nothing left pending").toEqual([])
          const replies = (await store.run(store.query("SELECT topic, payload FROM outbox WHERE topic = 'reply/c/replies' ORDER BY seq").all())).map((r) => JSON.parse(String(r.payload)) as Envelope.Envelope)
          expect(replies.map((r) => r.correlationId).sort(), "each request answered once").toEqual([...requests.keys()].sort())
          for (const r of replies) expect((r.data as { seq: number }).seq).toBe(requests.get(r.correlationId))
        } finally {
          for (const f of fibers) await Effect.runPromise(Fiber.interrupt(f))
          await store.close()
        }
      }),
      { numRuns: runs, endOnFailure: true }
    )
    // Both ways were taken (else the property says nothing about their interleaving).
    expect(inlined, "requests handled in the ingress's transaction").toBeGreaterThan(0)
    expect(scheduled, "events scheduled").toBeGreaterThan(0)
  }, 120_000)

  /**
   * One processor a request type (`names`, each answering with the request's data), over `file`,
   * behind an ingress forwarding inline; `receive` gives each one request in one batch (one turn)
   * and resolves once every reply is in the outbox (their correlation ids, sorted). `chained`: a
   * processor of that name taking `events/<chained>`, run in its sender's transaction (Consumer's `chain`).
   */
  const several = async (
    file: string,
    names: ReadonlyArray<string>,
    handle: (name: string, event: Envelope.Envelope) => Effect.Effect<ReadonlyArray<Envelope.Next>, Error>,
    tracing?: Tracing,
    chained?: string
  ) => {
    const store = await Sqlite.open({ path: join(dir, file) })
    const inbox = await Inbox.make(store)
    const outbox = await Outbox.make(store)
    const reject = ErrorPath.make({ outbox, rejections: await Rejections.make(store), logger: Log.silent })
    const system = Supervisor.system()
    const actors = names.map((n) => Supervisor.make(system, `${file}-${n}`, { maxAttempts: 10, initialDelayMs: 1, maxDelayMs: 2, factor: 2, maxRestarts: 1000, windowMs: 60_000 }))
    const fibers = actors.map((a) => Effect.runFork(a.run))
    const router = Router.make(inbox)
    const consumers = names.map((n, i) => {
      const processor: Processor = { name: n, consumes: [n], handle: (event) => handle(n, event), reply: (event) => event.data }
      const consumer = Consumer.make({ processor, actors: [actors[i]!], store, inbox, outbox, reject, poke: () => undefined, router, routePublic: true, logger: Log.silent, ...(tracing === undefined ? {} : { tracing }) })
      router.add(Topics.accepted(n), { name: n, schedule: (event, topic, payload) => void consumer.schedule(event, topic, payload), inline: (event, topic, payload, rolledBack) => consumer.inline(event, topic, payload, rolledBack) })
      return consumer
    })
    if (chained !== undefined) {
      const actor = Supervisor.make(system, `${file}-${chained}`, { maxAttempts: 10, initialDelayMs: 1, maxDelayMs: 2, factor: 2, maxRestarts: 1000, windowMs: 60_000 })
      fibers.push(Effect.runFork(actor.run))
      const processor: Processor = { name: chained, consumes: [], topics: [Topics.event(chained)], handle: (event) => handle(chained, event) }
      const consumer = Consumer.make({ processor, actors: [actor], store, inbox, outbox, reject, poke: () => undefined, router, routePublic: true, logger: Log.silent, ...(tracing === undefined ? {} : { tracing }) })
      router.add(Topics.event(chained), { name: chained, schedule: (event, topic, payload) => void consumer.schedule(event, topic, payload), chain: consumer.chain, chaining: consumer.chaining })
      consumers.push(consumer)
    }
    const contracts = Ingress.contractsOf([{ name: "several", processors: [], initiating: names.map((n) => ({ name: n, decode: (d: unknown) => Result.succeed(d) })) }])
    let ingress: Ingress.Ingress | undefined
    const log = await IngressLog.make(store, { maxBytes: 4096, previewBytes: 16, inline: { forwarder: () => ingress!.inline.forwarder(), settled: () => ingress!.inline.settled(), again: (error) => ingress!.inline.again(error) } })
    ingress = Ingress.make({ contracts, maxPayloadBytes: 4096, store, log, outbox, reject, router, inline: true, logger: Log.silent, ...(tracing === undefined ? {} : { tracing }) })
    await ingress.start(() => undefined)
    return {
      /** Whether each was acknowledged. No traceparent of the client's: the ingress starts each trace. */
      receive: async (id: (name: string) => string): Promise<ReadonlyArray<boolean>> =>
        Promise.all(names.map((n) => ingress!.receive(`initiate/${n}`, Buffer.from(JSON.stringify({ id: id(n), type: n, replyTo: "reply/c/replies", data: {} })), "c").then(() => true, () => false))),
      answered: async (): Promise<ReadonlyArray<string>> => {
        for (let i = 0; i < 200 && (await Promise.all(names.map((n) => inbox.pending(n)))).some((p) => p.length > 0); i++) {
          await new Promise((r) => setTimeout(r, 5))
          for (const c of consumers) await c.idle()
        }
        const replies = await store.run(store.query("SELECT payload FROM outbox WHERE topic = 'reply/c/replies'").all())
        return replies.map((r) => (JSON.parse(String(r.payload)) as Envelope.Envelope).correlationId).sort()
      },
      close: async () => {
        for (const f of fibers) await Effect.runPromise(Fiber.interrupt(f))
        await store.close()
      }
    }
  }

  it("a batch of requests to several processors whose handlers all fail once in the ingress's transaction: each acknowledged, answered once", async () => {
    // One processor a request: a refused request left pending keeps the rest of its processor's
    // from running inline, not another processor's, whose failure runs the batch again once more.
    const names = ["a", "b", "c", "d", "e"]
    const failed = new Set<string>()
    const batch = await several("baton-all-fail.db", names, (_, event) => (failed.has(event.id) ? Effect.succeed([]) : (failed.add(event.id), Effect.fail(new Error("transient")))))
    try {
      expect(await batch.receive((n) => `all-${n}`), "every request acknowledged").toEqual(names.map(() => true))
      expect(failed.size, "each ran and failed once in the ingress's transaction").toBe(names.length)
      expect(await batch.answered(), "each answered once").toEqual(names.map((n) => `all-${n}`))
    } finally {
      await batch.close()
    }
  }, 30_000)

  it("a batch of two requests, the second failing once in the ingress's transaction (the batch run again), the first running a chained event: one ingress span each, each request's runs in its trace, every span ended", async () => {
    // The spans as an exporter sees them ended (an unended one is never exported).
    const spans: Array<{ readonly name: string; readonly event: string; readonly traceId: string; ended?: "ok" | "error" }> = []
    const tracing: Tracing = {
      enabled: true,
      begin: (name, parent, attributes) => {
        const c = Trace.begin(parent)
        const span: (typeof spans)[number] = { name, event: attributes["baton.event.id"] ?? "", traceId: c.traceId }
        spans.push(span)
        return { traceparent: Trace.format(c), traceId: c.traceId, end: (error) => void (span.ended = error === undefined ? "ok" : "error") }
      }
    }
    let failed = false
    // b fails its first run, in the ingress's transaction after a ran there, and c, that a's event
    // ran in a's run (Consumer's `chain`).
    const batch = await several(
      "baton-spans.db",
      ["a", "b"],
      (n) => (n === "b" && !failed ? ((failed = true), Effect.fail(new Error("transient"))) : Effect.succeed(n === "a" ? [{ type: "c", data: {} }] : [])),
      tracing,
      "c"
    )
    try {
      expect(await batch.receive((n) => `spans-${n}`)).toEqual([true, true])
      expect(failed, "b failed in the ingress's transaction").toBe(true)
      expect(await batch.answered(), "each answered").toEqual(["spans-a", "spans-b"])
      // Red before the batch run again kept its judgment (a second ingress span for each event, a
      // trace of its own each time) and the rolled-back runs' spans ended (a's first never did).
      expect.soft(spans.filter((s) => s.name.startsWith("ingress ")).map((s) => s.name).sort(), "one ingress span an event").toEqual(["ingress a", "ingress b"])
      for (const id of ["spans-a", "spans-b"]) expect.soft(new Set(spans.filter((s) => s.event === id).map((s) => s.traceId)).size, `${id}'s ingress span and runs: one trace`).toBe(1)
      expect.soft(spans.filter((s) => s.name === "b").map((s) => s.ended), "b's failed run, then its run from the queue").toEqual(["error", "ok"])
      expect.soft(spans.filter((s) => s.name === "a" || s.name === "c").map((s) => `${s.name} ${s.ended}`), "a's run and c's in it, rolled back, then again").toEqual(["a error", "c error", "a ok", "c ok"])
      expect.soft(spans.filter((s) => s.ended === undefined).map((s) => `${s.name} ${s.event}`), "every span begun ended").toEqual([])
    } finally {
      await batch.close()
    }
  }, 30_000)

  it("a request whose handler fails in the drain's transaction (the log not forwarding inline): the batch runs again at once with it refused, no drain failure, the request answered", async () => {
    const store = await Sqlite.open({ path: join(dir, "baton-drain.db") })
    const inbox = await Inbox.make(store)
    const outbox = await Outbox.make(store)
    const reject = ErrorPath.make({ outbox, rejections: await Rejections.make(store), logger: Log.silent })
    let runs = 0
    const processor: Processor = {
      name: "p",
      consumes: ["ping"],
      handle: () => (++runs === 1 ? Effect.fail(new Error("transient")) : Effect.succeed([])),
      reply: (event) => event.data
    }
    const system = Supervisor.system()
    const actors = [Supervisor.make(system, "p-drain", { maxAttempts: 10, initialDelayMs: 1, maxDelayMs: 2, factor: 2, maxRestarts: 1000, windowMs: 60_000 })]
    const fibers = actors.map((a) => Effect.runFork(a.run))
    const router = Router.make(inbox)
    const consumer = Consumer.make({ processor, actors, store, inbox, outbox, reject, poke: () => undefined, router, routePublic: true, logger: Log.silent })
    router.add(Topics.accepted("ping"), { name: "p", schedule: (event, topic, payload) => void consumer.schedule(event, topic, payload), inline: (event, topic, payload) => consumer.inline(event, topic, payload) })
    const logger = Log.memory()
    // No inline option: every batch is left to the drain, which runs the request in its transaction.
    const log = await IngressLog.make(store, { maxBytes: 4096, previewBytes: 16 })
    // A failed drain would be retried only after a minute: `idle` would wait for it.
    const ingress = Ingress.make({ contracts, maxPayloadBytes: 4096, store, log, outbox, reject, router, logger, retryMs: 60_000 })
    await ingress.start(() => undefined)
    try {
      await ingress.receive("initiate/ping", Buffer.from(JSON.stringify({ id: "drained", type: "ping", key: "k1", replyTo: "reply/c/replies", data: { key: "k1", n: 1 } })), "c")
      await Promise.race([ingress.idle(), new Promise((_, reject) => setTimeout(() => reject(new Error("the drain did not finish (failed, retry due)")), 5000))])
      expect(logger.lines.filter((l) => l.includes("drain failed")), "no drain failure").toEqual([])
      for (let i = 0; i < 200 && (await inbox.pending("p")).length > 0; i++) {
        await new Promise((r) => setTimeout(r, 5))
        await consumer.idle()
      }
      expect(runs, "the failed run, then the scheduled one").toBe(2)
      const replies = await store.run(store.query("SELECT payload FROM outbox WHERE topic = 'reply/c/replies'").all())
      expect(replies.map((r) => (JSON.parse(String(r.payload)) as Envelope.Envelope).correlationId)).toEqual(["drained"])
    } finally {
      ingress.stop()
      for (const f of fibers) await Effect.runPromise(Fiber.interrupt(f))
      await store.close()
    }
  }, 30_000)
})
