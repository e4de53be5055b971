/**
 * `@baton/sdk/testkit`: property tests of an app against the real runtime, not a model of it.
 *
 * ```ts
 * import { Testkit, fc } from "@baton/sdk/testkit"
 * import app, { Greet, Greeted } from "../src/app.ts"
 *
 * const kit = await Testkit.start(app)
 * await fc.assert(fc.asyncProperty(Testkit.arbitrary(Greet), async (data) => {
 *   const flow = await kit.flow(await kit.publish(Greet, data), { until: Greeted })
 *   return flow.count(Greeted) === 1
 * }), { numRuns: 20 })
 * await kit.stop()
 * ```
 *
 * - `Testkit.start(app)`: the runtime in this process, its embedded broker and HTTP port on
 *   ephemeral ports, its SQLite store in a fresh temporary directory (removed by `stop`).
 * - `publish(initiating, data)`: what a client does, over MQTT at QoS 1; resolves once the runtime
 *   has logged the event, with its id (the correlation id of everything it causes).
 * - `flow(sent, { until })`: the events of that correlation with their causation links (the
 *   runtime's flows API and its `events/#`), once an event of type `until` is in it, or once it is
 *   settled (nothing pending, nothing new) without `until`.
 * - `Testkit.crashing(path, { at })`: the app in a child process that SIGKILLs itself at a kill
 *   point of the runtime (`BATON_CRASH_AT`); `restart()` runs it again on the same data and ports,
 *   and the test checks what survived.
 * - `Testkit.arbitrary(event)`: a fast-check arbitrary of the event's schema. Use the `fc` exported
 *   here, the same copy the arbitraries are built with.
 *
 * - `Testkit.clock(start)`: a clock the test moves (`advance`, `set`), given to the app as its
 *   context's `clock` with `Testkit.start(app, { clock })`: the times and ids the app makes. The
 *   runtime's own timers (retries, a mediator's timeouts) and envelope times stay the system's.
 */
import { randomUUID } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import fc from "fast-check"
import mqtt, { type MqttClient } from "mqtt"
import { Log, Topics, type AppModule } from "@baton/core"
import * as Runtime from "@baton/runtime"
import { fromEnv, type Config } from "@baton/runtime/config"
import { Process } from "@baton/testkit"
import * as Arbitrary from "./Arbitrary.ts"
import type { Event, EventSchema, Initiating, RawEnvelope } from "./index.ts"

export { fc }
export { UnsupportedSchema } from "./Arbitrary.ts"

/** An initiating event as published: its id is the correlation id of what it causes. */
export interface Sent {
  readonly id: string
  readonly correlationId: string
  readonly type: string
}

export interface PublishOptions {
  /** The partition key (the initiating event's `key` function decides when absent). */
  readonly key?: string
  /** The event's id (a fresh UUID when absent): publish the same id twice to test deduplication. */
  readonly id?: string
  /** Sends `data` as it is, not encoded with the schema: to test what the app's door refuses. */
  readonly unchecked?: boolean
}

/** One event of a flow: an envelope, without the data read yet. */
export interface FlowEvent {
  readonly id: string
  readonly type: string
  readonly key: string
  readonly correlationId: string
  readonly causationId: string
  readonly occurredAt: string
  readonly topic: string
  readonly version?: number
  readonly data: unknown
}

/** Where the runtime refused or gave up on a message of the flow (the error path). */
export interface FlowRejection {
  readonly kind: string
  readonly topic: string
  readonly processor?: string
  readonly reason: string
}

