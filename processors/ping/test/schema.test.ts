// @ts-nocheck
import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { Result } from "effect"
import { Envelope as E } from "@baton/core"
import { PingData as Ping } from "@baton/ping"

const decode = E.decode(Ping)
const pathsOf = (input: unknown) => Result.match(decode(input), { onSuccess: () => [], onFailure: (issues) => [...new Set(issues.map((i) => i.path))].sort() })

describe("ping: the ping schema", () => {
  it("for any finite n and sentAt, each optional: accepted as given", () => {
    const finite = fc.double({ noNaN: true, noDefaultInfinity: true })
    fc.assert(fc.property(fc.record({ n: finite, sentAt: finite }, { requiredKeys: [] }), (p) => {
          expect(Result.getOrThrow(decode(p))).toEqual(p)
        }))
  })

  it("refuses a number that is not finite, or not a number, at its path", () => {
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, "1", null]) {
      expect(pathsOf({ n: bad }), `n ${bad}`).toEqual(["n"])
      expect(pathsOf({ sentAt: bad }), `sentAt ${bad}`).toEqual(["sentAt"])
    }
  })
})
