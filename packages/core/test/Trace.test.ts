import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { Envelope, Sensitive, Trace } from "../src/index.ts"

const hex = (n: number) => fc.stringMatching(new RegExp(`^[0-9a-f]{${n}}$`)).filter((s) => !/^0+$/.test(s))

/** A causation tree: each event after the first names an earlier one as its cause. */
const tree = fc.array(fc.nat(), { minLength: 0, maxLength: 40 }).map((picks) => picks.map((p, i) => p % (i + 1)))

interface Span {
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId: string | undefined
}

/**
 * What the runtime does along a chain: the ingress begins a span under the client's context (or
 * a new trace) and stamps the accepted event; each handling begins a span under its event's
 * `traceparent`, and every event it emits carries that span (Envelope.next).
 */
const run = (causes: ReadonlyArray<number>, clientTraceparent: string | undefined) => {
  const spans: Array<Span> = []
  const ingress = Trace.begin(clientTraceparent)
  spans.push(ingress)
  const root: Envelope.Envelope = { ...Envelope.initiate("start", {}), traceparent: Trace.format(ingress) }
  const events: Array<{ readonly envelope: Envelope.Envelope; readonly emittedBy: string }> = [{ envelope: root, emittedBy: ingress.spanId }]
  for (const c of causes) {
    const cause = events[c]!.envelope
    const hop = Trace.begin(cause.traceparent)
    spans.push(hop)
    const out = Envelope.next(cause, { type: "next", data: {} }, Envelope.systemClock, Trace.format(hop))
    events.push({ envelope: out, emittedBy: hop.spanId })
  }
  return { spans, events }
}

