/** The statistics the benchmark tables report. */
import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { median, percentile } from "../src/lib.ts"

describe("median", () => {
  it("is the middle sample of an odd count and the mean of the two middle ones of an even count", () => {
    expect(median([3, 1, 2])).toBe(2)
    expect(median([231, 345])).toBe(288)
    expect(median([4, 1, 3, 2])).toBe(2.5)
    expect(median([])).toBeNaN()
  })

  it("has as many samples at or below it as at or above it, for all samples", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: -1e6, max: 1e6 }), { minLength: 1, maxLength: 50 }), (xs) => {
        const m = median(xs)
        expect(xs.filter((x) => x <= m).length).toBeGreaterThanOrEqual(xs.length / 2)
        expect(xs.filter((x) => x >= m).length).toBeGreaterThanOrEqual(xs.length / 2)
        expect(m).toBeGreaterThanOrEqual(Math.min(...xs))
        expect(m).toBeLessThanOrEqual(Math.max(...xs))
        // Symmetric: the median of the negated samples is the negated median.
        expect(median(xs.map((x) => -x))).toBeCloseTo(-m, 9)
      })
    )
  })

  it("leaves the nearest-rank percentile as it was", () => {
    expect(percentile([231, 345], 50)).toBe(231)
    expect(percentile([1, 2, 3, 4], 99)).toBe(4)
  })
})
