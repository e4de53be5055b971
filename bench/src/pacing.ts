/**
 * Load at a fixed rate, timed from the schedule. Message i of a run at `rate` per second is due at
 * t0 + i/rate, and its latency counts from that due time, not from when the sender got round to
 * sending it: a sender that falls behind (its event loop stalled, the machine busy, a socket
 * pushing back) would otherwise leave the wait out of every message that queued behind the stall,
 * which is where the tail is ("coordinated omission"). The latency from the actual send is kept
 * beside it, so that the difference shows, and so is how late the sender was.
 */
import { build, type Histogram } from "hdr-histogram-js"

export interface Clock {
  readonly now: () => number
  readonly sleep: (ms: number) => Promise<void>
}

export const realClock: Clock = { now: () => performance.now(), sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)) }

/** Calls `send(i, due)` for i < count at `rate` per second, on an absolute schedule (no drift). */
export const paced = async (rate: number, count: number, send: (i: number, due: number) => void, clock: Clock = realClock): Promise<void> => {
  const t0 = clock.now()
  for (let i = 0; i < count; i++) {
    const due = t0 + (i * 1000) / rate
    const wait = due - clock.now()
    // Timers resolve to about a millisecond, and waiting out the rest by spinning would take a core
    // from the system measured: a message due within a millisecond goes now (see `latencyOf`).
    if (wait > 1) await clock.sleep(wait)
    send(i, due)
  }
}

/**
 * One message's latency in ms: from when it was due (or from its send, if the sender was early:
 * the system cannot have started on it before it had it), and from its actual send.
 */
export const latencyOf = (due: number, sent: number, done: number): { readonly fromScheduled: number; readonly fromSent: number } => ({
  fromScheduled: done - Math.min(due, sent),
  fromSent: done - sent
})

export interface LatencySummary {
  readonly count: number
  /** From the scheduled send (the honest figure), ms. */
  readonly p50: number
  readonly p99: number
  readonly p999: number
  readonly max: number
  /** From the actual send (what a timer around each send would show), ms. */
  readonly p50Sent: number
  readonly p99Sent: number
  readonly maxSent: number
  /** How late the sender was at worst, ms: what the figures from the send leave out. */
  readonly senderLateMax: number
}

// Microseconds, three significant digits (0.1%), resized as needed.
const histogram = (): Histogram => build({ lowestDiscernibleValue: 1, numberOfSignificantValueDigits: 3, autoResize: true })
const us = (ms: number) => Math.max(0, Math.round(ms * 1000))
// A percentile is its bucket's highest equivalent value, which can pass the exact maximum: capped at it.
const ms = (h: Histogram, percentile: number) => (h.totalCount === 0 ? Number.NaN : Math.min(h.getValueAtPercentile(percentile), h.maxValue) / 1000)

/** HDR histograms of the latencies from the schedule and from the send, and of the sender's lateness. */
export const recorder = () => {
  const scheduled = histogram()
  const sent = histogram()
  const late = histogram()
  return {
    /** A message due at `due`, sent at `sentAt`, done at `done` (all from one clock, ms). */
    record: (due: number, sentAt: number, done: number): void => {
      const l = latencyOf(due, sentAt, done)
      scheduled.recordValue(us(l.fromScheduled))
      sent.recordValue(us(l.fromSent))
      late.recordValue(us(sentAt - due))
    },
    summary: (): LatencySummary => ({
      count: scheduled.totalCount,
      p50: ms(scheduled, 50),
      p99: ms(scheduled, 99),
      p999: ms(scheduled, 99.9),
      max: ms(scheduled, 100),
      p50Sent: ms(sent, 50),
      p99Sent: ms(sent, 99),
      maxSent: ms(sent, 100),
      senderLateMax: ms(late, 100)
    })
  }
}

export type Recorder = ReturnType<typeof recorder>

/** Messages tracked by id from their send (due at `due`, or unscheduled: due when sent) to when they are done. */
export const tracker = <K>(clock: Clock = realClock) => {
  const latencies = recorder()
  const sent = new Map<K, { readonly due: number; readonly at: number }>()
  return {
    sent: (id: K, due?: number): void => {
      const at = clock.now()
      sent.set(id, { due: due ?? at, at })
    },
    /** Records `id` as done now; false if it was not sent, or was done already. */
    done: (id: K): boolean => {
      const s = sent.get(id)
      if (s === undefined) return false
      sent.delete(id)
      latencies.record(s.due, s.at, clock.now())
      return true
    },
    /** The ids sent and not done yet. */
    pending: (): ReadonlyArray<K> => [...sent.keys()],
    summary: latencies.summary
  }
}
