/**
 * The one message format on every Baton topic. MQTT 3.1.1 (all Aedes 1.x speaks) has no user
 * properties, so the metadata travels in the payload (docs/platform-facts.md, Aedes).
 */
import { Result, Schema, SchemaIssue } from "effect"
import * as PlainSchema from "./PlainSchema.ts"
import { traceIdOf } from "./Trace.ts"

export const Envelope = Schema.Struct({
  id: Schema.NonEmptyString,
  type: Schema.NonEmptyString,
  correlationId: Schema.NonEmptyString,
  causationId: Schema.NonEmptyString,
  key: Schema.String,
  replyTo: Schema.optionalKey(Schema.NonEmptyString),
  occurredAt: Schema.String,
  /** W3C trace context (Trace.ts): the span of the processor that emitted it, or the ingress's. */
  traceparent: Schema.optionalKey(Schema.String),
  /** The version of the event's schema its data follows (1 when absent); see the SDK's `Event`. */
  version: Schema.optionalKey(Schema.Int),
  data: Schema.Unknown
})
export type Envelope = typeof Envelope.Type

/** What a client may send as a full initiating envelope: only `id`, `type` and `data` are required. */
export const InitiatingInput = Schema.Struct({
  id: Schema.NonEmptyString,
  type: Schema.NonEmptyString,
  correlationId: Schema.optionalKey(Schema.NonEmptyString),
  causationId: Schema.optionalKey(Schema.NonEmptyString),
  key: Schema.optionalKey(Schema.String),
  replyTo: Schema.optionalKey(Schema.NonEmptyString),
  occurredAt: Schema.optionalKey(Schema.String),
  traceparent: Schema.optionalKey(Schema.String),
  version: Schema.optionalKey(Schema.Int),
  data: Schema.Unknown
})

export interface Issue {
  readonly path: string
  readonly message: string
}

const formatter = SchemaIssue.makeFormatterStandardSchemaV1()

/** Renders every issue of a schema failure as a readable path (`items[0].qty`) and message. */
export const formatIssues = (issue: SchemaIssue.Issue): ReadonlyArray<Issue> =>
  formatter(issue).issues.map((i) => ({
    path: (i.path ?? [])
      .map((p) => (typeof p === "object" && p !== null ? p.key : p))
      .reduce<string>((acc, p) => (typeof p === "number" ? `${acc}[${p}]` : acc === "" ? String(p) : `${acc}.${String(p)}`), ""),
    message: i.message
  }))

/**
 * Decodes with every issue reported, as `Result` of the value or readable issues. A plain schema's
 * value is decoded without effect's interpreter (`PlainSchema.compile`); otherwise (and for any
 * value that does not decode so) by the schema, first stopping at its first issue (effect's own
 * fast path for a struct), and only a value that fails it again with every issue reported (the
 * same value either way: only the issues differ).
 */
export const decode = <S extends Schema.Decoder<unknown>>(schema: S) => {
  const run = Schema.decodeUnknownResult(schema)
  const plain = PlainSchema.compile(schema.ast)
  return (input: unknown): Result.Result<S["Type"], ReadonlyArray<Issue>> => {
    const fast = plain === undefined ? PlainSchema.refused : PlainSchema.attempt(plain, input)
    if (fast !== PlainSchema.refused) return Result.succeed(fast as S["Type"])
    const first = run(input)
    if (Result.isSuccess(first)) return Result.succeed(first.success)
    return Result.mapError(run(input, { errors: "all" }), (e) => formatIssues(e.issue))
  }
}

const decodeEnvelopeInFull = decode(Envelope)
const filled = (v: unknown): v is string => typeof v === "string" && v.length > 0
const has = Object.hasOwn

/**
 * `decode(Envelope)`, with the common case checked by hand first: a valid envelope is built as the
 * schema would build it (its fields only, in its order), without the schema's interpreter (a
 * measurable share of each hop). Anything the hand check does not accept is decoded by the schema,
 * so a failure and its issues are the schema's own.
 */
