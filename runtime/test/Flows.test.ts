import { describe, expect, it } from "vitest"
import fc from "fast-check"
import * as Flows from "../src/Flows.ts"

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
