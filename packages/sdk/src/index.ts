/**
 * Baton's public API: the one import an app needs. Everything an app declares goes through it:
 * its events, each with an Effect Schema and a version; its processors (broker topology); its
 * workflows (mediator topology); repairs for the workflow event pattern; HTTP routes; migrations.
 * Only what this module exports is public; the runtime's other packages may change.
 *
 * ```ts
 * import { Baton, Schema, SqlClient } from "@baton/sdk"
 *
 * const PlaceOrder = Baton.initiating("place-order", Schema.Struct({ orderId: Schema.String, total: Schema.Number }), {
 *   key: (order) => order.orderId
 * })
 * const OrderAccepted = Baton.event("order-accepted", Schema.Struct({ orderId: Schema.String }))
 *
 * const accept = Baton.processor({
 *   name: "accept",
 *   on: PlaceOrder,
 *   // A generator function, `event` typed by `on`: the SDK makes it into an Effect function once,
 *   // not per message (unlike `(event) => Effect.gen(function* () {...})`, ~2 us a call on V8).
 *   handle: function* (event) {
 *     const sql = yield* SqlClient.SqlClient
 *     yield* sql`INSERT INTO orders (id, total) VALUES (${event.data.orderId}, ${event.data.total})`
 *     return [OrderAccepted.make({ orderId: event.data.orderId })]
 *   }
 * })
 *
 * export default Baton.app({
 *   name: "shop",
 *   initiating: [PlaceOrder],
 *   events: [OrderAccepted],
 *   migrations: [{ name: "shop-1", sql: "CREATE TABLE orders (id TEXT PRIMARY KEY, total REAL NOT NULL)" }],
 *   processors: [accept]
 * })
 * ```
 *
 * The runtime reads an event's data before a handler sees it: an older version is upcast by the
 * functions the event declares, then the data is decoded with the schema. Data that does not
 * decode is rejected (the error path, with every issue's path), never handed to the handler.
 */
import { Effect, Result, Schema, SchemaAST } from "effect"
import type { SqlClient } from "effect/sql"
import {
  AppModuleTypeId,
  Envelope as CoreEnvelope,
  Rejected,
  PlainSchema,
  Sensitive,
  type App as CoreApp,
  type AppContext,
  type AppModule,
  type HttpRoute,
  type Mediation,
  type Processor as CoreProcessor,
  type Repair
} from "@baton/core"
import { Workflow as CoreWorkflow } from "@baton/core"
import { Postgres } from "@baton/store"

export { Effect, Schema } from "effect"
export { SqlClient } from "effect/sql"
export { Rejected, Sensitive, Workflow } from "@baton/core"
export type { AppContext as Context, AppModule, AppQuery as Query, HttpRoute, Mediation, Repair } from "@baton/core"

/** An envelope as it travels (`data` not yet read). */
export type RawEnvelope = CoreEnvelope.Envelope
/** What a handler announces: an event's type and data (built by `Event.make`), with routing options. */
export type Next = CoreEnvelope.Next
/** The options of an announced event besides its type, data and version. */
export type NextOptions = Omit<CoreEnvelope.Next, "type" | "data" | "version">

/** A schema an event's data can be decoded and encoded with, without services. */
export type EventSchema = Schema.Codec<any, any, never, never>

/** Turns data of version `from` into data of version `from + 1`. */
export type Upcaster = (data: any) => unknown

export interface EventOptions {
  /** The version of the schema (1 when absent). Raise it for an incompatible change, with an upcaster from the one before. */
  readonly version?: number
  /** By version `v`: turns version-`v` data into version `v + 1`. Every version below `version` needs one. */
  readonly upcast?: Readonly<Record<number, Upcaster>>
}

/** A processing event: a type, a schema for its data, and its version. */
export interface Event<T extends string = string, A = any> {
  readonly _tag: "Event"
  readonly type: T
  readonly version: number
  readonly schema: EventSchema
  /** The names of the fields marked `Sensitive.annotation` (masked in rejections, logs and HTTP answers). */
  readonly sensitive: ReadonlyArray<string>
  /** The event to announce from a handler, its data encoded with the schema, at the current version. */
  readonly make: (data: A, options?: NextOptions) => Next
  /** Reads an envelope's data: upcast from its version to the current one, then decoded. */
  readonly read: (envelope: RawEnvelope) => Result.Result<A, string>
  /**
   * A workflow command (mediator topology) that sends this event to a processor's channel: its data
   * built from the workflow's and encoded, with the current version (so it is not upcast again).
   */
  readonly command: (spec: CommandSpec<A>) => CoreWorkflow.Command
}