export const decodeEnvelope = (input: unknown): Result.Result<Envelope, ReadonlyArray<Issue>> => {
  if (typeof input !== "object" || input === null || Array.isArray(input)) return decodeEnvelopeInFull(input)
  const i = input as Record<string, unknown>
  if (
    !filled(i.id) || !filled(i.type) || !filled(i.correlationId) || !filled(i.causationId) || typeof i.key !== "string" || typeof i.occurredAt !== "string" || !has(i, "data") ||
    !has(i, "id") || !has(i, "type") || !has(i, "correlationId") || !has(i, "causationId") || !has(i, "key") || !has(i, "occurredAt") ||
    (has(i, "replyTo") && !filled(i.replyTo)) || (has(i, "traceparent") && typeof i.traceparent !== "string") || (has(i, "version") && !Number.isSafeInteger(i.version))
  )
    return decodeEnvelopeInFull(input)
  const out: Record<string, unknown> = { id: i.id, type: i.type, correlationId: i.correlationId, causationId: i.causationId, key: i.key }
  if (has(i, "replyTo")) out.replyTo = i.replyTo
  out.occurredAt = i.occurredAt
  if (has(i, "traceparent")) out.traceparent = i.traceparent
  if (has(i, "version")) out.version = i.version
  out.data = i.data
  return Result.succeed(out as Envelope)
}

const decodeInitiatingInFull = decode(InitiatingInput)

/**
 * `decode(InitiatingInput)` (what a client may send as a full envelope), with the common case
 * checked by hand first, as `decodeEnvelope` does: a valid input is built as the schema builds it
 * (its fields only, the optional ones when present, in its order); anything else is decoded by the
 * schema, so a failure and its issues are the schema's own. The ingress runs it on every
 * initiating event a client sends as an envelope; the schema's interpreter allocated ~2.7 KB of
 * each order's ~195 KB.
 */
export const decodeInitiatingInput = (input: unknown): Result.Result<typeof InitiatingInput.Type, ReadonlyArray<Issue>> => {
  if (typeof input !== "object" || input === null || Array.isArray(input)) return decodeInitiatingInFull(input)
  const i = input as Record<string, unknown>
  if (
    !has(i, "id") || !filled(i.id) || !has(i, "type") || !filled(i.type) || !has(i, "data") ||
    (has(i, "correlationId") && !filled(i.correlationId)) || (has(i, "causationId") && !filled(i.causationId)) || (has(i, "key") && typeof i.key !== "string") ||
    (has(i, "replyTo") && !filled(i.replyTo)) || (has(i, "occurredAt") && typeof i.occurredAt !== "string") ||
    (has(i, "traceparent") && typeof i.traceparent !== "string") || (has(i, "version") && !Number.isSafeInteger(i.version))
  )
    return decodeInitiatingInFull(input)
  const out: Record<string, unknown> = { id: i.id, type: i.type }
  if (has(i, "correlationId")) out.correlationId = i.correlationId
  if (has(i, "causationId")) out.causationId = i.causationId
  if (has(i, "key")) out.key = i.key
  if (has(i, "replyTo")) out.replyTo = i.replyTo
  if (has(i, "occurredAt")) out.occurredAt = i.occurredAt
  if (has(i, "traceparent")) out.traceparent = i.traceparent
  if (has(i, "version")) out.version = i.version
  out.data = i.data
  return Result.succeed(out as typeof InitiatingInput.Type)
}

export interface Clock {
  readonly now: () => Date
  readonly newId: () => string
}

/** The millisecond of the last version-7 id made, and its formatted prefix. */
let v7Ms = -1
let v7Prefix = ""

/**
 * A UUID of version 7 (RFC 9562) at `ms`: the 48-bit Unix time in milliseconds first, then 74
 * random bits (a v4 UUID's, with its version digit set to 7). Ids made later sort after those made
 * earlier (to the millisecond), so each table and index keyed by them (every inbox, the ingress's
 * log, the processors' own tables) grows at its end, as an autoincrement would, instead of at a
 * random page per row: a commit writes a few pages where random ids dirty one per row.
 */