describe("W3C trace context", () => {
  it("parses what it formats, and only well-formed, non-zero ids", () => {
    fc.assert(
      fc.property(hex(32), hex(16), fc.boolean(), (traceId, spanId, sampled) => {
        const tp = Trace.format({ traceId, spanId, sampled })
        expect(Trace.parse(tp)).toEqual({ traceId, spanId, sampled })
      })
    )
    for (const bad of [undefined, "", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331", "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
      "00-00000000000000000000000000000000-b7ad6b7169203331-01", "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01"])
      expect(Trace.parse(bad)).toBeUndefined()
    expect(Trace.parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")).toEqual({ traceId: "0af7651916cd43dd8448eb211c80319c", spanId: "b7ad6b7169203331", sampled: true })
  })

  it("parses by hand exactly as the W3C pattern does, for all near-valid texts", () => {
    const pattern = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/
    const reference = (t: string): Trace.Context | undefined => {
      const m = pattern.exec(t)
      if (m === null || /^0+$/.test(m[1]!) || /^0+$/.test(m[2]!)) return undefined
      return { traceId: m[1]!, spanId: m[2]!, sampled: (parseInt(m[3]!, 16) & 1) === 1 }
    }
    // A well-formed traceparent (ids sometimes all zeros), then characters replaced, inserted or cut.
    const id = (n: number) => fc.oneof(fc.stringMatching(new RegExp(`^[0-9a-f]{${n}}$`)), fc.constant("0".repeat(n)))
    const valid = fc.tuple(id(32), id(16), fc.stringMatching(/^[0-9a-f]{2}$/)).map(([t, s, f]) => `00-${t}-${s}-${f}`)
    const char = fc.oneof(fc.constantFrom(..."0189afgAF-\n \u0660"), fc.string({ minLength: 1, maxLength: 1 }))
    const edit = fc.tuple(fc.nat(56), fc.constantFrom("replace", "insert", "cut"), char)
    const text = fc.oneof(valid, fc.tuple(valid, fc.array(edit, { maxLength: 3 })).map(([t, edits]) =>
      edits.reduce((s, [at, how, c]) => (how === "replace" ? s.slice(0, at) + c + s.slice(at + 1) : how === "insert" ? s.slice(0, at) + c + s.slice(at) : s.slice(0, at) + s.slice(at + 1)), t)
    ), fc.string())
    fc.assert(
      fc.property(text, (t) => {
        expect(Trace.parse(t)).toEqual(reference(t))
      }),
      { numRuns: 3000 }
    )
  })

  /** Parents of a span: none, valid ones (all-zero ids among them), ones a character off, any text. */
  const parent = (() => {
    const id = (n: number) => fc.oneof(fc.stringMatching(new RegExp(`^[0-9a-f]{${n}}$`)), fc.constant("0".repeat(n)))
    const flags = fc.stringMatching(/^[0-9a-f]{2}$/)
    return fc.oneof(
      fc.constant(undefined),
      fc.tuple(id(32), id(16), flags).map(([t, s, f]) => `00-${t}-${s}-${f}`),
      fc.tuple(id(32), id(16), flags, fc.nat(54), fc.constantFrom("G", "-", "0", "A")).map(([t, s, f, at, c]) => {
        const tp = `00-${t}-${s}-${f}`
        return tp.slice(0, at) + c + tp.slice(at + 1)
      }),
      fc.string()
    )
  })()

  it("child(parent) is format(begin(parent)) with the same ids, for all parents, valid or not", () => {
    // Ids drawn from one list, each call the next: both functions given the same draws.
    const seeded = (draws: ReadonlyArray<string>): Trace.Ids => {
      let i = 0
      const next = (n: number) => (draws[i++ % draws.length]! + "0".repeat(n)).slice(0, n)
      return { traceId: () => next(32), spanId: () => next(16) }
    }
    fc.assert(
      fc.property(parent, fc.array(fc.stringMatching(/^[0-9a-f]{32}$/), { minLength: 2, maxLength: 2 }), (p, draws) => {
        expect(Trace.child(p, seeded(draws))).toBe(Trace.format(Trace.begin(p, seeded(draws))))
      }),
      { numRuns: 2000 }
    )
  })

  it("child(parent) with its ids drawn from random bytes is format(begin(parent)) with those ids, for all parents, valid or not", () => {
    fc.assert(
      fc.property(parent, fc.uint8Array({ minLength: 64, maxLength: 80 }), fc.nat(16), (p, bytes, at) => {
        // The ids `begin` draws, in its order, from the same bytes.
        let next = at
        const drawn = (n: number) => () => ((next += n), Trace.idOf(bytes, next - n, n))
        const reference = Trace.format(Trace.begin(p, { traceId: drawn(32), spanId: drawn(16) }))
        const sampled = Trace.parse(p) === undefined ? -1 : Trace.parse(p)!.sampled ? 1 : 0
        expect(Trace.childOf(p, sampled, bytes, at)).toBe(reference)
      }),
      { numRuns: 3000 }
    )
    // And so `child` itself, as to its shape (its ids random): the parent's trace and flags kept.
    fc.assert(
      fc.property(parent, (p) => {
        const made = Trace.child(p)
        const parsed = Trace.parse(made)
        expect(parsed).toBeDefined()
        const from = Trace.parse(p)
        if (from !== undefined) expect([parsed!.traceId, parsed!.sampled]).toEqual([from.traceId, from.sampled])
        else expect(parsed!.sampled).toBe(true)
        expect(made).toBe(Trace.format(parsed!))
      }),
      { numRuns: 2000 }
    )
  })

  it("child's traceparents are each their own, across refills of the random bytes: none drawn from bytes another was", () => {
    // `child` takes its bytes (`take`) before it reads `pool`, which a refill replaces; `idOf`
    // draws from the same pool in between. ~14 KB drawn: three refills of 4 KiB.
    const made: Array<string> = []
    for (let i = 0; i < 500; i++) {
      const parent = i % 3 === 0 ? undefined : `00-${"ab12".repeat(8)}-${"cd34".repeat(4)}-0${i % 2}`
      made.push(Trace.child(parent))
      if (i % 7 === 0) made.push(Trace.format(Trace.begin(undefined)))
    }
    for (const t of made) expect(t).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/)
    expect(new Set(made.map((t) => t.slice(36, 52))).size).toBe(made.length)
  })

  it("for all causation trees: one trace, and every span's parent is the span that emitted its cause", () => {
    fc.assert(
      fc.property(tree, fc.option(fc.tuple(hex(32), hex(16)), { nil: undefined }), (causes, client) => {
        const clientTp = client === undefined ? undefined : Trace.format({ traceId: client[0], spanId: client[1], sampled: true })
        const { spans, events } = run(causes, clientTp)
        const traceId = spans[0]!.traceId
        // One trace: the client's when it sent one, a new one otherwise.
        if (client !== undefined) expect(traceId).toBe(client[0])
        expect(spans[0]!.parentSpanId).toBe(client?.[1])
        for (const s of spans) expect(s.traceId).toBe(traceId)
        expect(new Set(spans.map((s) => s.spanId)).size).toBe(spans.length)
        // Span i+1 handled the event caused by causes[i]: its parent emitted that cause.
        causes.forEach((c, i) => {
          expect(spans[i + 1]!.parentSpanId).toBe(events[c]!.emittedBy)
          expect(events[i + 1]!.envelope.causationId).toBe(events[c]!.envelope.id)
          expect(Trace.traceIdOf(events[i + 1]!.envelope.traceparent)).toBe(traceId)
        })
      })
    )
  })

  it("makes ids the card-number masking leaves alone: no run of 12 digits in a traceparent", () => {
    for (let i = 0; i < 20_000; i++) {
      const parent = i % 2 === 0 ? undefined : Trace.format(Trace.begin(undefined))
      const tp = Trace.format(Trace.begin(parent))
      expect(Trace.parse(tp)).toBeDefined()
      expect(tp).not.toMatch(/[0-9](?:[ -]?[0-9]){11,}/)
      expect(Sensitive.text(`traceparent=${tp} traceId=${Trace.traceIdOf(tp)}`)).toBe(`traceparent=${tp} traceId=${Trace.traceIdOf(tp)}`)
    }
  })

  it("starts a new trace for a malformed traceparent, and each initiating event gets its own", () => {
    fc.assert(
      fc.property(fc.string(), (junk) => {
        fc.pre(Trace.parse(junk) === undefined)
        const a = Trace.begin(junk)
        const b = Trace.begin(junk)
        expect(a.parentSpanId).toBeUndefined()
        expect(a.traceId).not.toBe(b.traceId)
        expect(Trace.parse(Trace.format(a))).toEqual({ traceId: a.traceId, spanId: a.spanId, sampled: true })
      })
    )
  })

  it("passes the cause's context on when no span is given, and keeps an unsampled flag", () => {
    const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    const cause = { ...Envelope.initiate("a", {}), traceparent: tp }
    expect(Envelope.next(cause, { type: "b", data: 1 }).traceparent).toBe(tp)
    expect(Trace.begin(tp).sampled).toBe(false)
    expect(Envelope.logFields(cause)).toEqual({ correlationId: cause.correlationId, traceId: "0af7651916cd43dd8448eb211c80319c" })
  })
})

describe("ids", () => {
  /** The ids as they were built before `idOf`: a character at a time. */
  const reference = (bytes: Uint8Array, at: number, chars: number): string => {
    let out = ""
    for (let i = 0; i < chars; i++) {
      const b = bytes[at + i]!
      out += i % 8 === 7 ? "abcdef"[b % 6] : "0123456789abcdef"[b & 15]
    }
    return out
  }
  it("for all random bytes, an id is the one built a character at a time", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 80, maxLength: 96 }), fc.nat(48), fc.constantFrom(16, 32), (bytes, at, chars) => {
        expect(Trace.idOf(bytes, at, chars)).toBe(reference(bytes, at, chars))
      }),
      { numRuns: 2000 }
    )
  })
  it("for all spans begun, ids are lowercase hex with a letter every 8th character", () => {
    fc.assert(
      fc.property(fc.nat(50), (n) => {
        for (let i = 0; i <= n; i++) {
          const b = Trace.begin(undefined)
          expect(b.traceId).toMatch(/^([0-9a-f]{7}[a-f]){4}$/)
          expect(b.spanId).toMatch(/^([0-9a-f]{7}[a-f]){2}$/)
        }
      })
    )
  })
})