export interface CommandSpec<A> {
  readonly name: string
  /** The processor whose channel receives it. */
  readonly channel: string
  readonly data: (data: CoreWorkflow.Data) => A
  readonly timeoutMs?: number
  readonly maxAttempts?: number
}

/** An initiating event (published by clients on `initiate/<name>`): an event with a partition key. */
export interface Initiating<T extends string = string, A = any> extends Event<T, A> {
  readonly key: ((data: A) => string | undefined) | undefined
}

/** The envelope of an event, with its data read and typed. */
export type Typed<E> = E extends Event<infer T, infer A> ? Omit<RawEnvelope, "type" | "data"> & { readonly type: T; readonly data: A } : never

const render = (issues: ReadonlyArray<CoreEnvelope.Issue>): string => issues.map((i) => (i.path === "" ? i.message : `${i.path}: ${i.message}`)).join("; ")

/**
 * Whether a schema only checks (no transformation anywhere: its decoded form is its encoded form).
 * `flip(ast) === ast` says so for most, but not for one with a check on an array or a struct
 * (`items: Schema.Array(Item).check(...)`): flipping moves that check to the encoded side. Whatever
 * this does not know (a declaration, a recursive schema) counts as transforming.
 */
export const checksOnly = (ast: SchemaAST.AST): boolean => {
  if (ast.encoding !== undefined) return false
  switch (ast._tag) {
    case "Arrays":
      return ast.elements.every(checksOnly) && ast.rest.every(checksOnly)
    case "Objects":
      return ast.propertySignatures.every((p) => checksOnly(p.type)) && ast.indexSignatures.every((i) => checksOnly(i.parameter) && checksOnly(i.type))
    case "Union":
      return ast.types.every(checksOnly)
    case "Null":
    case "Undefined":
    case "Unknown":
    case "Any":
    case "Literal":
    case "String":
    case "Number":
    case "Boolean":
      return true
    default:
      return false
  }
}

