/** The statistics the benchmark tables report; the A/B tools' per-arm environment. */
import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { median, percentile, treeEnvs, withEnv } from "../src/lib.ts"

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

describe("treeEnvs (BATON_AB_TREE_ENV)", () => {
  it("gives each tree argument its own set, in order, and none to an arm without one", () => {
    expect(treeEnvs("|BATON_FRONT=log", 2)).toEqual([{}, { BATON_FRONT: "log" }])
    expect(treeEnvs("BATON_DURABLE=false  BATON_SQLITE_MAX_BATCH=8", 3)).toEqual([{ BATON_DURABLE: "false", BATON_SQLITE_MAX_BATCH: "8" }, {}, {}])
    expect(treeEnvs(undefined, 2)).toEqual([{}, {}])
    // A value may hold `=` (a flag's own) or be empty.
    expect(treeEnvs("NODE_OPTIONS=--max-semi-space-size=8|X=", 2)).toEqual([{ NODE_OPTIONS: "--max-semi-space-size=8" }, { X: "" }])
  })

  it("refuses a word that is not NAME=value and more sets than tree arguments", () => {
    expect(() => treeEnvs("|BATON_FRONT:log", 2)).toThrow(/"BATON_FRONT:log" is not NAME=value/)
    expect(() => treeEnvs("=log", 1)).toThrow(/not NAME=value/)
    expect(() => treeEnvs("|A=1|B=2", 2)).toThrow(/3 sets .* for 2 tree arguments/)
  })

  it("reads back the environments it was written from, for all sets, and names each arm by its own", () => {
    const name = fc.stringMatching(/^[A-Z_][A-Z0-9_]{0,11}$/)
    const value = fc.stringMatching(/^[a-z0-9=.,:-]{0,8}$/)
    fc.assert(
      fc.property(fc.array(fc.dictionary(name, value, { maxKeys: 4 }), { minLength: 1, maxLength: 4 }), (envs) => {
        const spec = envs.map((e) => Object.entries(e).map(([k, v]) => `${k}=${v}`).join(" ")).join("|")
        expect(treeEnvs(spec, envs.length)).toEqual(envs)
        for (const [i, e] of envs.entries()) expect(withEnv(". ", e)).toBe(Object.keys(e).length === 0 ? ". " : `.  {${spec.split("|")[i]}}`)
      })
    )
  })
})
