/**
 * Metrics for Prometheus and traces for OpenTelemetry, both on effect's own modules.
 *
 * Metrics: effect's `Metric` in a registry of this runtime's own (two runtimes in one process keep
 * theirs apart), rendered by `PrometheusMetrics`. On the hot path only in-memory counters and a
 * histogram move; the depths (inboxes, outbox, parking, dashboard, workflows) are COUNT queries
 * run when `/metrics` is scraped.
 *
 * Traces: one span per hop (the ingress, then each processor that handles an event, mediator
 * steps included) whose parent is the span that emitted the event (its `traceparent`, Trace.ts).
 * With `BATON_OTLP_URL` the spans go out over OTLP/HTTP (JSON) through effect's `OtlpExporter`,
 * batched every second; without it no span is recorded, and only the trace context is passed on.
 */
import { Context, Effect, Layer, Metric } from "effect"
import { FetchHttpClient } from "effect/http"
import { OtlpExporter, OtlpResource, OtlpSerialization, PrometheusMetrics } from "effect/observability"
import { type IdleSpin, Log, Trace } from "@baton/core"
import type { Store } from "@baton/store"

// ---------------------------------------------------------------------------------------------
// Metrics

/** Seconds: 0.5 ms to 10 s, for a handler that commits one transaction. */
const latencyBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

/** The counters of one processor, made once so that the hot path does no label work. */
export interface ProcessorMetrics {
  readonly handled: (outcome: "done" | "failed" | "parked") => void
  readonly retried: () => void
  /** Seconds one attempt took. */
  readonly latency: (seconds: number) => void
}

export interface Gauges {
  readonly inFlight: () => ReadonlyArray<readonly [processor: string, count: number]>
  /** Clients connected to the embedded broker (asked across a thread when it runs in one); undefined without one. */
  readonly connections: () => Promise<number> | undefined
  /** Initiating events the front thread committed and main has not forwarded yet; undefined without one. */
  readonly frontBacklog?: () => Promise<number> | undefined
  /**
   * The main thread's idle spin (`IdleSpin`): milliseconds its loop spent polling with nothing to
   * do, windows started and requests caught while polling, since start.
   */
  readonly idleSpin?: Pick<IdleSpin.IdleSpin, "spentMs" | "stats">
}

export interface Metrics {
  readonly processor: (name: string) => ProcessorMetrics
  /** An HTTP request refused with 503 at `BATON_HTTP_MAX_CONCURRENT`. */
  readonly httpRefused: () => void
  /** The Prometheus text exposition (format 0.0.4) of every metric, the depths read now. */
  readonly scrape: () => Promise<string>
}

const num = (v: unknown): number => (typeof v === "number" ? v : typeof v === "bigint" ? Number(v) : Number(v ?? 0))