/** Declares a processing event. Fails at once (at start) when a version below the current one has no upcaster. */
export const event = <const T extends string, S extends EventSchema>(type: T, schema: S, options: EventOptions = {}): Event<T, S["Type"]> => {
  const version = options.version ?? 1
  if (!Number.isInteger(version) || version < 1) throw new Error(`event '${type}': version must be a whole number from 1, got ${version}`)
  const upcast = options.upcast ?? {}
  for (let v = 1; v < version; v++)
    if (typeof upcast[v] !== "function")
      throw new Error(
        `event '${type}' is at version ${version} but declares no upcaster from version ${v} to ${v + 1}: events of version ${v} already stored or in flight could not be read. Declare upcast: { ${v}: (data) => ... } (or keep version ${version - 1}).`
      )
  const decode = CoreEnvelope.decode(schema)
  // A plain schema's data encoded without effect's interpreter (`PlainSchema`), the rest (and
  // what does not encode so, to fail as the schema fails) by the schema.
  const encodeBySchema = Schema.encodeSync(schema)
  const encodePlain = PlainSchema.compile(SchemaAST.flip(schema.ast))
  const encode = (data: S["Type"]): S["Encoded"] => {
    const fast = encodePlain === undefined ? PlainSchema.refused : PlainSchema.attempt(encodePlain, data)
    return fast === PlainSchema.refused ? encodeBySchema(data) : (fast as S["Encoded"])
  }
  // Without a transformation anywhere in the schema, its encoded data is its decoded data: what
  // `make` encoded in this process (vouched for) is handed over as it is, not decoded again.
  const plain = SchemaAST.flip(schema.ast) === schema.ast || checksOnly(schema.ast)
  // Vouched for by another declaration (another processor's view of the same event, with fields
  // of its own): taken as it is when this schema reads that one's data to itself (`readsAsIs`).
  const vouchers = new WeakMap<object, boolean>()
  const readsAsIs = (by: unknown): boolean => {
    if (by === declared) return true
    if (typeof by !== "object" || by === null) return false
    let yes = vouchers.get(by)
    if (yes === undefined) {
      const theirs = plainSchemas.get(by)
      vouchers.set(by, (yes = theirs !== undefined && readsToItself(schema.ast, theirs)))
    }
    return yes
  }
  const readAll = (envelope: RawEnvelope): Result.Result<S["Type"], Rejected> => {
    const from = envelope.version ?? 1
    if (plain && from === version && readsAsIs(CoreEnvelope.vouchedBy(envelope))) return Result.succeed(envelope.data as S["Type"])
    if (from > version) return Result.fail(new Rejected(`'${type}' version ${from} is newer than the version ${version} this app reads: deploy the app that declares version ${from}`))
    let data: unknown = envelope.data
    for (let v = from; v < version; v++) {
      try {
        data = upcast[v]!(data)
      } catch (e) {
        return Result.fail(new Rejected(`'${type}' could not be upcast from version ${v} to ${v + 1}: ${e instanceof Error ? e.message : String(e)}`))
      }
    }
    return Result.mapError(
      decode(data),
      (issues) => new Rejected(`'${type}' data does not match its schema: ${render(issues)}`, issues.map((i) => ({ ...i, path: i.path === "" ? "data" : `data.${i.path}` })))
    )
  }
  const declared: Event<T, S["Type"]> = {
    _tag: "Event",
    type,
    version,
    schema,
    sensitive: Sensitive.fields(schema),
    make: (data, options = {}) => {
      // Without a spread of an object made for it (version 1, most events: none at all).
      const next = version === 1 ? { ...options, type, data: encode(data) } : { ...options, type, data: encode(data), version }
      return plain ? CoreEnvelope.vouch(next, declared) : next
    },
    command: ({ data, ...spec }) => ({ ...spec, type, version, data: (workflow) => encode(data(workflow)) }),
    read: (envelope) => Result.mapError(readAll(envelope), (r) => r.message)
  }
  reading.set(declared, readAll)
  if (plain) {
    vouching.set(declared, declared)
    plainSchemas.set(declared, schema.ast)
  }
  return declared
}

/** How a processor reads each declared event: the failure a `Rejected` with the issues, for the error path. */
const reading = new WeakMap<Event, (envelope: RawEnvelope) => Result.Result<unknown, Rejected>>()
/** The token an envelope of a declaration with a plain schema is vouched with (its `declared`); absent for one with transformations. */
const vouching = new WeakMap<Event, unknown>()
/** The schema of each vouching token (a declaration with a plain schema). */
const plainSchemas = new WeakMap<object, SchemaAST.AST>()

/**
 * Whether `ours` (a plain schema) decodes every value `theirs` (a plain schema) accepts to that
 * same value, key order included, so that data vouched for by `theirs` is `ours` as it is: the same
 * node, or the same kind with no check of its own beyond `theirs`'s; a struct with `theirs`'s
 * properties in the same order (each read to itself, optional only where `theirs`'s may be) and
 * only optional ones besides. What this does not know (a union not the same node) counts as no.
 */
export const readsToItself = (ours: SchemaAST.AST, theirs: SchemaAST.AST): boolean => {
  if (ours === theirs) return true
  if (ours.encoding !== undefined || theirs.encoding !== undefined) return false
  if (ours.checks !== undefined && ours.checks !== theirs.checks) return false
  if (ours._tag === "Unknown" || ours._tag === "Any") return true
  if (ours._tag !== theirs._tag) return false
  switch (ours._tag) {
    case "Null":
    case "Undefined":
    case "String":
    case "Number":
    case "Boolean":
      return true
    case "Literal":
      return ours.literal === (theirs as SchemaAST.Literal).literal
    case "Arrays": {
      const t = theirs as SchemaAST.Arrays
      return (
        ours.elements.length === t.elements.length &&
        ours.rest.length === t.rest.length &&
        ours.elements.every((e, i) => SchemaAST.isOptional(e) === SchemaAST.isOptional(t.elements[i]!) && readsToItself(e, t.elements[i]!)) &&
        ours.rest.every((r, i) => readsToItself(r, t.rest[i]!))
      )
    }
    case "Objects": {
      const t = theirs as SchemaAST.Objects
      if (ours.indexSignatures.length > 0 || t.indexSignatures.length > 0) return false
      const mine = new Map(ours.propertySignatures.map((p) => [p.name, p.type] as const))
      let at = -1
      for (const p of t.propertySignatures) {
        const o = mine.get(p.name)
        const i = o === undefined ? -1 : ours.propertySignatures.findIndex((q) => q.name === p.name)
        if (o === undefined || i < at || (SchemaAST.isOptional(p.type) && !SchemaAST.isOptional(o)) || !readsToItself(o, p.type)) return false
        at = i
      }
      const known = new Set(t.propertySignatures.map((p) => p.name))
      return ours.propertySignatures.every((p) => known.has(p.name) || SchemaAST.isOptional(p.type))
    }
    default:
      return false
  }
}

