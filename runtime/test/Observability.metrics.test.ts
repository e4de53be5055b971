/**
 * The processors' metrics on the hot path go straight into their series (`direct`), not through
 * effect's `updateUnsafe` lookup on every update; `/metrics` stays what effect's own updates give.
 * For every sequence of updates (processors, outcomes, retries, handling times), the scrape is the
 * text of a reference registry updated with `updateUnsafe` each time, and `updateUnsafe` runs once
 * per series at most (its creation), however many updates there are.
 */
import { afterEach, describe, expect, it, vi } from "vitest"
import fc from "fast-check"
import { Context, Metric } from "effect"
import { PrometheusMetrics } from "effect/observability"
import { Inbox, Outbox, Sqlite } from "@baton/store"
import * as Observability from "../src/Observability.ts"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 50)
const buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

/** effect's own updates, each through `updateUnsafe`: what the scrape must read. */
const reference = () => {
  const context = Context.make(Metric.MetricRegistry, new Map()) as Context.Context<never>
  const refused = Metric.counter("baton_http_refused_total", { description: "HTTP requests refused with 503 because BATON_HTTP_MAX_CONCURRENT requests were in progress", incremental: true })
  refused.updateUnsafe(0, context)
  const handled = (processor: string, outcome: string) =>
    Metric.counter("baton_messages_handled_total", { description: "Messages a processor finished, by outcome (done, failed for good, parked behind a held key)", incremental: true, attributes: { processor, outcome } })
  const retries = (processor: string) => Metric.counter("baton_retries_total", { description: "Attempts run again after a failed one", incremental: true, attributes: { processor } })
  const latency = (processor: string) =>
    Metric.histogram("baton_handling_seconds", { description: "Time of one handling attempt (handler and its transaction)", boundaries: buckets, attributes: { processor } })
  return {
    processor: (name: string) => {
      for (const o of ["done", "failed", "parked"]) handled(name, o).updateUnsafe(0, context)
      retries(name).updateUnsafe(0, context)
    },
    handled: (name: string, outcome: string) => handled(name, outcome).updateUnsafe(1, context),
    retried: (name: string) => retries(name).updateUnsafe(1, context),
    latency: (name: string, seconds: number) => latency(name).updateUnsafe(seconds, context),
    refused: () => refused.updateUnsafe(1, context),
    text: () => PrometheusMetrics.formatUnsafe(context)
  }
}

const op = fc.oneof(
  fc.record({ kind: fc.constant("handled" as const), p: fc.nat(2), outcome: fc.constantFrom("done" as const, "failed" as const, "parked" as const) }),
  fc.record({ kind: fc.constant("retried" as const), p: fc.nat(2) }),
  fc.record({ kind: fc.constant("latency" as const), p: fc.nat(2), seconds: fc.oneof(fc.constantFrom(...buckets), fc.double({ min: 0, max: 20, noNaN: true })) }),
  fc.record({ kind: fc.constant("refused" as const) })
)

describe("processor metrics", () => {
  afterEach(() => vi.restoreAllMocks())

  it("for every sequence of updates, scrape the text effect's own updates give, with updateUnsafe once per series at most", async () => {
    const store = await Sqlite.open({ path: ":memory:" })
    await Inbox.make(store)
    await Outbox.make(store)
    const proto = Object.getPrototypeOf(Object.getPrototypeOf(Metric.counter("x"))) as { updateUnsafe: (...args: Array<unknown>) => void }
    const spy = vi.spyOn(proto, "updateUnsafe")
    try {
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 1, max: 3 }), fc.array(op, { maxLength: 60 }), async (processors, ops) => {
          const metrics = Observability.makeMetrics({ store, gauges: { inFlight: () => [], connections: () => undefined }, tables: () => ({ parking: false, dashboard: false, workflows: false }) })
          const ref = reference()
          const names = Array.from({ length: processors }, (_, i) => `p${i}`)
          const handles = names.map((n) => metrics.processor(n))
          names.forEach(ref.processor)
          spy.mockClear()
          for (const o of ops) {
            const i = o.kind === "refused" ? 0 : o.p % processors
            if (o.kind === "handled") (handles[i]!.handled(o.outcome), ref.handled(names[i]!, o.outcome))
            else if (o.kind === "retried") (handles[i]!.retried(), ref.retried(names[i]!))
            else if (o.kind === "latency") (handles[i]!.latency(o.seconds), ref.latency(names[i]!, o.seconds))
            else (metrics.httpRefused(), ref.refused())
          }
          const refUpdates = spy.mock.calls.length
          // Ours: the series the updates created (a histogram's first observation), the refusals.
          const seriesMade = new Set(ops.flatMap((o) => (o.kind === "latency" ? [o.p % processors] : []))).size
          const refused = ops.filter((o) => o.kind === "refused").length
          expect(refUpdates - ops.length).toBeLessThanOrEqual(seriesMade + refused)
          const scraped = (await metrics.scrape()).split("\n").filter((l) => !/^(#.*)?baton_(inbox_pending|outbox_pending|outbox_oldest_age_seconds)\b/.test(l.replace(/^# (HELP|TYPE) /, "")))
          expect(scraped).toEqual(ref.text().split("\n"))
        }),
        { numRuns: runs }
      )
    } finally {
      await store.close()
    }
  })

  it("the outbox gauge counts only what is not yet published: entries sent (their SQLite delete deferred) are not counted", async () => {
    const store = await Sqlite.open({ path: ":memory:" })
    try {
      await Inbox.make(store)
      const outbox = await Outbox.make(store)
      const metrics = Observability.makeMetrics({ store, flushOutbox: outbox.flush, gauges: { inFlight: () => [], connections: () => undefined }, tables: () => ({ parking: false, dashboard: false, workflows: false }) })
      const gauge = async () => Number(/^baton_outbox_pending (\d+)/m.exec(await metrics.scrape())?.[1])
      // Four entries offered after their commit (as to the relay), three of them sent: one not yet published.
      const entries = []
      for (const p of ["1", "2", "3", "4"]) entries.push((await store.transaction(outbox.added("events/e", p)))())
      await outbox.sentRuns([[entries[0]!.seq, entries[2]!.seq]])
      expect(await gauge()).toBe(1)
    } finally {
      await store.close()
    }
  })
})