/** The causal graph of one initiating event. */
export interface Flow {
  readonly correlationId: string
  /** Oldest first; each once, whatever the redeliveries. */
  readonly events: ReadonlyArray<FlowEvent>
  readonly rejections: ReadonlyArray<FlowRejection>
  readonly has: (type: string | Event) => boolean
  /** Events of that type (every event without one). */
  readonly count: (type?: string | Event) => number
  readonly byType: (type: string | Event) => ReadonlyArray<FlowEvent>
  /** The data of the events of `event`'s type, read with its schema (upcast, decoded): typed. */
  readonly data: <A>(event: Event<string, A>) => ReadonlyArray<A>
  /** The event that caused `event` (its `causationId`), when it is in the flow. */
  readonly cause: (event: FlowEvent) => FlowEvent | undefined
}

export interface FlowOptions {
  /** Wait until the flow holds an event of this type; without it, until the flow is settled. */
  readonly until?: string | Event
  /** 10 s by default. */
  readonly timeoutMs?: number
}

/** What a test does with a running app, in process or in a child process. */
export interface Running {
  /** The embedded broker: `mqtt://127.0.0.1:<port>`. */
  readonly mqttUrl: string
  /** The HTTP API: `http://127.0.0.1:<port>`. */
  readonly httpUrl: string
  readonly publish: <A>(event: Initiating<string, A>, data: A, options?: PublishOptions) => Promise<Sent>
  readonly flow: (sent: Sent | string, options?: FlowOptions) => Promise<Flow>
  /** A statement on the app's store (`?` placeholders): what its handlers wrote. */
  readonly query: (sql: string, ...params: ReadonlyArray<unknown>) => Promise<ReadonlyArray<Readonly<Record<string, unknown>>>>
  /** Stops the app and removes its data directory. */
  readonly stop: () => Promise<void>
}

export interface App extends Running {
  /** `Runtime.idle`: every initiating event acknowledged is forwarded and handled, nothing in flight, the outbox empty. */
  readonly idle: () => Promise<void>
  /** The runtime's log lines (set `log: true` to see them as they come). */
  readonly logs: () => ReadonlyArray<string>
}

export interface StartOptions {
  readonly topology?: "broker" | "mediator"
  /** Any other setting of the runtime (`Config`, as the BATON_* variables set it). */
  readonly config?: Partial<Config>
  /** The app's own settings (its context's `env`, e.g. `BATON_CHECK_LATENCY_MS`), over the process's environment. */
  readonly env?: Readonly<Record<string, string | undefined>>
  /** The app's clock (its context's `clock`), e.g. `Testkit.clock(new Date("2026-01-01"))`; the system's when absent. */
  readonly clock?: { readonly now: () => Date; readonly newId: () => string }
  /** Print the runtime's log lines. */
  readonly log?: boolean
}

/** A clock a test controls: `now()` stays put until `advance(ms)` or `set(date)`; ids are new UUIDs. */
export interface TestClock {
  readonly now: () => Date
  readonly newId: () => string
  readonly advance: (ms: number) => Date
  readonly set: (date: Date) => Date
}

export const clock = (start: Date = new Date()): TestClock => {
  let t = start.getTime()
  return {
    now: () => new Date(t),
    newId: () => randomUUID(),
    advance: (ms) => new Date((t += ms)),
    set: (date) => new Date((t = date.getTime()))
  }
}

const names = (type: string | Event) => (typeof type === "string" ? type : type.type)

const toFlow = (correlationId: string, events: ReadonlyArray<FlowEvent>, rejections: ReadonlyArray<FlowRejection>): Flow => {
  const byType = (type: string | Event) => events.filter((e) => e.type === names(type))
  return {
    correlationId,
    events,
    rejections,
    byType,
    has: (type) => byType(type).length > 0,
    count: (type) => (type === undefined ? events.length : byType(type).length),
    data: <A>(event: Event<string, A>) =>
      byType(event).map((e) => {
        const read = event.read(e as unknown as RawEnvelope)
        if (read._tag === "Failure") throw new Error(`flow ${correlationId}: event ${e.id}: ${read.failure}`)
        return read.success
      }),
    cause: (event) => (event.causationId === event.id ? undefined : events.find((e) => e.id === event.causationId))
  }
}