/**
 * Declares an initiating event: clients publish it on `initiate/<name>`; `key` partitions it (order
 * is kept per key). The ingress checks what clients send against the current schema and stamps the
 * current version; the upcasters read events of older versions still logged or in flight.
 */
export const initiating = <const T extends string, S extends EventSchema>(
  name: T,
  schema: S,
  options: EventOptions & { readonly key?: (data: S["Type"]) => string | undefined } = {}
): Initiating<T, S["Type"]> => {
  const declared = event(name, schema, options)
  const out: Initiating<T, S["Type"]> = { ...declared, key: options.key }
  // The event's token: its `read` (the event's) takes what the ingress vouched for with it.
  if (vouching.has(declared)) vouching.set(out, vouching.get(declared))
  return out
}

export interface ProcessorSpec<E extends Event, P = void> {
  /** Stable name: the processor's broker session, actor and inbox. */
  readonly name: string
  /** The events it reacts to. */
  readonly on: E | ReadonlyArray<E>
  /** Explicit topics instead of those of `on` (a command channel). */
  readonly topics?: ReadonlyArray<string>
  /**
   * Asynchronous work outside the transaction (an e-mail); at least once. A generator function
   * (`function* (event) {...}`, made once into an Effect function) or a function returning an Effect.
   */
  readonly prepare?: Handler<[event: Typed<E>], P, never>
  /** `prepare` only reads and computes (nothing outside the store): no read that the message is still pending before it. Default false. */
  readonly prepareReadsOnly?: boolean
  /** Its transaction locks only rows of the message's own (`Processor.ownRows`): several of its messages share a group commit. Default false. */
  readonly ownRows?: boolean
  /** The shared rows it locks for a message, as keys (`Processor.lockKeys`): several of its messages share a group commit on PostgreSQL. */
  readonly lockKeys?: (event: Typed<E>) => ReadonlyArray<string> | undefined
  /**
   * Applies the event's state changes through `SqlClient` and succeeds with the events to
   * announce. Runs in the transaction that also marks the message processed and writes the
   * announced events: all of it commits, or none. It may run again (a retry, a crash before the
   * commit), so it does nothing outside the transaction. A failure is retried, unless `Rejected`.
   * Write it as a generator function, `handle: function* (event) { const sql = yield* SqlClient.SqlClient; ... }`:
   * `event` (and `prepared`) typed from here, and the SDK makes it into an Effect function once, when
   * the processor is declared (as `Effect.fnUntraced` would), not per message. A function returning an
   * Effect works too; not `(event) => Effect.gen(function* () {...})`, which makes a new generator
   * function per message (~2 us a call on V8).
   */
  readonly handle: Handler<[event: Typed<E>, prepared: P], ReadonlyArray<Next>, SqlClient.SqlClient>
  /** `park`: a failed message waits for repair and holds back the later messages of its key. */
  readonly onFailure?: "error-path" | "park"
  /** Request-reply: the answer's data to an event that carries `replyTo`. */
  readonly reply?: (event: Typed<E>, announced: ReadonlyArray<Next>) => unknown
  /** After the commit (timers, clean-up); a throw is logged, not retried. */
  readonly committed?: (event: Typed<E>, prepared: P) => Promise<void> | void
  /** The message failed for good: what to announce about it (its data may not have decoded). */
  readonly failed?: (event: RawEnvelope, reason: string) => ReadonlyArray<Next>
}

