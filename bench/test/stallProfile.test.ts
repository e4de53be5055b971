/** `tail.ts`'s TAIL_PROFILE: a CPU profile's samples attributed to the event loop's stalls. */
import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { attribute, type CpuProfile } from "../src/stallProfile.ts"

/** A root with `functions` children, each a leaf: sample `f` is in function `f`. */
const profileOf = (functions: number, samples: ReadonlyArray<number>, deltas: ReadonlyArray<number>, startTime: number): CpuProfile => ({
  nodes: [
    { id: 0, callFrame: { functionName: "(root)", url: "", lineNumber: 0 }, children: Array.from({ length: functions }, (_, f) => f + 1) },
    ...Array.from({ length: functions }, (_, f) => ({ id: f + 1, callFrame: { functionName: `f${f}`, url: "/x/y.js", lineNumber: f } }))
  ],
  startTime,
  samples: samples.map((f) => f + 1),
  timeDeltas: deltas
})

describe("stallProfile.attribute", () => {
  it("counts each sample inside a stall, up to the next sample or the stall's end, and nothing outside", () => {
    // Samples at 110, 120, 130, 140 (functions 0, 1, 0, 1); one stall over [115, 135).
    const a = attribute(profileOf(2, [0, 1, 0, 1], [10, 10, 10, 10], 100), [[115, 20]])
    expect(a.stalled).toBe(20)
    // 120 (f1) for 10 us, 130 (f0) until the stall's end, 5 us.
    expect(a.sampled).toBe(15)
    expect(new Map(a.bySelf)).toEqual(new Map([["f1 x/y.js:1", 10], ["f0 x/y.js:0", 5]]))
    expect(a.byPath[0]).toEqual(["f1 x/y.js:1", 10])
  })

  it("for all profiles and disjoint stalls in any order: the totals are those of a sample-by-sample count", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4 }).chain((functions) =>
          fc.record({
            functions: fc.constant(functions),
            samples: fc.array(fc.integer({ min: 0, max: functions - 1 }), { minLength: 1, maxLength: 60 }),
            deltas: fc.array(fc.integer({ min: 0, max: 30 }), { minLength: 60, maxLength: 60 }),
            gaps: fc.array(fc.tuple(fc.integer({ min: 0, max: 200 }), fc.integer({ min: 1, max: 200 })), { maxLength: 8 }),
            order: fc.array(fc.nat(), { maxLength: 8 })
          })
        ),
        ({ functions, samples, deltas, gaps, order }) => {
          const start = 1_000
          const profile = profileOf(functions, samples, deltas.slice(0, samples.length), start)
          // Disjoint stalls, from start - 50 on, shuffled.
          const stalls: Array<[number, number]> = []
          let t = start - 50
          for (const [gap, length] of gaps) {
            stalls.push([t + gap, length])
            t += gap + length
          }
          const shuffled = stalls.map((s, i) => [order[i] ?? 0, s] as const).sort((a, b) => a[0] - b[0]).map(([, s]) => s)
          // The count: every (sample, stall) pair, the sample's span cut at the stall's end.
          const times: Array<number> = []
          let at = start
          for (const d of profile.timeDeltas) times.push((at += d))
          const expected = new Map<string, number>()
          let total = 0
          for (const [s, length] of stalls)
            for (let i = 0; i < times.length; i++)
              if (times[i]! >= s && times[i]! < s + length) {
                const span = Math.min(times[i + 1] ?? times[i]!, s + length) - times[i]!
                total += span
                const key = `f${samples[i]} x/y.js:${samples[i]}`
                expected.set(key, (expected.get(key) ?? 0) + span)
              }
          const a = attribute(profile, shuffled)
          expect(a.sampled).toBe(total)
          expect(a.stalled).toBe(stalls.reduce((n, [, length]) => n + length, 0))
          expect(new Map(a.bySelf.filter(([, us]) => us > 0))).toEqual(new Map([...expected].filter(([, us]) => us > 0)))
          expect(a.byPath.reduce((n, [, us]) => n + us, 0)).toBe(total)
        }
      ),
      { numRuns: 300 }
    )
  })
})