export const uuidV7 = (ms: number, random: string = crypto.randomUUID()): string => {
  // Ids of one millisecond share their first 15 characters: formatted once per millisecond.
  if (ms !== v7Ms) {
    const t = ms.toString(16).padStart(12, "0")
    v7Ms = ms
    v7Prefix = `${t.slice(0, 8)}-${t.slice(8, 12)}-7`
  }
  return v7Prefix + random.slice(15)
}

const hexDigits = Buffer.from("0123456789abcdef", "latin1")
/** The id being made, as ASCII: its prefix written once per millisecond (`idMs`), its random part per id. */
const idBytes = Buffer.from("00000000-0000-7000-8000-000000000000", "latin1")
let idMs = -1
/** Random bytes, drawn 4 KB at a time: 10 per id. */
const pool = Buffer.alloc(4096)
let poolAt = pool.length

/**
 * `uuidV7(ms)` with its random bits drawn from a pool (the same 74 bits, the variant's two fixed):
 * written into one buffer and read out as one flat string, where a v4 UUID's text (node joins it
 * from ~20 pieces) was sliced and joined again, and flattened where it was bound. Measured: ~0.3x
 * the time per id (0.75 -> 0.21 us), and 6 KB less allocated per order (222 -> 216 KB).
 */
export const newUuidV7 = (ms: number): string => {
  const id = idBytes
  if (ms !== idMs) {
    idMs = ms
    const t = ms.toString(16).padStart(12, "0")
    id.write(t.slice(0, 8), 0, "latin1")
    id.write(t.slice(8, 12), 9, "latin1")
  }
  if (poolAt + 10 > pool.length) {
    crypto.getRandomValues(pool)
    poolAt = 0
  }
  const p = pool
  const i = poolAt
  poolAt += 10
  const d = hexDigits
  id[15] = d[p[i]! & 15]!
  id[16] = d[p[i]! >> 4]!
  id[17] = d[p[i + 1]! & 15]!
  // The variant: 10 and two random bits (8, 9, a or b).
  id[19] = d[8 | (p[i + 1]! >> 6)]!
  id[20] = d[p[i + 2]! & 15]!
  id[21] = d[p[i + 2]! >> 4]!
  id[22] = d[p[i + 3]! & 15]!
  for (let k = i + 4, o = 24; k < i + 10; k++, o += 2) {
    id[o] = d[p[k]! & 15]!
    id[o + 1] = d[p[k]! >> 4]!
  }
  return id.toString("latin1", 0, 36)
}

export const systemClock: Clock = { now: () => new Date(), newId: () => newUuidV7(Date.now()) }

/** The millisecond of the last time formatted, and its text. */
let isoMs = Number.NaN
let isoText = ""

/**
 * `new Date(ms).toISOString()`, formatted once per millisecond (internal; exported for its test):
 * the events of one millisecond (a dozen at a thousand orders a second) share their `occurredAt`
 * text, where each made a `Date` and formatted it (~1 us a time here, against ~0.15 us).
 */
export const isoAt = (ms: number): string => {
  if (ms !== isoMs) {
    isoText = new Date(ms).toISOString()
    isoMs = ms
  }
  return isoText
}

/** `new Date().toISOString()`, formatted once per millisecond (`isoAt`): for the stores' timestamps of each row. */
export const isoNow = (): string => isoAt(Date.now())

/**
 * The time an event occurs at: the system clock's to the millisecond (`isoAt`), another clock's as
 * it says (the ingress's envelope of a client's event without one, a reply: where each made a
 * `Date` and formatted it).
 */
export const occurred = (clock: Clock): string => (clock === systemClock ? isoNow() : clock.now().toISOString())

/** Wraps the data of an initiating event in a new envelope; the event starts its own correlation. */
export const initiate = (
  type: string,
  data: unknown,
  options: { readonly key?: string; readonly replyTo?: string } = {},
  clock: Clock = systemClock
): Envelope => {
  const id = clock.newId()
  return {
    id,
    type,
    correlationId: id,
    causationId: id,
    key: options.key ?? id,
    ...(options.replyTo === undefined ? {} : { replyTo: options.replyTo }),
    occurredAt: occurred(clock),
    data
  }
}