/**
 * A handler (`handle`, `prepare`) in either form: a generator function, whose parameters are typed
 * by the spec (it yields Effects, `yield* SqlClient.SqlClient`, and returns the result), or a
 * function returning an Effect. The SDK tells them apart once, when the processor is declared.
 */
export type Handler<Args extends ReadonlyArray<unknown>, A, R> =
  | ((...args: Args) => Generator<Effect.Effect<any, unknown, R>, A, any>)
  | ((...args: Args) => Effect.Effect<A, unknown, R>)

/** What a generator function (not an async one) has as its prototype, however it was named or minified. */
const GeneratorFunctionPrototype: unknown = Object.getPrototypeOf(function* () {})

/** Whether `f` was written `function* ...` (or is one bound). */
export const isGeneratorFunction = (f: unknown): f is (...args: ReadonlyArray<any>) => Generator =>
  typeof f === "function" && Object.getPrototypeOf(f) === GeneratorFunctionPrototype

/**
 * A handler as a function returning an Effect, made once. A generator function is made into one
 * by `Effect.fnUntraced` (each call starts a generator; no generator function made per call). A
 * function returning an Effect is used as it is; one returning a generator object instead (its type
 * allows it: a plain function that calls a generator function) has that generator run as `Effect.gen`
 * would, per call; anything else fails the message with a defect that says what was returned.
 */
export const effectFunction = <Args extends ReadonlyArray<unknown>, A, R>(
  what: string,
  f: Handler<Args, A, R>
): ((...args: Args) => Effect.Effect<A, unknown, R>) => {
  if (isGeneratorFunction(f)) return Effect.fnUntraced(f as (...args: Args) => Generator<Effect.Effect<any, unknown, R>, A, never>) as (...args: Args) => Effect.Effect<A, unknown, R>
  const plain = f as (...args: Args) => unknown
  return (...args) => {
    const out = plain(...args)
    if (Effect.isEffect(out)) return out as Effect.Effect<A, unknown, R>
    if (isIterator(out)) return Effect.gen(() => out as Generator<Effect.Effect<any, unknown, R>, A, never>)
    return Effect.die(new Error(`${what} returned ${out === null ? "null" : typeof out}, neither an Effect nor a generator: write it as function* (...) {...}, or return an Effect`))
  }
}

const isIterator = (u: unknown): boolean =>
  typeof u === "object" && u !== null && typeof (u as Iterator<unknown>).next === "function" && typeof (u as Iterable<unknown>)[Symbol.iterator] === "function"

