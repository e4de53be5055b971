/**
 * Observability through the real runtime (embedded broker, SQLite, real MQTT client): `/metrics`
 * parsed by a strict Prometheus text parser with the counters moving as orders flow; a fake OTLP
 * collector receiving one trace per order, a span per hop, parents matching causation; JSON log
 * lines carrying correlation and trace ids.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { createServer, type Server } from "node:http"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { AddressInfo } from "node:net"
import fc from "fast-check"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { MqttClient } from "mqtt"
import { Users } from "@baton/auth"
import { Log, Trace } from "@baton/core"
import type { Config } from "../src/Config.ts"
import type * as Runtime from "../src/Runtime.ts"
import { collect, connect, startRuntime, type Collector, type Harness } from "./support.ts"
import { complete, order, payload, type GeneratedOrder } from "./orders.ts"
import { parse } from "./prometheus.ts"

interface Span {
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId: string | undefined
  readonly name: string
  readonly attributes: Readonly<Record<string, string>>
  readonly failed: boolean
}

/** A fake OTLP/HTTP collector: keeps the spans of every JSON export posted to /v1/traces. */
const collector = async () => {
  const spans: Array<Span> = []
  const requests: Array<{ readonly path: string; readonly contentType: string | undefined }> = []
  const server: Server = createServer((req, res) => {
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => chunks.push(c))
    req.on("end", () => {
      requests.push({ path: req.url ?? "", contentType: req.headers["content-type"] })
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as {
        resourceSpans: Array<{ scopeSpans: Array<{ spans: Array<{ traceId: string; spanId: string; parentSpanId?: string; name: string; attributes: Array<{ key: string; value: { stringValue?: string } }>; status?: { code?: number } }> }> }>
      }
      for (const rs of body.resourceSpans)
        for (const ss of rs.scopeSpans)
          for (const s of ss.spans)
            spans.push({
              traceId: s.traceId,
              spanId: s.spanId,
              parentSpanId: s.parentSpanId === undefined || s.parentSpanId === "" ? undefined : s.parentSpanId,
              name: s.name,
              attributes: Object.fromEntries(s.attributes.map((a) => [a.key, a.value.stringValue ?? ""])),
              failed: s.status?.code === 2
            })
      res.writeHead(200, { "content-type": "application/json" })
      res.end("{}")
    })
  })
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  return { spans, requests, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`, close: () => new Promise<void>((r) => server.close(() => r())) }
}

const scrape = async (port: number) => {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`)
  expect(res.status).toBe(200)
  expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/)
  return parse(await res.text())
}

