import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { IdleSpin } from "@baton/core"

/**
 * An event loop simulated on a clock of its own: work arrives at given times (a request: its data
 * is `seen`) and runs for a while, then touches the spin (its reply sent); a pending `setImmediate` turn makes the loop poll
 * instead of block (it runs after the work that arrived meanwhile, as libuv's check phase follows
 * its poll phase); without one the loop blocks until the next work. A `preempted` item is time in
 * which the thread is off its CPU (another process runs): no touch, the clock moves, its CPU
 * time does not.
 */
interface Item {
  readonly at: number
  readonly ms: number
  readonly preempted?: boolean
}
const simulate = (work: ReadonlyArray<Item>, windowUs: number, turnMs: number, learning: Partial<IdleSpin.Options> = {}) => {
  let t = 0
  let used = 0
  let pending: (() => void) | undefined
  let turns = 0
  /** When the loop was polling (a turn pending) and when it blocked, to check the windows. */
  const polled: Array<readonly [from: number, to: number]> = []
  const spin = IdleSpin.make({
    ...learning,
    windowUs,
    now: () => t,
    cpu: () => used * 1000,
    schedule: (turn) => {
      expect(pending, "one chain of turns at a time").toBeUndefined()
      pending = turn
    }
  })
  const queue = [...work].sort((a, b) => a.at - b.at)
  let i = 0
  /** When the last work started (its touch) and ended, and when the last preemption ended. */
  let lastStart = 0
  let lastEnd = 0
  let lastPreempted = 0
  /** The first turn after the last work: the turn that sees the gap it ran in (the work's end when no turn followed). */
  let workSinceTurn = false
  let lastWorkTurn = 0
  for (;;) {
    // A blocked loop is not preempted: those items pass while it waits.
    if (pending === undefined) while (queue[i]?.preempted === true) i++
    const next = queue[i]
    if (pending === undefined) {
      if (next === undefined) break
      t = Math.max(t, next.at)
    }
    // The poll phase: the work that has arrived runs (its socket's data touches the spin).
    while (queue[i] !== undefined && queue[i]!.at <= t) {
      const item = queue[i]!
      i++
      if (item.preempted === true) {
        // Off the CPU: only while the loop runs (a blocked loop is not preempted).
        if (pending === undefined) continue
        t = Math.max(t, item.at) + item.ms
        lastPreempted = t
        continue
      }
      spin.seen()
      lastStart = t
      t += item.ms
      used += item.ms
      spin.touch()
      lastEnd = t
      workSinceTurn = true
    }
    // The check phase: the turn, if one is pending.
    const turn = pending
    if (turn !== undefined) {
      pending = undefined
      const from = t
      t += turnMs
      used += turnMs
      turns++
      if (workSinceTurn) lastWorkTurn = t
      workSinceTurn = false
      turn()
      polled.push([from, t])
    }
  }
  if (workSinceTurn) lastWorkTurn = lastEnd
  return { end: t, turns, spent: spin.spentMs(), spinning: spin.spinning(), polled, lastStart, lastEnd, lastPreempted, lastWorkTurn, ...spin.stats() }
}

const workArb = fc.array(fc.record({ at: fc.double({ min: 0, max: 50, noNaN: true }), ms: fc.double({ min: 0, max: 2, noNaN: true }) }), { maxLength: 40 })
const preemptedArb = fc.array(
  fc.record({ at: fc.double({ min: 0, max: 50, noNaN: true }), ms: fc.double({ min: 0, max: 5, noNaN: true }), preempted: fc.constant(true) }),
  { maxLength: 40 }
)

const nearWorkArb = fc.array(
  fc.record({ pick: fc.nat(), offset: fc.double({ min: 0, max: 0.5, noNaN: true }), ms: fc.double({ min: 0, max: 5, noNaN: true }) }),
  { maxLength: 10 }
)

