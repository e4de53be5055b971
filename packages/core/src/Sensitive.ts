/**
 * Data that must not leak: card numbers, and the fields an app marks sensitive in its schema.
 * Rejections, log lines, e-mails and HTTP answers show them masked (`****0002`); the stores that
 * need them to do their work (the payment vault, a failed workflow's input, the inboxes) keep them.
 *
 * An app marks a field of an initiating event's schema with the annotation, and declares the
 * names it marks on its `Initiating` (`sensitive: Sensitive.fields(PlaceOrder)`). A field of that
 * name is masked wherever it appears: in the event, in the envelope around it, in a workflow's
 * input, in a dashboard entry. Independently of any declaration, a card number in free text (an
 * error message that echoes the input, a payload that is not JSON) is masked too.
 */
import type { SchemaAST } from "effect"

/** Marks a schema field sensitive: `Schema.String.annotate(Sensitive.annotation)`. */
export const annotation = { sensitive: true } as const

const marked = (ast: SchemaAST.AST): boolean =>
  ast.annotations?.sensitive === true || (ast.checks ?? []).some((c) => c.annotations?.sensitive === true)

/** The names of the fields marked sensitive anywhere in a schema (nested structs, arrays, unions). */
export const fields = (schema: { readonly ast: SchemaAST.AST }): ReadonlyArray<string> => {
  const found = new Set<string>()
  const seen = new Set<SchemaAST.AST>()
  const walk = (ast: SchemaAST.AST): void => {
    if (seen.has(ast)) return
    seen.add(ast)
    switch (ast._tag) {
      case "Objects":
        for (const p of ast.propertySignatures) {
          if (marked(p.type)) found.add(String(p.name))
          walk(p.type)
        }
        for (const i of ast.indexSignatures) walk(i.type)
        return
      case "Arrays":
        return [...ast.elements, ...ast.rest].forEach(walk)
      case "Union":
        return ast.types.forEach(walk)
      case "Suspend":
        return walk(ast.thunk())
      case "Declaration":
        return ast.typeParameters.forEach(walk)
      default:
        return
    }
  }
  walk(schema.ast)
  return [...found]
}

/**
 * A card number in free text: a run of 12 digits or more (a card has 12 to 19), single spaces or
 * dashes allowed between them. UUIDs (message and workflow ids) and W3C traceparents
 * (`00-<trace id>-<span id>-01`) are left as they are, even when a group of theirs is all digits
 * (a span id ending in ten digits, then `-01`, read as a card before).
 */
const cardOrUuid = /((?<![0-9a-f])[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(?![0-9a-f])|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})|(?<![0-9])[0-9](?:[ -]?[0-9]){11,}/gi

const lastFour = (digits: string): string => `****${digits.slice(-4)}`

/** Whether a text has a run of 12 digits at all (UUIDs not told apart): without one, `text` has nothing to mask. */
const digitRun = /[0-9](?:[ -]?[0-9]){11}/

/** Whether `s[from, to)` is hex digits only, of either case (as `cardOrUuid`'s `[0-9a-f]` with its `i` flag). */
const hexOnly = (s: string, from: number, to: number): boolean => {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i) | 32
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false
  }
  return true
}

/**
 * Whether the whole of `s` is one id that `cardOrUuid` keeps as it is: a UUID (8-4-4-4-12 hex
 * digits) or a traceparent's shape (2-32-16-2). Checked by hand because most strings `text` sees
 * are such ids (an envelope's id, correlation, causation and key, a UUID of version 7 whose time
 * and version digits make a run of 12 digits with dashes between them, so `digitRun` holds and the
 * replace ran for each: ~5 of the ~8 us a payload's masking took).
 */
const wholeId = (s: string): boolean =>
  s.length === 36
    ? s.charCodeAt(8) === 45 && s.charCodeAt(13) === 45 && s.charCodeAt(18) === 45 && s.charCodeAt(23) === 45 &&
      hexOnly(s, 0, 8) && hexOnly(s, 9, 13) && hexOnly(s, 14, 18) && hexOnly(s, 19, 23) && hexOnly(s, 24, 36)
    : s.length === 55 &&
      s.charCodeAt(2) === 45 && s.charCodeAt(35) === 45 && s.charCodeAt(52) === 45 &&
      hexOnly(s, 0, 2) && hexOnly(s, 3, 35) && hexOnly(s, 36, 52) && hexOnly(s, 53, 55)

