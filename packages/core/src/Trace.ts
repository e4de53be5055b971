/**
 * W3C trace context (https://www.w3.org/TR/trace-context/) as it travels in the envelope's
 * `traceparent`: `00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>`. Pure, so the
 * propagation rule is tested on its own: an event without one starts a trace; every event a
 * processor emits carries its cause's trace id with the processor's span as parent.
 */
import { randomBytes } from "node:crypto"

export interface Context {
  readonly traceId: string
  readonly spanId: string
  readonly sampled: boolean
}

/** The value of a lowercase hex digit's character code, else -1. */
const hexValue = (c: number): number => (c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : -1)

/** Of `s[from, to)`: -1 when a character is not a lowercase hex digit, 0 when all are "0", else 1. */
const hexRun = (s: string, from: number, to: number): number => {
  let nonZero = 0
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i)
    if (hexValue(c) < 0) return -1
    if (c !== 48) nonZero = 1
  }
  return nonZero
}

/**
 * The context of a `traceparent`, or undefined when it is malformed (an all-zero id is invalid):
 * `/^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/` checked character by character, which every
 * hop does on its event's `traceparent` (the regular expression, its match array and the two
 * all-zero tests were ~0.7% of an order's CPU).
 */
export const parse = (traceparent: string | undefined): Context | undefined => {
  const sampled = sampledOf(traceparent)
  return sampled < 0 ? undefined : { traceId: traceparent!.slice(3, 35), spanId: traceparent!.slice(36, 52), sampled: sampled === 1 }
}

/** Of a `traceparent`: -1 when `parse` refuses it, else its sampled flag (0 or 1); nothing allocated. */
const sampledOf = (t: string | undefined): number => {
  if (t === undefined || t.length !== 55) return -1
  if (t.charCodeAt(0) !== 48 || t.charCodeAt(1) !== 48 || t.charCodeAt(2) !== 45 || t.charCodeAt(35) !== 45 || t.charCodeAt(52) !== 45) return -1
  const high = hexValue(t.charCodeAt(53))
  const low = hexValue(t.charCodeAt(54))
  if (high < 0 || low < 0 || hexRun(t, 3, 35) !== 1 || hexRun(t, 36, 52) !== 1) return -1
  return low & 1
}

export const format = (c: Context): string => `00-${c.traceId}-${c.spanId}-${c.sampled ? "01" : "00"}`

export interface Ids {
  readonly traceId: () => string
  readonly spanId: () => string
}

/**
 * Random hex ids whose every 8th character is a letter (a-f): no run of 12 digits, which the
 * masking of card numbers in log lines and answers (Sensitive.ts) would take for one, can form in
 * an id or across a `traceparent`'s dashes. 122 random bits in a trace id, 61 in a span id.
 */
// Random bytes drawn 4 KiB at a time: one call per ~85 hops instead of two per hop.
let pool = Buffer.alloc(0)
let used = 0
const letters = Buffer.from("abcdef", "latin1")
const hex = Buffer.from("0123456789abcdef", "latin1")
// An id's characters are written here and read off as one string: one allocation per id, where
// appending a character at a time made a string per character. A `traceparent`'s too (`childOf`).
const scratch = Buffer.alloc(55)
/** Writes the id of `chars` characters drawn from `bytes` at `at` into `scratch` at `to`. */
const idInto = (bytes: Uint8Array, at: number, chars: number, to: number): void => {
  for (let i = 0; i < chars; i++) {
    const b = bytes[at + i]!
    scratch[to + i] = i % 8 === 7 ? letters[b % 6]! : hex[b & 15]!
  }
}
/** The id of `chars` characters drawn from `bytes` at `at` (internal; exported for its test). */
export const idOf = (bytes: Uint8Array, at: number, chars: number): string => {
  idInto(bytes, at, chars, 0)
  return scratch.toString("latin1", 0, chars)
}
/** Where the next `chars` random bytes are in `pool` (drawn again when it runs out). */
const take = (chars: number): number => {
  if (used + chars > pool.length) {
    pool = randomBytes(4096)
    used = 0
  }
  used += chars
  return used - chars
}
const id = (chars: number): string => {
  // Taken before `pool` is read: `take` may draw a new one.
  const at = take(chars)
  return idOf(pool, at, chars)
}

export const randomIds: Ids = {
  traceId: () => id(32),
  spanId: () => id(16)
}

/** A span begun under a `traceparent` (or a new trace): its own context and its parent's span id. */
export interface Begun extends Context {
  readonly parentSpanId: string | undefined
}

/** The span of one hop: a child of `parent`, or the root of a new trace when there is none (or it is malformed). */
export const begin = (parent: string | undefined, ids: Ids = randomIds): Begun => {
  const p = parse(parent)
  return p === undefined
    ? { traceId: ids.traceId(), spanId: ids.spanId(), sampled: true, parentSpanId: undefined }
    : { traceId: p.traceId, spanId: ids.spanId(), sampled: p.sampled, parentSpanId: p.spanId }
}

/**
 * `format(begin(parent, ids))` without the contexts in between (nor `parse`'s): a valid parent's first 36
 * characters (its version and trace id) kept as they are, a new span id and the flags after them.
 * What a hop whose span is not recorded needs (Observability's `untraced`), once per handling.
 */
export const child = (parent: string | undefined, ids: Ids = randomIds): string => {
  const sampled = sampledOf(parent)
  if (ids === randomIds) {
    // Taken before `pool` is read: `take` may draw a new one.
    const at = take(sampled < 0 ? 48 : 16)
    return childOf(parent, sampled, pool, at)
  }
  return sampled < 0 ? `00-${ids.traceId()}-${ids.spanId()}-01` : `${parent!.slice(0, 36)}${ids.spanId()}-${sampled === 1 ? "01" : "00"}`
}

/**
 * `child` with its ids drawn from `bytes` at `at` (a new trace's id, then the span's), `sampled`
 * the parent's (`sampledOf`) (internal; exported for its test): written into one buffer and read
 * out as one flat string, where the parent's slice, the span id, their joins and the flattening
 * of those when the envelope is encoded were a string each (the order flow: child 1.3 -> 0.3 KB an order, `allocation.ts`).
 */
export const childOf = (parent: string | undefined, sampled: number, bytes: Uint8Array, at: number): string => {
  const out = scratch
  if (sampled < 0) {
    out.write("00-", 0, "latin1")
    idInto(bytes, at, 32, 3)
    at += 32
    out[35] = 45
  } else out.write(parent!, 0, 36, "latin1")
  idInto(bytes, at, 16, 36)
  out[52] = 45
  out[53] = 48
  out[54] = sampled === 0 ? 48 : 49
  return out.toString("latin1", 0, 55)
}

/** The trace id of an envelope's `traceparent`, for log lines. */
export const traceIdOf = (traceparent: string | undefined): string | undefined => parse(traceparent)?.traceId