export const makeMetrics = (deps: {
  readonly store: Store
  readonly gauges: Gauges
  /**
   * Runs the outbox's deferred deletes of sent entries (`Outbox.flush`) before the outbox is
   * counted, so that its gauges count only what is not yet published. Once per scrape, not per message.
   */
  readonly flushOutbox?: () => Promise<void>
  /** Which optional tables exist: queries on the others are skipped. */
  readonly tables: () => { readonly parking: boolean; readonly dashboard: boolean; readonly workflows: boolean }
}): Metrics => {
  const registry = new Map<string, Metric.Metric.Metadata<any, any>>()
  const context = Context.make(Metric.MetricRegistry, registry) as Context.Context<never>
  /**
   * `m`'s updates straight into its series' hooks, found in the registry once, after its first update
   * (which creates the series, as before): `updateUnsafe` looks the series up on every update (the
   * context's attributes, the registry by its key). Until found (or if effect ever keeps its
   * series otherwise), through `updateUnsafe`.
   */
  const direct = <I>(m: Metric.Metric<I, any>): ((input: I) => void) => {
    let hooks: Metric.Metric.Hooks<I, any> | undefined
    let looked = false
    return (input) => {
      if (hooks !== undefined) return hooks.update(input, context)
      m.updateUnsafe(input, context)
      // Looked up once: not found, every update goes through `updateUnsafe` (no scan per update).
      if (looked) return
      looked = true
      for (const series of registry.values()) if (series.id === m.id && series.type === m.type && series.attributes === m.attributes) hooks = series.hooks
    }
  }
  // A processor's series are metrics of their own with their labels built in (`attributes`), not
  // `Metric.withAttributes` views of one metric: a view copies the context and rebuilds the
  // series key on every update; a metric of its own finds its key cached.
  const handled = (attributes: Record<string, string>) =>
    Metric.counter("baton_messages_handled_total", { description: "Messages a processor finished, by outcome (done, failed for good, parked behind a held key)", incremental: true, attributes })
  const retries = (attributes: Record<string, string>) => Metric.counter("baton_retries_total", { description: "Attempts run again after a failed one", incremental: true, attributes })
  const latency = (attributes: Record<string, string>) =>
    Metric.histogram("baton_handling_seconds", { description: "Time of one handling attempt (handler and its transaction)", boundaries: latencyBuckets, attributes })
  const httpRefused = Metric.counter("baton_http_refused_total", { description: "HTTP requests refused with 503 because BATON_HTTP_MAX_CONCURRENT requests were in progress", incremental: true })
  const gauge = (name: string, description: string) => Metric.gauge(name, { description })
  const inFlight = gauge("baton_in_flight", "Messages scheduled on a processor's actors and not finished")
  const inboxPending = gauge("baton_inbox_pending", "Messages committed to a processor's inbox and not yet handled")
  const outboxPending = gauge("baton_outbox_pending", "Outbox entries not yet published")
  const outboxAge = gauge("baton_outbox_oldest_age_seconds", "Age of the oldest outbox entry not yet published (0 when empty)")
  const heldKeys = gauge("baton_held_keys", "Keys held after a failure (workflow event pattern)")
  const parked = gauge("baton_parked_messages", "Messages parked behind held keys")
  const dashboard = gauge("baton_dashboard_entries", "Dashboard entries by status")
  const workflows = gauge("baton_workflows", "Mediator workflows by status")
  const connections = gauge("baton_broker_connections", "Clients connected to the embedded broker")
  const frontBacklog = gauge("baton_front_backlog", "Initiating events the front thread committed and main has not forwarded yet (BATON_FRONT=thread)")
  const idleSpin = Metric.counter("baton_idle_spin_seconds_total", {
    description: "Time the main thread's event loop spent polling with nothing to do for a requester's next request after a reply, instead of blocking (BATON_IDLE_SPIN_US)",
    incremental: true
  })
  const idleSpinWindows = Metric.counter("baton_idle_spin_windows_total", {
    description: "Windows of polling the main thread's event loop started after a reply (BATON_IDLE_SPIN_US)",
    incremental: true
  })
  const idleSpinHits = Metric.counter("baton_idle_spin_hits_total", {
    description: "Clients' data that arrived while the main thread's event loop was polling idle: wake-ups saved (BATON_IDLE_SPIN_US)",
    incremental: true
  })
  /** What the counters hold: each scrape adds what the spin counted since the last one. */
  const idleSpinCounted = { spentMs: 0, chains: 0, hits: 0 }

  const set = (m: Metric.Gauge<number>, value: number, attributes?: Record<string, string>) =>
    (attributes === undefined ? m : Metric.withAttributes(m, attributes)).updateUnsafe(value, context)
  /** Label values seen before stay, at 0, once their rows are gone (a gauge must not freeze at its last value). */
  const seen = new Map<string, Set<string>>()
  const setAll = (m: Metric.Gauge<number>, label: string, rows: ReadonlyArray<readonly [string, number]>, known: ReadonlyArray<string> = []) => {
    const values = seen.get(m.id) ?? new Set(known)
    seen.set(m.id, values)
    const now = new Map(rows)
    for (const [v] of rows) values.add(v)
    for (const v of values) set(m, now.get(v) ?? 0, { [label]: v })
  }
  const q = (text: string) => deps.store.run(deps.store.query(text).all())
  const processors = new Set<string>()

  // Registered at 0, so that a rate is defined from the first scrape.
  httpRefused.updateUnsafe(0, context)
  if (deps.gauges.idleSpin !== undefined) for (const m of [idleSpin, idleSpinWindows, idleSpinHits]) m.updateUnsafe(0, context)

  return {
    httpRefused: () => httpRefused.updateUnsafe(1, context),
    processor: (name) => {
      processors.add(name)
      // Registered at 0, so that a rate is defined from the first scrape.
      const counter = (m: Metric.Counter<number>) => {
        const add = direct(m)
        add(0)
        return () => add(1)
      }
      const byOutcome = {
        done: counter(handled({ processor: name, outcome: "done" })),
        failed: counter(handled({ processor: name, outcome: "failed" })),
        parked: counter(handled({ processor: name, outcome: "parked" }))
      }
      const retried = counter(retries({ processor: name }))
      // Its series created by its first observation, as before.
      const time = direct(latency({ processor: name }))
      return {
        handled: (outcome) => byOutcome[outcome](),
        retried,
        latency: time
      }
    },
    scrape: async () => {
      const tables = deps.tables()
      const known = [...processors]
      for (const [name, count] of deps.gauges.inFlight()) set(inFlight, count, { processor: name })
      setAll(inboxPending, "processor", (await q("SELECT processor, COUNT(*) AS n FROM inbox WHERE status = 'pending' GROUP BY processor")).map((r) => [String(r.processor), num(r.n)]), known)
      // A failed delete leaves the entries counted (deleted later): the scrape goes on.
      await deps.flushOutbox?.().catch(() => undefined)
      const outbox = (await q("SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox"))[0]
      set(outboxPending, num(outbox?.n))
      set(outboxAge, outbox?.oldest == null ? 0 : Math.max(0, (Date.now() - Date.parse(String(outbox.oldest))) / 1000))
      if (tables.parking) {
        const rows = await q("SELECT processor, COUNT(*) AS keys, SUM(parked) AS parked FROM held_keys GROUP BY processor")
        setAll(heldKeys, "processor", rows.map((r) => [String(r.processor), num(r.keys)]))
        setAll(parked, "processor", rows.map((r) => [String(r.processor), num(r.parked)]))
      }
      if (tables.dashboard)
        setAll(dashboard, "status", (await q("SELECT status, COUNT(*) AS n FROM dashboard GROUP BY status")).map((r) => [String(r.status), num(r.n)]), ["open", "repaired", "resubmitted", "discarded"])
      if (tables.workflows)
        setAll(workflows, "status", (await q("SELECT status, COUNT(*) AS n FROM workflows GROUP BY status")).map((r) => [String(r.status), num(r.n)]), ["running", "failed", "discarded"])
      const connected = await deps.gauges.connections()
      if (connected !== undefined) set(connections, connected)
      const backlog = await deps.gauges.frontBacklog?.()
      if (backlog !== undefined) set(frontBacklog, backlog)
      // The counters grow by what the spin counted since the last scrape.
      const spin = deps.gauges.idleSpin
      if (spin !== undefined) {
        // All three only grow.
        const now = { spentMs: spin.spentMs(), ...spin.stats() }
        if (now.spentMs > idleSpinCounted.spentMs) idleSpin.updateUnsafe((now.spentMs - idleSpinCounted.spentMs) / 1000, context)
        if (now.chains > idleSpinCounted.chains) idleSpinWindows.updateUnsafe(now.chains - idleSpinCounted.chains, context)
        if (now.hits > idleSpinCounted.hits) idleSpinHits.updateUnsafe(now.hits - idleSpinCounted.hits, context)
        Object.assign(idleSpinCounted, now)
      }
      return PrometheusMetrics.formatUnsafe(context)
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Traces

/** The span of one hop; `traceparent` goes on every event it emits. */
export interface Hop {
  readonly traceparent: string
  readonly traceId: string
  readonly end: (error?: unknown) => void
}

export interface Tracing {
  readonly enabled: boolean
  /** Begins a span under `parent` (a `traceparent`), or a new trace. */
  readonly begin: (name: string, parent: string | undefined, attributes: Readonly<Record<string, string>>) => Hop
}

/** A hop of `untraced`: its traceparent only, the trace id read off it when a log line asks. */
class UntracedHop implements Hop {
  readonly traceparent: string
  constructor(traceparent: string) {
    this.traceparent = traceparent
  }
  get traceId(): string {
    return this.traceparent.slice(3, 35)
  }
  end(): void {}
}

/**
 * No export: the trace context is passed on (ids made as Trace.begin makes them), nothing is
 * recorded. One string and one object per hop (`Trace.child`), where the parsed context, the
 * span's and the formatted string's were made for each.
 */
export const untraced: Tracing = {
  enabled: false,
  begin: (_name, parent) => new UntracedHop(Trace.child(parent))
}

/** Nanoseconds since the epoch, as OTLP wants them. */
const nowNanos = (): string => String(BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n)

const text = (key: string, value: string) => ({ key, value: { stringValue: value } })

/**
 * Spans exported over OTLP/HTTP (JSON) to `url` (`.../v1/traces`) by effect's OtlpExporter:
 * batched every `exportIntervalMs` (or at 512 spans), the last batch sent when the scope closes.
 * An unreachable collector is retried three times, then the exporter pauses for a minute; the
 * runtime is never held up. The spans are built here rather than by effect's OtlpTracer, whose
 * ids are its own: Baton's ids never hold a card-number-like run of digits (Trace.ts), which the
 * masking of log lines would otherwise hide.
 */
export const otlp = (options: { readonly url: string; readonly serviceName: string; readonly exportIntervalMs: number }) =>
  Effect.gen(function* () {
    const resource = yield* OtlpResource.fromConfig({ serviceName: options.serviceName })
    const serialization = yield* OtlpSerialization.OtlpSerialization
    const scope = { name: "baton" }
    const exporter = yield* OtlpExporter.make({
      label: "baton",
      url: options.url,
      headers: undefined,
      exportInterval: options.exportIntervalMs,
      maxBatchSize: 512,
      shutdownTimeout: 3000,
      body: (spans) => [serialization.traces({ resourceSpans: [{ resource, scopeSpans: [{ scope, spans }] }] }), Effect.void]
    })
    const tracing: Tracing = {
      enabled: true,
      begin: (name, parent, attributes) => {
        const c = Trace.begin(parent)
        const startTimeUnixNano = nowNanos()
        return {
          traceparent: Trace.format(c),
          traceId: c.traceId,
          end: (error) => {
            if (!c.sampled) return
            exporter.push({
              traceId: c.traceId,
              spanId: c.spanId,
              ...(c.parentSpanId === undefined ? {} : { parentSpanId: c.parentSpanId }),
              name,
              // OTLP SpanKind: 2 server (a trace's start at the ingress), 5 consumer (a hop).
              kind: c.parentSpanId === undefined ? 2 : 5,
              startTimeUnixNano,
              endTimeUnixNano: nowNanos(),
              attributes: Object.entries(attributes).map(([k, v]) => text(k, v)),
              droppedAttributesCount: 0,
              events: [],
              droppedEventsCount: 0,
              // OTLP StatusCode: 1 ok, 2 error.
              status: error === undefined ? { code: 1 } : { code: 2, message: Log.reason(error) },
              links: [],
              droppedLinksCount: 0
            })
          }
        }
      }
    }
    return tracing
  }).pipe(Effect.provide(Layer.mergeAll(OtlpSerialization.layerJson, FetchHttpClient.layer, OtlpExporter.layerFlusher)))
