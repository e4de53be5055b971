/** The fixed-rate load's latency accounting, on a virtual clock: a stalled sender's wait is counted. */
import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { latencyOf, paced, recorder, type Clock } from "../src/pacing.ts"

/** A clock that moves only when slept on or pushed (a sender busy for `ms`). */
const virtualClock = () => {
  let t = 1000
  const clock: Clock = {
    now: () => t,
    sleep: async (ms) => {
      t += ms
    }
  }
  return { clock, busy: (ms: number) => void (t += ms) }
}

// A virtual sleep lands on its due time give or take a rounding error of the floating point sum.
const onTime = (s: Sent) => s.sent - s.due <= 1e-9

interface Sent {
  readonly due: number
  readonly sent: number
  readonly done: number
}

/** Runs `paced` with the sender busy `stalls[i]` ms after sending message i, and each message done `service[i]` ms after its send. */
const run = async (rate: number, stalls: ReadonlyArray<number>, service: ReadonlyArray<number>) => {
  const { clock, busy } = virtualClock()
  const rec = recorder()
  const sent: Array<Sent> = []
  await paced(
    rate,
    stalls.length,
    (i, due) => {
      const at = clock.now()
      sent.push({ due, sent: at, done: at + service[i]! })
      rec.record(due, at, at + service[i]!)
      busy(stalls[i]!)
    },
    clock
  )
  return { sent, summary: rec.summary() }
}

describe("fixed-rate latency accounting", () => {
  it("counts a stalled sender's wait in the latency of every message queued behind it", async () => {
    // 100 per second (due every 10 ms); the sender stalls 100 ms after message 5; each message takes 2 ms.
    const stalls = Array.from({ length: 20 }, (_, i) => (i === 5 ? 100 : 0))
    const { sent, summary } = await run(100, stalls, Array(20).fill(2))
    // Message 6 was due 10 ms after message 5 but went out when the stall ended, 100 ms after it.
    expect(sent[6]!.sent - sent[6]!.due).toBe(90)
    expect(summary.maxSent).toBeCloseTo(2, 2)
    expect(summary.p99Sent).toBeCloseTo(2, 2)
    expect(summary.max).toBeCloseTo(92, 1)
    expect(summary.senderLateMax).toBeCloseTo(90, 1)
    // Nine messages (6 to 14) were late, 90 down to 10 ms: more than half of the tail above p50.
    expect(sent.filter((s) => !onTime(s))).toHaveLength(9)
    expect(summary.p50).toBeCloseTo(2, 2)
    expect(summary.p99).toBeCloseTo(92, 1)
  })

  it("for all schedules and delays: from the schedule >= from the send, equal exactly when the sender was not late", async () => {
    const delays = fc.array(fc.oneof(fc.constant(0), fc.double({ min: 0, max: 5, noNaN: true }), fc.double({ min: 0, max: 300, noNaN: true })), { minLength: 1, maxLength: 60 })
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 5000 }), delays, fc.array(fc.double({ min: 0, max: 200, noNaN: true }), { minLength: 60, maxLength: 60 }), async (rate, stalls, service) => {
        const { sent, summary } = await run(rate, stalls, service)
        for (const s of sent) {
          const l = latencyOf(s.due, s.sent, s.done)
          expect(l.fromSent).toBe(s.done - s.sent)
          expect(l.fromScheduled - l.fromSent).toBeCloseTo(Math.max(0, s.sent - s.due), 9)
        }
        expect(summary.count).toBe(stalls.length)
        expect(summary.p50).toBeGreaterThanOrEqual(summary.p50Sent)
        expect(summary.p99).toBeGreaterThanOrEqual(summary.p99Sent)
        expect(summary.max).toBeGreaterThanOrEqual(summary.maxSent)
        // Percentiles never pass the maximum (HDR buckets round up).
        expect(summary.p999).toBeLessThanOrEqual(summary.max)
        expect(summary.p99Sent).toBeLessThanOrEqual(summary.maxSent)
        if (sent.every(onTime)) {
          expect(summary.p50).toBe(summary.p50Sent)
          expect(summary.p99).toBe(summary.p99Sent)
          expect(summary.max).toBe(summary.maxSent)
        }
      }),
      { numRuns: 300 }
    )
  })

  it("a sender whose every stall ends before the next message is due is never late", async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 1000 }), fc.array(fc.double({ min: 0, max: 0.999, noNaN: true }), { minLength: 1, maxLength: 60 }), async (rate, fractions) => {
        // Each stall is a fraction of the interval between two sends.
        const { sent, summary } = await run(rate, fractions.map((f) => (f * 1000) / rate), Array(60).fill(3))
        expect(sent.every(onTime)).toBe(true)
        expect(summary.max).toBe(summary.maxSent)
        expect(summary.senderLateMax).toBe(0)
      })
    )
  })
})
