/**
 * The outbox relay: publishes outbox entries in order with confirmed sends, then deletes them.
 * One relay per runtime; it drains whenever poked and once at start-up (entries a crash left).
 */
import { Log, type QoS } from "@baton/core"
import { isUnavailable, type Outbox } from "@baton/store"
import * as Crash from "./Crash.ts"

export interface Relay {
  /** Schedules a drain (coalesced). */
  readonly poke: () => void
  /** Resolves when the outbox is empty (or the relay stopped). */
  readonly idle: () => Promise<void>
  readonly close: () => Promise<void>
}

/** Maximal runs of consecutive numbers, as [first, last] pairs, in order. */
export const runs = (seqs: ReadonlyArray<number>): ReadonlyArray<readonly [number, number]> => {
  const out: Array<[number, number]> = []
  for (const n of seqs) {
    const last = out.at(-1)
    if (last !== undefined && n === last[1] + 1) last[1] = n
    else out.push([n, n])
  }
  return out
}

export const make = (deps: {
  readonly outbox: Outbox.Outbox
  readonly publish: (topic: string, payload: string, qos: QoS) => Promise<void>
  readonly logger: Log.Logger
  readonly batch?: number
  readonly retryMs?: number
}): Relay => {
  const batch = deps.batch ?? 256
  let running: Promise<void> | undefined
  let again = false
  let closed = false

  const drain = async () => {
    do {
      again = false
      for (let entries = await deps.outbox.pending(batch); entries.length > 0 && !closed; entries = await deps.outbox.pending(batch)) {
        // One at a time, in order: a consumer must not see an effect before its cause. (Concurrent
        // in-process publishes to Aedes with level persistence stalled in a test here.)
        // The kill point after each publish: a crash may come between two of a batch too.
        for (const e of entries) {
          await deps.publish(e.topic, e.payload, e.qos)
          Crash.point("outbox-published")
        }
        // Only what was published: on PostgreSQL a lower sequence number can commit after a higher
        // one was read (concurrent transactions), so a range over a gap would delete it unsent.
        for (const [first, last] of runs(entries.map((e) => e.seq))) await deps.outbox.sent(first, last)
      }
    } while (again && !closed)
  }

  const poke = () => {
    if (closed) return
    if (running !== undefined) {
      again = true
      return
    }
    running = drain()
      .catch((error: unknown) => {
        // The database out of reach: the store logs the outage once; the relay retries quietly.
        if (!isUnavailable(error)) deps.logger.log("error", "outbox relay failed, retrying", { reason: Log.reason(error) })
        if (!closed) setTimeout(poke, deps.retryMs ?? 500)
      })
      .finally(() => {
        running = undefined
        if (again) poke()
      })
  }

  const idle = async () => {
    while (running !== undefined) await running
  }

  return {
    poke,
    idle,
    close: async () => {
      await idle()
      closed = true
    }
  }
}