const until = async (check: () => boolean, what: string, timeoutMs = 15_000) => {
  const end = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** A runtime exporting to a fake collector, a client and an event collector, around a describe block. */
const traced = (overrides: Partial<Config>, options: Runtime.Options = {}) => {
  const ctx = {} as { otlp: Awaited<ReturnType<typeof collector>>; h: Harness; client: MqttClient; events: Collector }
  beforeAll(async () => {
    ctx.otlp = await collector()
    ctx.h = await startRuntime({ otlpUrl: ctx.otlp.url, otlpIntervalMs: 100, ...overrides }, options)
    ctx.client = await connect(ctx.h.url)
    ctx.events = await collect(ctx.client, ["events/#", "errors/#"])
  })
  afterAll(async () => {
    await ctx.client?.endAsync()
    await ctx.h?.stop()
    await ctx.otlp?.close()
  })
  return ctx
}

/** Waits until no span arrived for 500 ms (the last batch comes within an export interval or two). */
const quiet = async (spans: ReadonlyArray<Span>) => {
  for (let n = -1; n !== spans.length; ) {
    n = spans.length
    await new Promise((r) => setTimeout(r, 500))
  }
}

describe("observability", () => {
  const lines: Array<string> = []
  const ctx = traced({}, { logger: Log.stream({ format: "json", threshold: "debug", write: (_level, line) => lines.push(line) }) })

  const placeOrders = async (orders: ReadonlyArray<GeneratedOrder>) => {
    const sent = orders.map((o) => ({ o: { ...o, asEnvelope: true }, id: crypto.randomUUID() }))
    await Promise.all(sent.map(({ o, id }) => ctx.client.publishAsync("initiate/place-order", payload(o, id), { qos: 1 })))
    await ctx.events.until((all) => sent.every(({ o, id }) => complete(o, id, all)), 20_000, `${sent.length} order chains`)
    await ctx.h.runtime.idle()
    return sent
  }

  it("serves /metrics in the Prometheus text format, the counters moving as orders flow", async () => {
    const before = await scrape(ctx.h.runtime.httpPort)
    for (const [name, type] of [
      ["baton_messages_handled_total", "counter"], ["baton_retries_total", "counter"], ["baton_in_flight", "gauge"],
      ["baton_inbox_pending", "gauge"], ["baton_outbox_pending", "gauge"], ["baton_outbox_oldest_age_seconds", "gauge"], ["baton_broker_connections", "gauge"]
    ]) expect(before.types.get(name!), name).toBe(type)
    const processors = [...new Set(before.samples.filter((s) => s.name === "baton_messages_handled_total").map((s) => s.labels.processor!))]
    expect(processors.length).toBeGreaterThanOrEqual(5)
    expect(before.value("baton_broker_connections")).toBeGreaterThanOrEqual(1)

    const orders = fc.sample(order, { numRuns: 6, seed: 18 })
    const sent = await placeOrders(orders)
    const after = await scrape(ctx.h.runtime.httpPort)
    // A histogram appears once it observed something.
    expect(after.types.get("baton_handling_seconds")).toBe("histogram")
    const handled = (e: typeof before, processor?: string) => e.sum("baton_messages_handled_total", { outcome: "done", ...(processor === undefined ? {} : { processor }) })
    // Each order's initiating event is handled once by the processor that takes place-order.
    const taking = processors.filter((p) => handled(after, p) - handled(before, p) === sent.length)
    expect(taking.length, "some processor handled each order once").toBeGreaterThan(0)
    // Every hop of every chain (at least 6 events per order, each with a consumer or more) counted.
    expect(handled(after) - handled(before)).toBeGreaterThanOrEqual(6 * sent.length)
    // The histogram counted each attempt: at least as many as the messages done.
    expect(after.sum("baton_handling_seconds_count") - before.sum("baton_handling_seconds_count")).toBeGreaterThanOrEqual(handled(after) - handled(before))
    expect(after.sum("baton_handling_seconds_sum")).toBeGreaterThan(before.sum("baton_handling_seconds_sum"))
    // Idle now: nothing in flight, no inbox or outbox backlog.
    expect(after.sum("baton_in_flight")).toBe(0)
    expect(after.sum("baton_inbox_pending")).toBe(0)
    expect(after.value("baton_outbox_pending")).toBe(0)
    expect(after.value("baton_outbox_oldest_age_seconds")).toBe(0)
    expect(after.sum("baton_messages_handled_total", { outcome: "failed" })).toBe(0)
  })

  it("sends one trace per order to the OTLP collector, a span per hop, each span's parent the span that emitted its cause", async () => {
    const orders = fc.sample(order, { numRuns: 4, seed: 7 })
    const sent = await placeOrders(orders)
    const chain = (id: string) => ctx.events.received.filter((r) => r.envelope.correlationId === id && r.topic.startsWith("events/")).map((r) => r.envelope)
    // Everything handled (idle); the last batch arrives within an export interval or two: wait until no span comes for 500 ms.
    await quiet(ctx.otlp.spans)
    const consumed = new Set(ctx.otlp.spans.filter((s) => !s.name.startsWith("ingress")).map((s) => s.attributes["baton.event.type"]))
    expect(ctx.otlp.requests.every((r) => r.path === "/v1/traces" && r.contentType === "application/json")).toBe(true)
    for (const { id } of sent) {
      const ingress = ctx.otlp.spans.filter((s) => s.name === "ingress place-order" && s.attributes["baton.event.id"] === id)
      expect(ingress, `one ingress span for ${id}`).toHaveLength(1)
      const traceId = ingress[0]!.traceId
      expect(ingress[0]!.parentSpanId).toBeUndefined()
      const trace = ctx.otlp.spans.filter((s) => s.traceId === traceId)
      // One trace per order: all its spans, and only its, share the trace id.
      expect(new Set(ctx.otlp.spans.filter((s) => s.attributes["baton.correlation_id"] === id).map((s) => s.traceId))).toEqual(new Set([traceId]))
      expect(trace.every((s) => s.attributes["baton.correlation_id"] === id)).toBe(true)
      const byId = new Map(trace.map((s) => [s.spanId, s]))
      expect(byId.size).toBe(trace.length)
      for (const s of trace) {
        if (s === ingress[0]) continue
        // The parent handled the event that caused this one (for the order itself: the ingress).
        const parent = byId.get(s.parentSpanId ?? "")
        expect(parent, `parent of ${s.name} handling ${s.attributes["baton.event.type"]}`).toBeDefined()
        expect(parent!.attributes["baton.event.id"]).toBe(s.attributes["baton.causation_id"])
        expect(s.failed).toBe(false)
      }
      // A span per hop: each event of the chain handled, and each published event names its emitter's span.
      for (const e of chain(id)) {
        const tp = Trace.parse(e.traceparent)
        expect(tp?.traceId, `${e.type} carries the order's trace`).toBe(traceId)
        const emitter = byId.get(tp!.spanId)
        expect(emitter, `the span that emitted ${e.type}`).toBeDefined()
        expect(emitter!.attributes["baton.event.id"]).toBe(e.causationId)
        if (consumed.has(e.type)) expect(trace.some((s) => s.attributes["baton.event.id"] === e.id), `a span handling ${e.type}`).toBe(true)
      }
      // The initiating event and every consumed event of the chain were hops.
      expect(trace.length - 1).toBeGreaterThanOrEqual(1 + chain(id).filter((e) => consumed.has(e.type)).length)
    }
  })

  it("writes JSON log lines, those about a message with its correlation id and trace id", async () => {
    const [o] = fc.sample(order, { numRuns: 1, seed: 3 })
    const id = (await placeOrders([o!]))[0]!.id
    const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>)
    for (const p of parsed) {
      expect(typeof p.time).toBe("string")
      expect(Number.isNaN(Date.parse(p.time as string))).toBe(false)
      expect(["debug", "info", "warn", "error"]).toContain(p.level)
      expect(typeof p.event).toBe("string")
    }
    const about = parsed.filter((p) => p.event === "message handled" && p.correlationId === id)
    expect(about.length).toBeGreaterThanOrEqual(6)
    const ingress = () => ctx.otlp.spans.find((s) => s.name === "ingress place-order" && s.attributes["baton.event.id"] === id)
    await until(() => ingress() !== undefined, "the order's ingress span")
    for (const p of about) expect(p.traceId).toBe(ingress()!.traceId)
    // Every line about a message, whatever its event, carries both ids.
    for (const p of parsed.filter((x) => "correlationId" in x)) expect(typeof p.traceId === "string" || p.event === "message rejected").toBe(true)
  })
})