/**
 * An MQTT client of the app's broker, and what the flows are made of: it publishes, keeps every
 * envelope on `events/#` (its session survives the app's restarts), and reads `GET /flows/<id>`.
 */
const observer = async (mqttUrl: () => string, httpUrl: () => string, settle: () => Promise<void>) => {
  const seen = new Map<string, FlowEvent>()
  const client: MqttClient = await mqtt.connectAsync(mqttUrl(), {
    protocolVersion: 4,
    clientId: `testkit-${randomUUID().slice(0, 8)}`,
    // A persistent session that reconnects: what it publishes and receives outlives a crash.
    clean: false,
    reconnectPeriod: 100,
    connectTimeout: 5000
  })
  client.on("error", () => undefined)
  client.on("message", (topic, payload) => {
    try {
      const e = JSON.parse(payload.toString()) as FlowEvent
      if (typeof e.id === "string" && typeof e.correlationId === "string") seen.set(e.id, { ...e, topic })
    } catch {
      // Not an envelope: not part of any flow.
    }
  })
  await client.subscribeAsync([`${Topics.eventsPrefix}#`], { qos: 1 })

  const publish = async <A>(event: Initiating<string, A>, data: A, options: PublishOptions = {}): Promise<Sent> => {
    const id = options.id ?? randomUUID()
    const envelope = { id, type: event.type, ...(options.key === undefined ? {} : { key: options.key }), data: options.unchecked === true ? data : event.make(data).data }
    await client.publishAsync(Topics.initiate(event.type), JSON.stringify(envelope), { qos: 1 })
    return { id, correlationId: id, type: event.type }
  }

  const snapshot = async (correlationId: string) => {
    const res = await fetch(`${httpUrl()}/flows/${encodeURIComponent(correlationId)}`)
    if (!res.ok) throw new Error(`GET /flows/${correlationId} answered ${res.status}`)
    const body = (await res.json()) as { events: Array<FlowEvent>; rejections: Array<FlowRejection>; summary: { pending: number; parked: number } }
    const byId = new Map<string, FlowEvent>()
    for (const e of body.events) byId.set(e.id, { id: e.id, type: e.type, key: e.key, correlationId, causationId: e.causationId, occurredAt: e.occurredAt, topic: e.topic, data: e.data })
    // The envelope as published (with its version) where the client saw it.
    for (const e of seen.values()) if (e.correlationId === correlationId) byId.set(e.id, e)
    const events = [...byId.values()].sort((a, b) => a.occurredAt.localeCompare(b.occurredAt))
    const rejections = body.rejections.map((r) => ({ kind: r.kind, topic: r.topic, reason: r.reason, ...(r.processor === undefined ? {} : { processor: r.processor }) }))
    return { flow: toFlow(correlationId, events, rejections), pending: body.summary.pending + body.summary.parked }
  }

  /**
   * `settle`, no longer than until `deadline`: `Runtime.idle` waits for a failure's retry, and a
   * failure that keeps recurring (the store refusing the relay's deletes, say) would otherwise
   * hold the flow past its timeout for good.
   */
  const settleBy = async (deadline: number): Promise<void> => {
    let timer: ReturnType<typeof setTimeout> | undefined
    try {
      await Promise.race([settle(), new Promise<void>((r) => (timer = setTimeout(r, Math.max(0, deadline - Date.now()))))])
    } finally {
      clearTimeout(timer)
    }
  }

  const flow = async (sent: Sent | string, options: FlowOptions = {}): Promise<Flow> => {
    const correlationId = typeof sent === "string" ? sent : sent.correlationId
    const timeoutMs = options.timeoutMs ?? 10_000
    const until = options.until === undefined ? undefined : names(options.until)
    const deadline = Date.now() + timeoutMs
    let last: Flow | undefined
    let lastError: unknown
    let stable = 0
    for (;;) {
      try {
        if (until === undefined) await settleBy(deadline)
        const { flow, pending } = await snapshot(correlationId)
        // The data as published, not as the HTTP answer masks it: once the client has the events too.
        const received = (events: ReadonlyArray<FlowEvent>) => events.every((e) => !e.topic.startsWith(Topics.eventsPrefix) || seen.has(e.id))
        if (until !== undefined && flow.has(until) && received(flow.byType(until))) return flow
        // Settled: something arrived, nothing pending, and the same for three reads in a row.
        const same = last !== undefined && last.events.length === flow.events.length && last.rejections.length === flow.rejections.length
        stable = until === undefined && pending === 0 && flow.events.length + flow.rejections.length > 0 && same && received(flow.events) ? stable + 1 : 0
        last = flow
        if (stable >= 2) return flow
      } catch (error) {
        // The app is restarting: its HTTP port answers again soon.
        lastError = error
      }
      if (Date.now() > deadline) {
        const has = last === undefined ? `no answer (${lastError instanceof Error ? lastError.message : String(lastError)})` : `${[...new Set(last.events.map((e) => e.type))].join(", ") || "no events"}${last.rejections.length === 0 ? "" : `; rejections: ${last.rejections.map((r) => `${r.kind}: ${r.reason}`).join("; ")}`}`
        throw new Error(`flow ${correlationId} ${until === undefined ? "did not settle" : `has no '${until}' event`} after ${timeoutMs} ms; it has ${has}`)
      }
      await new Promise((r) => setTimeout(r, 50))
    }
  }

  return { publish, flow, close: () => client.endAsync(true).then(() => undefined) }
}

