import { describe, expect, it } from "vitest"
import fc from "fast-check"
import * as Flows from "../src/Flows.ts"

const bytesOf = (rs: ReadonlyArray<{ readonly topic: string; readonly payload: string }>) => rs.reduce((n, r) => n + Buffer.byteLength(r.topic) + Buffer.byteLength(r.payload), 0)

const envelope = (n: number) => JSON.stringify({ id: `e${n}`, type: "t", correlationId: "c", causationId: "c", key: "k", occurredAt: new Date(n).toISOString(), data: {} })

describe("the flows tap", () => {
  it("for any size and any number of published envelopes: keeps the last `size` of them, oldest first", () => {
    fc.assert(
      fc.property(fc.nat(20), fc.nat(60), (size, count) => {
        const tap = Flows.tap(size)
        for (let n = 0; n < count; n++) tap.record(`events/t${n}`, envelope(n))
        const expected = Array.from({ length: count }, (_, n) => `events/t${n}`).slice(Math.max(0, count - size))
        expect(tap.recent().map((r) => r.topic)).toEqual(expected)
      })
    )
  })

  it("for any records of any sizes: keeps a suffix of them exactly, within its count and its bytes, and at least the newest that fit in half its bytes", () => {
    // Strings without lone surrogates (JSON.stringify escapes them, so no envelope holds one).
    const text = fc.string({ unit: "grapheme", maxLength: 40 })
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 400 }), fc.array(fc.tuple(text, text), { maxLength: 80 }), (size, bytes, records) => {
        const tap = Flows.tap(size, bytes)
        for (const [topic, payload] of records) tap.record(topic, payload)
        const kept = tap.recent()
        const fits = records.filter(([t, p]) => Buffer.byteLength(t) + Buffer.byteLength(p) <= bytes)
        const suffix = fits.slice(fits.length - kept.length).map(([topic, payload]) => ({ topic, payload }))
        expect(kept).toEqual(suffix)
        expect(kept.length).toBeLessThanOrEqual(size)
        expect(bytesOf(kept)).toBeLessThanOrEqual(bytes)
        // Round the buffer, what is kept may leave out the end's unused bytes, never more than half.
        let newest = 0
        while (newest < Math.min(size, fits.length) && bytesOf(fits.slice(fits.length - newest - 1).map(([topic, payload]) => ({ topic, payload }))) <= bytes / 2) newest++
        expect(kept.length).toBeGreaterThanOrEqual(newest)
      }),
      { numRuns: 500 }
    )
  })

  it("tells its listeners each envelope from the moment they listen until they stop, and skips what is not an envelope", () => {
    const tap = Flows.tap(4)
    const heard: Array<string> = []
    tap.record("events/a", envelope(1))
    const stop = tap.listen((topic, e) => heard.push(`${topic} ${e.id}`))
    tap.record("events/b", envelope(2))
    tap.record("events/c", "not json")
    tap.record("events/d", JSON.stringify({ id: "x" }))
    stop()
    tap.record("events/e", envelope(3))
    expect(heard).toEqual(["events/b e2"])
  })
})