describe("observability, mediator topology", () => {
  const ctx = traced({ topology: "mediator" })

  it("traces a workflow: a span per mediator step and command, in the order's one trace, and counts workflows by status", async () => {
    const [o] = fc.sample(order, { numRuns: 1, seed: 11 })
    const id = crypto.randomUUID()
    await ctx.client.publishAsync("initiate/place-order", payload({ ...o!, cardKind: "approved", payment: { card: "4242424242424242" }, asEnvelope: true }, id), { qos: 1 })
    await ctx.events.until((all) => all.some((r) => r.envelope.correlationId === id && r.envelope.type === "workflow-completed"), 15_000, "the workflow to complete")
    await ctx.h.runtime.idle()
    await until(() => ctx.otlp.spans.some((s) => s.name === "ingress place-order" && s.attributes["baton.event.id"] === id), "the ingress span")
    await quiet(ctx.otlp.spans)
    const traceId = ctx.otlp.spans.find((s) => s.name === "ingress place-order" && s.attributes["baton.event.id"] === id)!.traceId
    const trace = ctx.otlp.spans.filter((s) => s.traceId === traceId)
    const byId = new Map(trace.map((s) => [s.spanId, s]))
    const mediatorSteps = trace.filter((s) => /mediator/.test(s.name))
    // The workflow's inputs are mediator steps (its start; an acknowledgement only of a command
    // queued: one run in the input's transaction, `Consumer.call`, is applied there), and each of
    // its 9 commands is a hop of its own.
    expect(mediatorSteps.length).toBeGreaterThanOrEqual(1)
    expect(trace.length).toBeGreaterThanOrEqual(mediatorSteps.length + 1 + 9)
    for (const s of trace) {
      if (s.parentSpanId === undefined) {
        expect(s.name).toBe("ingress place-order")
        continue
      }
      const parent = byId.get(s.parentSpanId)
      expect(parent, `parent of ${s.name}`).toBeDefined()
      expect(parent!.attributes["baton.event.id"]).toBe(s.attributes["baton.causation_id"])
    }
    const metrics = await scrape(ctx.h.runtime.httpPort)
    expect(metrics.types.get("baton_workflows")).toBe("gauge")
    // Finished workflows are deleted once announced: none left running.
    expect(metrics.value("baton_workflows", { status: "running" })).toBe(0)
    expect(metrics.sum("baton_messages_handled_total", { outcome: "done" })).toBeGreaterThanOrEqual(trace.length - 1)
  })
})

describe("observability, with authentication", () => {
  const dir = mkdtempSync(join(tmpdir(), "baton-obs-"))
  let h: Harness
  const tokens: Record<string, string> = {}

  beforeAll(async () => {
    let file: Users.File = { users: {}, tokens: {} }
    for (const role of ["observer", "client"] as const) {
      file = await Users.addUser(file, role, "correct horse", [role])
      const added = Users.addToken(file, role)
      file = added.file
      tokens[role] = added.token
    }
    Users.save(join(dir, "users.json"), file)
    h = await startRuntime({ authFile: join(dir, "users.json") })
  })
  afterAll(async () => {
    await h?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it("serves /metrics to a reader's bearer token only, like every other read", async () => {
    const get = (token?: string) => fetch(`http://127.0.0.1:${h.runtime.httpPort}/metrics`, { headers: token === undefined ? {} : { authorization: `Bearer ${token}` } })
    expect((await get()).status).toBe(401)
    expect((await get("not-a-token")).status).toBe(401)
    expect((await get(tokens.client)).status).toBe(403)
    const ok = await get(tokens.observer)
    expect(ok.status).toBe(200)
    expect(parse(await ok.text()).types.get("baton_messages_handled_total")).toBe("counter")
    const post = await fetch(`http://127.0.0.1:${h.runtime.httpPort}/metrics`, { method: "POST", headers: { authorization: `Bearer ${tokens.observer}` } })
    expect(post.status).toBe(405)
  })
})