const loopback = (port: number | undefined, scheme: string) => `${scheme}://127.0.0.1:${port}`

/**
 * Runs an app in this process: the real runtime, embedded broker, SQLite, on ephemeral ports.
 * Several apps run together as `BATON_APP` lists them: an app that consumes another's events,
 * tested with it (or with a producer the test declares).
 */
export const start = async (app: AppModule | ReadonlyArray<AppModule>, options: StartOptions = {}): Promise<App> => {
  const apps = Array.isArray(app) ? app : [app as AppModule]
  const dataDir = mkdtempSync(join(tmpdir(), "baton-testkit-"))
  const config: Config = {
    ...fromEnv({}),
    mqttPort: 0,
    wsPort: undefined,
    httpPort: 0,
    dataDir,
    instance: `testkit-${randomUUID().slice(0, 8)}`,
    restartDelayMs: 10,
    ...(options.topology === undefined ? {} : { topology: options.topology }),
    ...options.config
  }
  const logger = Log.memory(options.log === true ? Log.console : Log.silent)
  let runtime: Awaited<ReturnType<typeof Runtime.start>>
  try {
    runtime = await Runtime.start(config, { logger, apps: () => apps, env: { ...process.env, ...options.env }, ...(options.clock === undefined ? {} : { clock: options.clock }) })
  } catch (error) {
    rmSync(dataDir, { recursive: true, force: true })
    throw error
  }
  const mqttUrl = loopback(runtime.mqttPort, "mqtt")
  const httpUrl = loopback(runtime.httpPort, "http")
  const o = await observer(() => mqttUrl, () => httpUrl, () => runtime.idle())
  return {
    mqttUrl,
    httpUrl,
    publish: o.publish,
    flow: o.flow,
    query: (sql, ...params) => runtime.store.run(runtime.store.query(sql).all(...params)),
    idle: () => runtime.idle(),
    logs: () => logger.lines,
    stop: async () => {
      await o.close()
      await runtime.stop()
      rmSync(dataDir, { recursive: true, force: true })
    }
  }
}

/** A kill point of the runtime (runtime/src/Crash.ts): where the process dies by SIGKILL. */
export type KillPoint =
  | "ingress-before-commit"
  | "ingress-committed"
  | "handler"
  | "received-committed"
  | "processed-committed"
  | "outbox-published"

