/**
 * The outbox relay: publishes outbox entries in order with confirmed sends, then deletes them.
 * One relay per runtime; it drains whenever poked and once at start-up (entries a crash left), and
 * publishes entries offered right after their commit without reading them back when nothing older
 * is unsent.
 */
import { Log, type QoS } from "@baton/core"
import { isUnavailable, Outbox } from "@baton/store"
import * as Crash from "./Crash.ts"
import * as Due from "./Due.ts"

export interface Relay {
  /** Schedules a drain (coalesced). */
  readonly poke: () => void
  /**
   * Entries a transaction just committed, in the order of their sequence numbers (call after the
   * commit). Published without reading them back when they follow, without a gap, the last entry
   * the relay handed to publishing (then nothing older of this instance is unsent: SQLite numbers
   * the outbox's rows in commit order without gaps); otherwise the same as `poke`.
   */
  readonly offer: (entries: ReadonlyArray<Outbox.Entry>) => void
  /**
   * Resolves once the relay has nothing to do: no drain running, no retry of a failed one due, and
   * the outbox's sent entries deleted (`Outbox.flush`: SQLite defers their delete by a few ms).
   * Then the outbox holds only what this relay cannot send now: entries committed after the
   * relay's last read and neither offered nor poked (another instance's, say), and those a delete
   * that failed put back (deleted with the next read). A retry is waited for, so with the broker
   * away for good it resolves only once the relay stops (`stopping`, `close`). It does not wait for
   * a subscriber to receive what was published (an external broker's messages on the wire).
   */
  readonly idle: () => Promise<void>
  /** Whether a drain runs or a retry of a failed one is due (what `idle` waits for before its flush). */
  readonly busy: () => boolean
  /**
   * The runtime is shutting down (its broker may be given up on, failing what is in flight): a
   * failed drain is not retried any more (a retry due is cancelled), and logged once; later pokes
   * and offers still drain.
   */
  readonly stopping: () => void
  readonly close: () => Promise<void>
}

/** Maximal runs of consecutive numbers, as [first, last] pairs, in order (`Outbox.runs`). */
export const runs = Outbox.runs