/** Masks every card number in a text to its last four digits: `4000 0000 0000 0002` → `****0002`. */
export const text = (s: string): string =>
  // Shorter than a run of 12 digits (most keys and values): nothing to test.
  s.length >= 12 && !wholeId(s) && digitRun.test(s) ? s.replace(cardOrUuid, (m, uuid: string | undefined) => (uuid !== undefined ? m : lastFour(m.replace(/[ -]/g, "")))) : s

/**
 * A value as JSON text with every card number masked, still JSON: in strings and keys as `text`
 * masks them, and a whole number of 12 digits or more as the masked string (`text` over the JSON
 * would leave a bare `****1234`, which no client parses). A fraction or an exponent is no card:
 * `0.1 + 0.2` and `3.293156665913041e+74` stay numbers.
 */
export const json = (v: unknown): string =>
  JSON.stringify(v, (_key, x: unknown) => {
    if (typeof x === "string") return text(x)
    if (typeof x === "number") {
      // Written as plain digits (a whole number below 1e21): as a card sent as a number would be.
      const masked = /^-?[0-9]+$/.test(String(x)) ? text(String(x)) : undefined
      return masked === undefined || masked === String(x) ? x : masked
    }
    if (x !== null && typeof x === "object" && !Array.isArray(x)) {
      const entries = Object.entries(x)
      return entries.some(([k]) => text(k) !== k) ? Object.fromEntries(entries.map(([k, y]) => [text(k), y])) : x
    }
    return x
  })

/** A sensitive field's value: its last four characters when it is long enough to keep them (12 and more), else nothing. */
export const value = (v: unknown): unknown => {
  if (v === null || v === undefined) return v
  const s = typeof v === "string" || typeof v === "number" || typeof v === "bigint" ? String(v) : ""
  return s.length >= 12 ? lastFour(s.replace(/[ -]/g, "")) : "****"
}

export interface Masker {
  /** A JSON value with its sensitive fields and the card numbers in its strings masked (a copy). */
  readonly json: <A>(v: A) => A
  /** A payload as received (any bytes): masked the same way, its formatting kept where it can be. */
  readonly payload: (payload: Buffer) => Buffer
  /** JSON (or any) text: sensitive scalars and card numbers masked, everything else as it was. */
  readonly text: (s: string) => string
  /** Whether a JSON text has a field of a sensitive name (a cheap test, before `text`). */
  readonly mentions: (s: string) => boolean
  /**
   * `mentions(s) ? text(s) : undefined` for `s`, the JSON text of `v` (`JSON.stringify(v)`, or `v`
   * is `JSON.parse(s)`, as the caller vouches): read from `v` itself, not parsed again from `s`, when `v` is plain JSON
   * (what `JSON.parse(s)` gives back as it is: plain objects and arrays, strings, numbers, booleans
   * and null; a sensitive field's value a scalar as the text has it); from `s` otherwise (~1 us of
   * the ~3.4 an order's card-carrying envelope took). The same text either way.
   */
  readonly kept: (v: unknown, s: string) => string | undefined
}

const quoted = (name: string) => name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

/** Deeper than this, a value is masked as its JSON text: the walk must not overflow the stack on hostile nesting. */
const maxDepth = 64

class TooDeep extends Error {}

/** `out[key] = y` as `Object.fromEntries` defines it: an own data property, `__proto__` too. */
const put = (out: Record<string, unknown>, key: string, y: unknown): void => {
  if (key === "__proto__") Object.defineProperty(out, key, { value: y, writable: true, enumerable: true, configurable: true })
  else out[key] = y
}

/** A value that `JSON.parse(JSON.stringify(v))` would not give back as it is (see `Masker.kept`). */
const notPlain = new TooDeep()