export interface CrashOptions {
  readonly at: KillPoint
  /** Only this processor's passes count (`handler` of `greeter`). */
  readonly processor?: string
  /** Dies the n-th time it gets there (1 by default). */
  readonly times?: number
  /** More BATON_* variables for the app's process. */
  readonly env?: Readonly<Record<string, string>>
}

export interface Crashing extends Running {
  /** Resolves once the process died at the kill point; fails if it ended otherwise, or not in time (20 s). */
  readonly crashed: (timeoutMs?: number) => Promise<void>
  /** Starts the app again on the same data directory and ports, without the kill point. */
  readonly restart: () => Promise<void>
  /** What the processes wrote (their logs), for a failing test's message. */
  readonly output: () => string
}

/**
 * Runs the app module at `path` in a child process as `baton start --app <path>` does, set to die
 * at a kill point. Publish, wait for `crashed()`, `restart()`, then check the flow and the store:
 * nothing the runtime acknowledged is lost, and each effect happened once. `publish` resolves once
 * the runtime acknowledged the event, which a crash in the ingress delays until after the restart
 * (the client sends it again): start it, do not await it before `crashed()`.
 */
export const crashing = async (path: string, options: CrashOptions): Promise<Crashing> => {
  const dataDir = mkdtempSync(join(tmpdir(), "baton-crash-"))
  const cli = fileURLToPath(import.meta.resolve("@baton/runtime/cli"))
  const args = [cli, "start", "--app", resolve(path)]
  const spec = `${options.at}${options.processor === undefined ? "" : `@${options.processor}`}:${options.times ?? 1}`
  const env = { ...options.env }
  let outputs = ""
  let current: Process.Running
  try {
    current = await Process.startProcess(dataDir, { ...env, BATON_CRASH_AT: spec }, args)
  } catch (error) {
    rmSync(dataDir, { recursive: true, force: true })
    throw error
  }
  const first = current
  // The same ports after a restart: the client reconnects to them and sends what was not acknowledged.
  const ports = { BATON_MQTT_PORT: String(first.mqttPort), BATON_HTTP_PORT: String(first.httpPort) }
  const mqttUrl = loopback(first.mqttPort, "mqtt")
  const httpUrl = loopback(first.httpPort, "http")
  const o = await observer(() => mqttUrl, () => httpUrl, async () => undefined)
  return {
    mqttUrl,
    httpUrl,
    publish: o.publish,
    flow: o.flow,
    query: async (sql, ...params) => Process.readStore(dataDir, (db) => db.prepare(sql).all(...(params as Array<string | number | null>))),
    output: () => outputs + current.output(),
    crashed: async (timeoutMs = 20_000) => {
      const end = await Promise.race([first.exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), timeoutMs).unref())])
      if (end === undefined) throw new Error(`the app did not reach the kill point ${spec} within ${timeoutMs} ms:\n${first.output()}`)
      if (end !== "SIGKILL") throw new Error(`the app ended with ${end}, not at the kill point ${spec}:\n${first.output()}`)
    },
    restart: async () => {
      if (current.child.exitCode === null && current.child.signalCode === null) throw new Error("restart: the app is still running (await crashed() first)")
      outputs += current.output()
      current = await Process.startProcess(dataDir, { ...env, ...ports }, args)
    },
    stop: async () => {
      await o.close()
      await current.kill("SIGKILL")
      rmSync(dataDir, { recursive: true, force: true })
    }
  }
}

/** A fast-check arbitrary of an event's data (or of any schema), derived from its Effect Schema. */
export const arbitrary = <A>(event: Event<string, A> | (EventSchema & { readonly Type: A })): fc.Arbitrary<A> =>
  "read" in event && "schema" in event ? Arbitrary.of<A>(event.schema, `event '${event.type}'`) : Arbitrary.of<A>(event as EventSchema & { readonly Type: A })

export const Testkit = { start, crashing, arbitrary, clock } as const