/** Declares a processor: its handler gets the event's data upcast and decoded, typed by `on`. */
export const processor = <E extends Event, P = void>(spec: ProcessorSpec<E, P>): CoreProcessor<P> => {
  // Two promises that contradict each other: a group would run two messages of one shared row side by side.
  if (spec.ownRows === true && spec.lockKeys !== undefined)
    throw new Error(`processor '${spec.name}' says both ownRows (it locks only its message's own rows) and lockKeys (it locks shared rows): keep the one that is true`)
  // Either form made into an Effect function here, once per processor, not per message.
  const handle = effectFunction(`processor '${spec.name}': handle`, spec.handle)
  const prepare = spec.prepare === undefined ? undefined : effectFunction(`processor '${spec.name}': prepare`, spec.prepare)
  const on: ReadonlyArray<Event> = Array.isArray(spec.on) ? spec.on : [spec.on as Event]
  const byType = new Map(on.map((e) => [e.type, e]))
  /** Each declared type's read (its declaration's, looked up once here, not per message). */
  const readers = new Map(on.map((def) => [def.type, { def, readAll: reading.get(def) ?? ((e: RawEnvelope) => Result.mapError(def.read(e), (message) => new Rejected(message))) }]))
  const readNow = (envelope: RawEnvelope): Result.Result<Typed<E>, Rejected> => {
    const reader = readers.get(envelope.type)
    if (reader === undefined) return Result.fail(new Rejected(`processor '${spec.name}' does not declare events of type '${envelope.type}' (it reads ${[...byType.keys()].join(", ")})`))
    const version = reader.def.version
    return Result.map(reader.readAll(envelope), (data) => ({ ...envelope, data, version }) as unknown as Typed<E>)
  }
  // An envelope is read once per processor, even when `prepare` (or `lockKeys`) and `handle`, or
  // `handle` and `reply` (or `committed`), both need it. A processor with `handle` alone reads it
  // once an attempt anyway: no cache (a `WeakMap` set per message, whose ephemerons every garbage
  // collection walks).
  const rereads = spec.prepare !== undefined || spec.lockKeys !== undefined || spec.reply !== undefined || spec.committed !== undefined
  const cache = rereads ? new WeakMap<RawEnvelope, Result.Result<Typed<E>, Rejected>>() : undefined
  const read = (envelope: RawEnvelope): Result.Result<Typed<E>, Rejected> => {
    if (cache === undefined) return readNow(envelope)
    const hit = cache.get(envelope)
    if (hit !== undefined) return hit
    const result = readNow(envelope)
    cache.set(envelope, result)
    return result
  }
  const typed = (envelope: RawEnvelope): Typed<E> => Result.getOrThrow(read(envelope))
  return {
    name: spec.name,
    consumes: on.map((e) => e.type),
    ...(spec.topics === undefined ? {} : { topics: spec.topics }),
    ...(prepare === undefined
      ? {}
      : {
          prepare: (envelope) => {
            const r = read(envelope)
            // Data that does not decode is rejected by `handle`; there is nothing to prepare.
            return Result.isFailure(r) ? Effect.succeed(undefined as P) : prepare(r.success)
          }
        }),
    ...(spec.prepareReadsOnly === undefined ? {} : { prepareReadsOnly: spec.prepareReadsOnly }),
    ...(spec.ownRows === undefined ? {} : { ownRows: spec.ownRows }),
    ...(spec.lockKeys === undefined
      ? {}
      : {
          lockKeys: (envelope) => {
            const r = read(envelope)
            // Data that does not decode is rejected by `handle`, which then locks nothing.
            return Result.isFailure(r) ? [] : spec.lockKeys!(r.success)
          }
        }),
    handle: (envelope, prepared) =>
      Effect.suspend(() => {
        const r = read(envelope)
        return Result.isFailure(r) ? Effect.fail(r.failure) : handle(r.success, prepared)
      }),
    ...(spec.onFailure === undefined ? {} : { onFailure: spec.onFailure }),
    ...(spec.reply === undefined ? {} : { reply: (envelope, announced) => spec.reply!(typed(envelope), announced) }),
    ...(spec.committed === undefined ? {} : { committed: (envelope, prepared) => spec.committed!(typed(envelope), prepared) }),
    ...(spec.failed === undefined ? {} : { failed: spec.failed })
  }
}

export interface Migration {
  readonly name: string
  /** One script, or one per dialect where they differ. */
  readonly sql: string | { readonly sqlite: string; readonly pg: string }
}

export interface AppSpec {
  readonly name: string
  readonly initiating: ReadonlyArray<Initiating>
  /** The processing events the app announces and reads (their versions are checked against the store at start). */
  readonly events?: ReadonlyArray<Event>
  readonly processors: ReadonlyArray<CoreProcessor<any>>
  /** The mediator topology: how initiating events are classified, and the workflows. */
  readonly mediation?: Mediation
  /** HTTP endpoints by `METHOD /path`. */
  readonly http?: Readonly<Record<string, HttpRoute>>
  /** The workflow event pattern: repairs of failed messages, by message type. */
  readonly repairs?: Readonly<Record<string, Repair>>
  /** Applied once each, in order, before the app starts. */
  readonly migrations?: ReadonlyArray<Migration>
}

/**
 * Declares an app: the module's default export. Either the spec itself, or a name and a function
 * of the `Context` (the store's SQL, the environment, the clock) for apps that need them to build
 * their processors.
 */
export function app(spec: AppSpec): AppModule
export function app(name: string, define: (context: AppContext) => AppSpec | Promise<AppSpec>): AppModule
export function app(specOrName: AppSpec | string, define?: (context: AppContext) => AppSpec | Promise<AppSpec>): AppModule {
  const name = typeof specOrName === "string" ? specOrName : specOrName.name
  return {
    [AppModuleTypeId]: true,
    name,
    make: async (context) => {
      const spec = typeof specOrName === "string" ? await define!(context) : specOrName
      await context.migrate(spec.migrations ?? [])
      return toApp(spec)
    }
  }
}

