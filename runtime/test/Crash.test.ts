/**
 * `Crash.aims`: which passes count toward `BATON_CRASH_AT`. It replaced the test inlined in
 * `Crash.point` (which built `<point>@<processor>` on every pass); for every target, point and
 * processor it decides as that test did.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import * as Crash from "../src/Crash.ts"

/** The test `Crash.point` ran before `aims` (the reference). */
const before = (target: string | undefined, name: Crash.Point, processor?: string): boolean => !(name !== target && `${name}@${processor}` !== target)

const point = fc.constantFrom(...Crash.points)
const processor = fc.option(fc.constantFrom("order-entry", "payment", "workflow-processor", "undefined", ""), { nil: undefined })
const target = fc.option(
  fc.oneof(
    point,
    fc.tuple(point, fc.constantFrom("order-entry", "payment", "workflow-processor", "undefined", "")).map(([p, n]) => `${p}@${n}`),
    fc.string({ maxLength: 12 })
  ),
  { nil: undefined }
)

describe("Crash.aims", () => {
  it("counts a pass exactly when the inlined test of before did, for every target, point and processor", () => {
    fc.assert(
      fc.property(target, point, processor, (t, name, p) => {
        expect(Crash.aims(t, name, p)).toBe(before(t, name, p))
      }),
      { numRuns: 2000 }
    )
  })
})