export interface Next {
  readonly type: string
  readonly data: unknown
  /** Partition key of the new event; inherited from the cause when absent. */
  readonly key?: string
  /** Where it goes; `events/<type>` when absent. `baton/` topics are internal (never broadcast). */
  readonly topic?: string
  /** A stable id, so that sending it again is recognised as a duplicate; a new one when absent. */
  readonly id?: string
  /** The correlation it belongs to; the cause's when absent (a mediator keeps its workflow's). */
  readonly correlationId?: string
  /** Where the receiver answers (request-reply, a mediator's command channel). */
  readonly replyTo?: string
  /** What caused it; the cause's id when absent (a resubmission names the failed message). */
  readonly causationId?: string
  /** The version of the event's schema that `data` follows; 1 when absent. */
  readonly version?: number
}

/**
 * Where `vouch` keeps its token: a private field (`#by`) that this class adds to the object it is
 * given (a constructor that returns another object makes `this` that object). `JSON.stringify`,
 * a spread, `Object.assign`, `structuredClone` and deep equality all leave it out, so a copy (with
 * other data, say) is never vouched for. A `WeakMap` did this first (each set ~1 us with the
 * table's growth and its ephemerons, which every garbage collection walks), then a non-enumerable
 * property under a symbol (`Object.defineProperty`, a call into the runtime: ~1.5% of the order
 * flow's CPU in `vouch`); a private field is set by the optimized code itself (~0.35 -> 0.1 us a
 * mark with the object's making, measured). An object that takes no new property (frozen,
 * sealed) keeps its token in the `WeakMap` still.
 */
class Stamp extends (function (o: object) {
  return o
} as unknown as new (o: object) => object) {
  #by: unknown
  constructor(o: object, by: unknown) {
    super(o)
    this.#by = by
  }
  static has(o: object): boolean {
    return #by in o
  }
  static set(o: object, by: unknown): void {
    ;(o as Stamp).#by = by
  }
  static by(o: object): unknown {
    return #by in o ? (o as Stamp).#by : vouches.get(o)
  }
}
const vouches = new WeakMap<object, unknown>()

/**
 * A processing event caused by `cause`: new id, same correlation, causation = cause's id. Its
 * `traceparent` is the span that emitted it (the handling processor's), else the cause's.
 */
export const next = (cause: Envelope, event: Next, clock: Clock = systemClock, traceparent: string | undefined = cause.traceparent): Envelope => {
  // Built field by field (not spread from optional parts), in the order the JSON has always had.
  const out: { -readonly [K in keyof Envelope]: Envelope[K] } = {
    id: event.id ?? clock.newId(),
    type: event.type,
    correlationId: event.correlationId ?? cause.correlationId,
    causationId: event.causationId ?? cause.id,
    key: event.key ?? cause.key
  } as Envelope
  if (event.replyTo !== undefined) out.replyTo = event.replyTo
  out.occurredAt = occurred(clock)
  if (traceparent !== undefined) out.traceparent = traceparent
  if (event.version !== undefined && event.version !== 1) out.version = event.version
  out.data = event.data
  const by = vouchedBy(event)
  if (by !== undefined) vouch(out, by)
  return out
}

/**
 * Marks an announced event (`Next`) whose data its declaration itself encoded (the SDK's
 * `Event.make`), by a token of that declaration; `next` carries the mark to the envelope it builds.
 * In-process only: an envelope read from JSON (the broker, the inbox after a restart) has none, so
 * what crosses a trust boundary is decoded in full.
 */
export const vouch = <A extends object>(value: A, by: unknown): A => {
  if (Stamp.has(value)) Stamp.set(value, by)
  else if (Object.isExtensible(value)) new Stamp(value, by)
  else vouches.set(value, by)
  return value
}

/** The token `vouch` marked this value (or the event it was built from) with, if any. */
export const vouchedBy = (value: object): unknown => Stamp.by(value)

export const encode = (envelope: Envelope): string => JSON.stringify(envelope)

/** What every log line about a message carries: its correlation id and trace id. */
export const logFields = (envelope: Envelope): { readonly correlationId: string; readonly traceId: string | undefined } => ({
  correlationId: envelope.correlationId,
  traceId: traceIdOf(envelope.traceparent)
})