export const masker = (names: Iterable<string>): Masker => {
  const sensitive = new Set(names)
  const alternatives = [...sensitive].map(quoted).join("|")
  // A sensitive field's key in JSON text, and with its scalar value (also in text that is not valid JSON: cut, malformed).
  const keyed = sensitive.size === 0 ? undefined : new RegExp(`"(?:${alternatives})"\\s*:`)
  const scalar = new RegExp(`("(?:${alternatives})"\\s*:\\s*)("(?:[^"\\\\]|\\\\.)*"|-?[0-9][0-9.eE+-]*)`, "g")

  /** JSON text, or any text: sensitive scalars and card numbers masked, everything else as it was. */
  const inText = (s: string): string =>
    text(keyed === undefined ? s : s.replace(scalar, (_, key: string, v: string) => `${key}${JSON.stringify(value(v.startsWith('"') ? v.slice(1, -1) : v))}`))

  const walk = (v: unknown, depth: number): unknown => {
    if (typeof v === "string") return text(v)
    if (typeof v !== "object" || v === null) return v
    if (depth > maxDepth) throw new TooDeep()
    if (Array.isArray(v)) return v.map((x) => walk(x, depth + 1))
    // A loop over the keys rather than `Object.fromEntries(Object.entries(...).map(...))` (a pair
    // array per field), as `fromEntries` defines them: own data properties, `__proto__` too. With
    // the length test in `text`: ~0.75x the time to mask an order's envelope (kept in the inbox on
    // each hop that carries the card).
    const out: Record<string, unknown> = {}
    for (const k of Object.keys(v)) {
      const x = (v as Record<string, unknown>)[k]
      const own = sensitive.has(k)
      const key = own ? k : text(k)
      const y = own ? value(x) : walk(x, depth + 1)
      put(out, key, y)
    }
    return out
  }

  /**
   * `walk` of a plain JSON value (as `JSON.parse` gives it), for a value in memory: throws
   * `notPlain` (or `TooDeep`) at anything else, whose JSON text would parse to something else (a
   * `Date`, an object with `toJSON`, a class's instance, `undefined`, a function, `NaN`...).
   */
  const plainWalk = (v: unknown, depth: number): unknown => {
    switch (typeof v) {
      case "string":
        return text(v)
      case "boolean":
      case "number":
        // (`NaN` and the infinities are written `null`, as the parsed text's `null` is.)
        return v
      case "object":
        break
      default:
        throw notPlain
    }
    if (v === null) return v
    if (depth > maxDepth) throw notPlain
    if (Array.isArray(v)) {
      if (Object.getPrototypeOf(v) !== Array.prototype || (v as { readonly toJSON?: unknown }).toJSON !== undefined) throw notPlain
      const out = new Array<unknown>(v.length)
      for (let i = 0; i < v.length; i++) out[i] = plainWalk(v[i], depth + 1)
      return out
    }
    const proto: unknown = Object.getPrototypeOf(v)
    if ((proto !== Object.prototype && proto !== null) || typeof (v as { readonly toJSON?: unknown }).toJSON === "function") throw notPlain
    const out: Record<string, unknown> = {}
    for (const k of Object.keys(v)) {
      const x = (v as Record<string, unknown>)[k]
      const own = sensitive.has(k)
      // A sensitive field's value as `value` reads it from the parsed JSON: a scalar.
      if (own && !(typeof x === "string" || x === null || typeof x === "boolean" || (typeof x === "number" && Number.isFinite(x)))) throw notPlain
      const key = own ? k : text(k)
      const y = own ? value(x) : plainWalk(x, depth + 1)
      put(out, key, y)
    }
    return out
  }

  const json = <A>(v: A): A => {
    try {
      return walk(v, 0) as A
    } catch (error) {
      if (!(error instanceof TooDeep)) throw error
      return JSON.parse(inText(JSON.stringify(v))) as A
    }
  }

  const payload = (raw: Buffer): Buffer => {
    let s: string
    let encoding: "utf8" | "latin1" = "utf8"
    try {
      s = new TextDecoder("utf-8", { fatal: true }).decode(raw)
    } catch {
      // Latin-1 maps each byte to one character and back, so bytes that are not UTF-8 survive intact.
      encoding = "latin1"
      s = raw.toString(encoding)
    }
    // Only a sensitive field needs the JSON rewritten (a value that is an object, say); otherwise the text keeps its formatting.
    if (encoding === "utf8" && keyed?.test(s) === true) {
      try {
        const parsed: unknown = JSON.parse(s)
        if (typeof parsed === "object" && parsed !== null) return Buffer.from(JSON.stringify(walk(parsed, 0)))
      } catch {
        // Not JSON, or too deep to walk: masked as text below.
      }
    }
    return Buffer.from(inText(s), encoding)
  }

  const jsonText = (s: string): string => {
    if (keyed?.test(s) === true) {
      try {
        const parsed: unknown = JSON.parse(s)
        if (typeof parsed === "object" && parsed !== null) return JSON.stringify(walk(parsed, 0))
      } catch {
        // Not JSON, or too deep to walk: masked as text below.
      }
    }
    return inText(s)
  }

  const kept = (v: unknown, s: string): string | undefined => {
    if (keyed?.test(s) !== true) return undefined
    if (typeof v === "object" && v !== null) {
      try {
        return JSON.stringify(plainWalk(v, 0))
      } catch (error) {
        if (!(error instanceof TooDeep)) throw error
      }
    }
    return jsonText(s)
  }

  return { json, payload, text: jsonText, mentions: (s) => keyed?.test(s) === true, kept }
}
