import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { Policy } from "@baton/actors"

const policy = fc.record({
  maxAttempts: fc.integer({ min: 1, max: 10 }),
  initialDelayMs: fc.integer({ min: 1, max: 1000 }),
  maxDelayMs: fc.integer({ min: 1000, max: 60_000 }),
  factor: fc.integer({ min: 1, max: 4 }),
  maxRestarts: fc.integer({ min: 1, max: 30 }),
  windowMs: fc.integer({ min: 100, max: 120_000 })
})

describe("Policy", () => {
  it("backs off exponentially, never below the first delay nor above the cap", () => {
    fc.assert(
      fc.property(policy, fc.integer({ min: 1, max: 60 }), (p, n) => {
        const d = Policy.delayMs(p, n)
        expect(d).toBeLessThanOrEqual(p.maxDelayMs)
        expect(d).toBeGreaterThanOrEqual(Math.min(p.initialDelayMs, p.maxDelayMs))
        expect(Policy.delayMs(p, n + 1)).toBeGreaterThanOrEqual(d)
      })
    )
  })

  it("escalates exactly when the window holds more than maxRestarts restarts", () => {
    fc.assert(
      fc.property(policy, fc.array(fc.integer({ min: 0, max: 5000 }), { maxLength: 80 }), (p, gaps) => {
        let history: ReadonlyArray<number> = []
        let now = 0
        for (const gap of gaps) {
          now += gap
          const d = Policy.restart(p, history, now)
          const inWindow = [...history, now].filter((t) => now - t < p.windowMs).length
          expect(d.escalate).toBe(inWindow > p.maxRestarts)
          expect(d.history.length).toBe(inWindow)
          history = d.history
        }
      })
    )
  })

  it("doubles from the first delay up to the cap, the first restart after the first delay", () => {
    const p = { ...Policy.defaults, initialDelayMs: 100, factor: 2, maxDelayMs: 1000 }
    expect([0, 1, 2, 3, 4, 5, 20].map((n) => Policy.delayMs(p, n))).toEqual([100, 100, 200, 400, 800, 1000, 1000])
  })

  it("forgets a restart exactly windowMs old, and escalates on the first restart past maxRestarts", () => {
    const p = { ...Policy.defaults, maxRestarts: 2, windowMs: 1000 }
    expect(Policy.restart(p, [0, 1], 1000)).toEqual({ history: [1, 1000], escalate: false })
    expect(Policy.restart(p, [1, 2], 1000)).toEqual({ history: [1, 2, 1000], escalate: true })
    expect(Policy.restart(p, [], 5)).toEqual({ history: [5], escalate: false })
  })
})