describe("IdleSpin", () => {
  it("for any work, the loop stops polling within the window (and two turns) after its last work, and never before the window has passed", () => {
    fc.assert(
      fc.property(workArb, fc.integer({ min: 1, max: 500 }), fc.double({ min: 0.0005, max: 0.005, noNaN: true }), (work, windowUs, turnMs) => {
        // Never resting here (its learning is checked below).
        const { end, spinning, lastEnd } = simulate(work, windowUs, turnMs, { missesToRest: Number.POSITIVE_INFINITY })
        expect(spinning).toBe(false)
        if (work.length === 0) return
        // It stopped at most a window and two turns (the one after the work, the last) after its last work ended.
        expect(end).toBeLessThanOrEqual(lastEnd + windowUs / 1000 + 2 * turnMs + 1e-9)
        // It polled at least until the window after its last touch (the last work's end) had passed.
        expect(end).toBeGreaterThanOrEqual(lastEnd + windowUs / 1000 - 1e-9)
      })
    )
  })

  it("for any work and any preemptions, a preemption never extends the window: it stops at its first turn past the window after the turn that saw its last work", () => {
    fc.assert(
      fc.property(workArb, preemptedArb, nearWorkArb, fc.integer({ min: 1, max: 500 }), fc.double({ min: 0.0005, max: 0.005, noNaN: true }), (work, anywhere, near, windowUs, turnMs) => {
        // Preemptions at any time, and preemptions just after some work ends (where a chain runs:
        // the ones that could extend it). Never resting, so that a chain follows every piece of work.
        const preempted = [
          ...anywhere,
          ...(work.length === 0
            ? []
            : near.map(({ pick, offset, ms }) => {
                const after = work[pick % work.length]!
                return { at: after.at + after.ms + offset, ms, preempted: true as const }
              }))
        ]
        const { end, spinning, lastWorkTurn, lastPreempted } = simulate([...work, ...preempted], windowUs, turnMs, { missesToRest: Number.POSITIVE_INFINITY })
        expect(spinning).toBe(false)
        if (work.length === 0) return
        // The window counts from the turn that saw the last work's gap (a gap with more work than
        // preemption in it counts as busy, as it ends: the loop cannot tell when in the gap the work
        // ran). A preemption after that turn delays the turn that ends the chain, never the window.
        expect(end).toBeLessThanOrEqual(Math.max(lastWorkTurn + windowUs / 1000 + turnMs, lastPreempted + turnMs) + 1e-9)
      })
    )
  })

  it("for any preemptions while it polls after one piece of work, it stops at its first turn past the window after that work's turn, or right after the last preemption", () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0, max: 2, noNaN: true }),
        fc.array(fc.record({ offset: fc.double({ min: 0, max: 1, noNaN: true }), ms: fc.double({ min: 0, max: 5, noNaN: true }) }), { minLength: 1, maxLength: 5 }),
        fc.integer({ min: 1, max: 500 }),
        fc.double({ min: 0.0005, max: 0.005, noNaN: true }),
        (ms, offsets, windowUs, turnMs) => {
          // Each preemption comes within the window after the work (offset as a share of it), while the chain runs.
          const preempted = offsets.map(({ offset, ms: off }) => ({ at: ms + (offset * windowUs) / 1000, ms: off, preempted: true as const }))
          const { end, spinning, lastWorkTurn, lastPreempted } = simulate([{ at: 0, ms }, ...preempted], windowUs, turnMs)
          expect(spinning).toBe(false)
          expect(end).toBeLessThanOrEqual(Math.max(lastWorkTurn + windowUs / 1000 + turnMs, lastPreempted + turnMs) + 1e-9)
        }
      )
    )
  })

  it("for any work, what it counts as spent polling is at most one window and two turns per piece of work, and the turns it ran (with work shorter than its busy gap, which it cannot tell from polling)", () => {
    fc.assert(
      fc.property(workArb, fc.integer({ min: 1, max: 500 }), fc.double({ min: 0.0005, max: 0.005, noNaN: true }), (work, windowUs, turnMs) => {
        const { spent, turns } = simulate(work, windowUs, turnMs)
        const short = work.filter((w) => w.ms <= 0.02).reduce((s, w) => s + w.ms, 0)
        expect(spent).toBeGreaterThanOrEqual(0)
        expect(spent).toBeLessThanOrEqual(work.length * (windowUs / 1000 + 2 * turnMs) + short + 1e-9)
        expect(spent).toBeLessThanOrEqual(turns * turnMs + short + 1e-9)
      })
    )
  })

  it("for any traffic whose gaps are longer than its window, it rests after its misses in a row: one start in probeEvery touches", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ gap: fc.double({ min: 0.2, max: 5, noNaN: true }), ms: fc.double({ min: 0, max: 0.05, noNaN: true }) }), { maxLength: 200 }),
        fc.integer({ min: 1, max: 100 }),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 2, max: 20 }),
        (gaps, windowUs, missesToRest, probeEvery) => {
          // Each message arrives more than a window and its turns after the last one ended: none can be caught.
          let at = 0
          const work = gaps.map(({ gap, ms }) => {
            at += gap + ms
            return { at, ms }
          })
          const { chains, hits } = simulate(work, windowUs, 0.002, { missesToRest, probeEvery })
          expect(hits).toBe(0)
          expect(chains).toBeLessThanOrEqual(missesToRest + Math.ceil(work.length / probeEvery))
        }
      )
    )
  })

  it("resumes polling once a probe catches data: paced traffic rests, request-reply traffic after it polls again", () => {
    // Forty messages 5 ms apart, then requests every 0.3 ms worked 0.2 ms (0.1 ms between them).
    const paced = Array.from({ length: 40 }, (_, k) => ({ at: k * 5, ms: 0.05 }))
    const requests = Array.from({ length: 100 }, (_, k) => ({ at: 200 + k * 0.3, ms: 0.2 }))
    const run = simulate([...paced, ...requests], 150, 0.002)
    const pacedOnly = simulate(paced, 150, 0.002)
    // Resting through the paced part: its four misses, then one start in sixteen.
    expect(pacedOnly.chains).toBeLessThanOrEqual(4 + Math.ceil(40 / 16))
    // The requests are caught while the loop polls: once a probe catches one, it polls through the rest.
    expect(run.hits).toBeGreaterThan(80)
  })

  it("never polls without work, with a window of 0, or once stopped", () => {
    const none = simulate([], 100, 0.002)
    expect(none.turns).toBe(0)
    const zero = simulate([{ at: 1, ms: 0.1 }, { at: 2, ms: 0.1 }], 0, 0.002)
    expect(zero.turns).toBe(0)
    expect(IdleSpin.off.spinning()).toBe(false)
    let scheduled = 0
    const spin = IdleSpin.make({ windowUs: 100, now: () => 0, schedule: () => void scheduled++ })
    spin.stop()
    spin.touch()
    expect(scheduled).toBe(0)
  })

  it("never starts on data alone (seen): traffic without replies costs nothing", () => {
    let scheduled = 0
    const spin = IdleSpin.make({ windowUs: 500, now: () => 0, cpu: () => 0, schedule: () => void scheduled++ })
    for (let i = 0; i < 100; i++) spin.seen()
    expect(scheduled).toBe(0)
    expect(spin.stats()).toEqual({ chains: 0, hits: 0 })
  })

  it("keeps a request-reply's loop polling from one request to the next when they come within the window", () => {
    // Requests every 0.3 ms, each worked 0.2 ms: the loop polls through the 0.1 ms between them.
    const work = Array.from({ length: 20 }, (_, k) => ({ at: k * 0.3, ms: 0.2 }))
    const polling = simulate(work, 150, 0.002)
    expect(polling.polled.length).toBeGreaterThan(20 * 10)
    // The same with a window shorter than the gap: it blocks between them (a few turns each).
    const blocking = simulate(work, 50, 0.002)
    expect(blocking.spent).toBeLessThan(polling.spent)
  })

  it("runs on a real event loop: polls after a touch, then stops by itself", async () => {
    let turns = 0
    const spin = IdleSpin.make({ windowUs: 2000, schedule: (turn) => void setImmediate(() => (turns++, turn())) })
    const t0 = performance.now()
    spin.touch()
    expect(spin.spinning()).toBe(true)
    // Its turns let timers run (the waits below end): the loop polls, it does not hang.
    while (spin.spinning() && performance.now() - t0 < 1_000) await new Promise((r) => setTimeout(r, 5))
    expect(spin.spinning()).toBe(false)
    // Polling, not blocked: turns one after another. Counted as time only where a turn came within
    // 20 us of the last, which a loaded machine may never give (seen in CI: 0 ms), so the turns are
    // what is checked; the time at most about its window.
    expect(turns).toBeGreaterThan(1)
    expect(spin.spentMs()).toBeLessThan(50)
  })
})