export const make = (deps: {
  readonly outbox: Outbox.Outbox
  readonly publish: (topic: string, payload: string, qos: QoS) => Promise<void>
  readonly logger: Log.Logger
  readonly batch?: number
  readonly retryMs?: number
  /**
   * How many publishes may wait for their confirmation at once (default 1: one at a time). More
   * only for a publish that sends in call order on one connection, and after a lost connection
   * sends again what it did not confirm, in order, before anything newer (MQTT.js on an external
   * broker): then a confirmed entry's older ones all reached the broker before it.
   */
  readonly window?: number
}): Relay => {
  const batch = deps.batch ?? 256
  const window = Math.max(1, deps.window ?? 1)
  let running: Promise<void> | undefined
  /** A read of the outbox is wanted (a poke, or more may follow a full batch). */
  let again = false
  let closed = false
  /** `stopping` or `close` was called: a failure is not retried. */
  let closing = false
  /** "outbox not flushed" was logged (once per shutdown). */
  let notFlushed = false
  /**
   * The highest sequence number handed to publishing, in order: every entry of this instance up to
   * it is published or queued. Unknown before the first drain published anything and after a failure.
   */
  let high: number | undefined
  /** Offered entries following `high` without a gap, published before the next read. */
  const queued: Array<Outbox.Entry> = []
  /** A read of the outbox is under way: what commits meanwhile may or may not be in it. */
  let reading = false
  /** A failed drain's retry, due after `retryMs` (`idle` waits for it; `stopping` cancels it). */
  let retry: { readonly due: Due.Due; readonly error: unknown } | undefined
  const retryLater = (error: unknown) => {
    if (retry !== undefined) return
    const due = Due.after(deps.retryMs ?? 500, () => {
      retry = undefined
      poke()
    })
    retry = { due, error }
  }
  /** "outbox not flushed", once per shutdown. */
  const notFlushedYet = (error: unknown) => {
    if (notFlushed) return
    notFlushed = true
    deps.logger.log("warn", "outbox not flushed: the rest is published at the next start", { reason: Log.reason(error) })
  }
  /** The retry due is not made (`idle` no longer waits for it). */
  const dropRetry = () => {
    retry?.due.cancel()
    retry = undefined
  }
  /** Stopping: a retry due is not waited for (nor run); what it would have sent stays in the outbox. */
  const cancelRetry = () => {
    if (retry === undefined) return
    notFlushedYet(retry.error)
    dropRetry()
  }

  /**
   * Publishes `entries` in order, up to `window` unconfirmed at once; resolves with the sequence
   * numbers confirmed, in order, and the first failure. Nothing is started after a failure (what
   * follows goes out again after what failed); what was in flight then settles first.
   */
  const publishWindow = (entries: ReadonlyArray<Outbox.Entry>): Promise<{ readonly sent: Array<number>; readonly failure?: unknown }> =>
    new Promise((resolve) => {
      const sent: Array<number> = []
      let failed = false
      let failure: unknown
      let next = 0
      let inFlight = 0
      const settled = () => {
        inFlight--
        if (!failed && next < entries.length) return launch()
        if (inFlight === 0) resolve(failed ? { sent, failure } : { sent })
      }
      const launch = () => {
        while (!failed && inFlight < window && next < entries.length) {
          const e = entries[next++]!
          inFlight++
          let published: Promise<void>
          try {
            published = deps.publish(e.topic, e.payload, e.qos)
          } catch (error) {
            published = Promise.reject(error)
          }
          published.then(
            () => {
              sent.push(e.seq)
              // The kill point after each confirmation: a crash may come between two of a window too.
              Crash.point("outbox-published")
              settled()
            },
            (error: unknown) => {
              if (!failed) (failed = true), (failure = error)
              settled()
            }
          )
        }
      }
      launch()
    })

  const publishAll = async (entries: ReadonlyArray<Outbox.Entry>) => {
    if (window === 1) {
      // One at a time, in order: a consumer must not see an effect before its cause. (Concurrent
      // in-process publishes to Aedes with level persistence stalled in a test here.)
      // The kill point after each publish: a crash may come between two of a batch too.
      for (const e of entries) {
        await deps.publish(e.topic, e.payload, e.qos)
        Crash.point("outbox-published")
      }
      // Only what was published: on PostgreSQL a lower sequence number can commit after a higher
      // one was read (concurrent transactions), so a range over a gap would delete it unsent.
      return deps.outbox.sentRuns(runs(entries.map((e) => e.seq)))
    }
    // Several in flight on one connection, in order (`window`). Only what was confirmed is
    // deleted; a failed one stays, with what was not started after it, and the retry's read
    // publishes them again in order. One confirmed after an older one failed is no overtake: it
    // was sent after that one on the same connection (a resend after a reconnect goes before
    // anything newer), so the broker had the older one first; sending it again is a duplicate.
    const { sent, failure } = await publishWindow(entries)
    if (sent.length > 0) await deps.outbox.sentRuns(runs(sent.sort((a, b) => a - b)))
    if (failure !== undefined || sent.length < entries.length) throw failure ?? new Error("outbox publish failed")
  }

  const drain = async () => {
    while (!closed) {
      if (queued.length > 0) {
        await publishAll(queued.splice(0))
        continue
      }
      if (!again) return
      again = false
      reading = true
      let entries: ReadonlyArray<Outbox.Entry>
      try {
        entries = await deps.outbox.pending(batch)
      } finally {
        reading = false
      }
      if (entries.length === 0 || closed) continue
      high = Math.max(high ?? 0, entries.at(-1)!.seq)
      await publishAll(entries)
      again = true // read until the outbox is empty
      // A full batch, more may follow (a backlog): a turn of the event loop before the next read.
      // The embedded broker completes a publish without one (its patch), so a backlog would
      // otherwise go out in one turn, with no socket read or timer in between.
      if (entries.length === batch) await new Promise((r) => setImmediate(r))
    }
  }

  const failing = Log.streak(deps.logger, "outbox relay failed, retrying", "outbox relay publishes again")
  const drained = () => {
    if (closed) return
    failing.succeeded()
    // A drain after a failure reads the outbox (`high` unknown) until it finds it empty: it
    // published what the failed one left, and the retry due has nothing to do (`idle` would sit
    // through it, and stopping would warn of an outbox not flushed).
    if (retry !== undefined) dropRetry()
  }
  const start = () => {
    running = drain()
      .then(drained, (error: unknown) => {
        // What was queued is still in the outbox: the next drain reads it back.
        high = undefined
        queued.length = 0
        // Stopping: not retried; what is unsent stays in the outbox, published at the next start.
        if (closing) {
          again = false
          return notFlushedYet(error)
        }
        // The database out of reach: the store logs the outage once; the relay retries quietly.
        // A failure that recurs is logged once, and again only when its reason changes (issue #15).
        if (!isUnavailable(error)) failing.failed(error)
        if (!closed) retryLater(error)
      })
      .finally(() => {
        running = undefined
        if (!closed && (again || queued.length > 0)) start()
      })
  }

  const poke = () => {
    if (closed) return
    again = true
    if (running === undefined) start()
  }

  const offer = (entries: ReadonlyArray<Outbox.Entry>) => {
    if (closed || entries.length === 0) return
    if (reading || high === undefined || !entries.every((e, i) => e.seq === high! + 1 + i)) return poke()
    queued.push(...entries)
    high = entries.at(-1)!.seq
    if (running === undefined) start()
  }

  /** Until no drain runs and no retry is due. */
  const settled = async () => {
    while (running !== undefined || retry !== undefined) await (running ?? retry?.due.done)
  }
  /**
   * `settled`, then the deferred deletes of what was sent (a failed one is left to the next read:
   * not a failure of `idle`, which shutdown awaits), until nothing started meanwhile.
   */
  const idle = async () => {
    do {
      await settled()
      await deps.outbox.flush().catch(() => undefined)
    } while (running !== undefined || retry !== undefined)
  }
  const stopping = () => {
    closing = true
    cancelRetry()
  }

  return {
    poke,
    offer,
    idle,
    busy: () => running !== undefined || retry !== undefined,
    stopping,
    close: async () => {
      stopping()
      // The store's close deletes what was sent (its `beforeClose`): no flush here.
      await settled()
      closed = true
    }
  }
}