/** The schema as JSON Schema, compared across deployments; none when it has no JSON form (only its version is checked then). */
const jsonSchemaOf = (schema: EventSchema): { readonly schema?: unknown } => {
  try {
    return { schema: Schema.toJsonSchemaDocument(schema) }
  } catch {
    return {}
  }
}

const toApp = (spec: AppSpec): CoreApp => {
  const events = new Map<string, Event>()
  for (const e of [...spec.initiating, ...(spec.events ?? [])]) {
    const seen = events.get(e.type)
    if (seen !== undefined && seen.version !== e.version)
      throw new Error(`app '${spec.name}' declares event '${e.type}' twice, at versions ${seen.version} and ${e.version}`)
    events.set(e.type, e)
  }
  return {
    name: spec.name,
    initiating: spec.initiating.map((i) => ({
      name: i.type,
      // Every issue with its path (`items[0].qty`): the ingress's schema-violation rejection lists them.
      decode: CoreEnvelope.decode(i.schema),
      // Its processors' reads take the data the ingress decoded with this schema as it is.
      ...(vouching.has(i) ? { vouch: vouching.get(i) } : {}),
      ...(i.version === 1 ? {} : { version: i.version }),
      ...(i.key === undefined ? {} : { key: i.key as (data: unknown) => string | undefined }),
      ...(i.sensitive.length === 0 ? {} : { sensitive: i.sensitive })
    })),
    processors: spec.processors,
    events: [...events.values()].map((e) => ({ type: e.type, version: e.version, ...jsonSchemaOf(e.schema) })),
    ...(spec.mediation === undefined ? {} : { mediation: spec.mediation }),
    ...(spec.http === undefined ? {} : { http: spec.http }),
    ...(spec.repairs === undefined ? {} : { repairs: spec.repairs })
  }
}

/** The SDK's declarations under one name: `Baton.event`, `Baton.processor`, `Baton.app`, ... */
export const Baton = { event, initiating, processor, app } as const

/** A migration written once for both dialects: `ddl((t) => \`... quantity ${t.int} NOT NULL${t.rowid}\`)`. */
export { ddl, type Types as ColumnTypes } from "@baton/store"
/** Decodes data with a schema, every issue with its path (`items[0].qty`): what an HTTP route's 400 answer lists. */
export const decode = CoreEnvelope.decode
export type Issue = CoreEnvelope.Issue

/** The processor `processor` makes (a maker's return type). */
export type Processor<P = unknown> = CoreProcessor<P>

/** The data of an event, as its handler gets it. */
export type DataOf<E> = E extends Event<string, infer A> ? A : never

/** ` FOR UPDATE` on PostgreSQL (another instance's transaction waits for the row), nothing on SQLite (one writer). */
export const forUpdate: (dialect: AppContext["dialect"]) => string = Postgres.forUpdate

/** A schema's decoder, made once (a workflow's steps read the same results several times each). */
const decoders = new WeakMap<EventSchema, (u: unknown) => any>()
const decoderOf = (schema: EventSchema): ((u: unknown) => any) => {
  let decode = decoders.get(schema)
  if (decode === undefined) decoders.set(schema, (decode = Schema.decodeUnknownSync(schema)))
  return decode
}

/**
 * A workflow's data read with the events' schemas, typed rather than cast: its input, and the
 * results of its commands (the data processors announced, at the current version).
 */
export const WorkflowData = {
  /** The input (patchable on restart), or as much of it as `schema` reads. */
  input: <S extends EventSchema>(data: CoreWorkflow.Data, schema: S): S["Type"] => decoderOf(schema)(data.input),
  /** The first result of the event's type, or undefined before one arrives. */
  find: <E extends Event>(data: CoreWorkflow.Data, event: E): DataOf<E> | undefined => {
    const found = CoreWorkflow.find<unknown>(data, event.type)
    return found === undefined ? undefined : decoderOf(event.schema)(found)
  },
  /** Like `find`, for a result the workflow cannot go on without. */
  need: <E extends Event>(data: CoreWorkflow.Data, event: E): DataOf<E> => decoderOf(event.schema)(CoreWorkflow.need<unknown>(data, event.type))
} as const
