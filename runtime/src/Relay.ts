/**
 * The outbox relay: publishes outbox entries in order with confirmed sends, then deletes them.
 * One relay per runtime; it drains whenever poked and once at start-up (entries a crash left).
 */
import { Log, type QoS } from "@baton/core"
import type { Outbox } from "@baton/store"
import * as Crash from "./Crash.ts"

export interface Relay {
  /** Schedules a drain (coalesced). */
  readonly poke: () => void
  /** Resolves when the outbox is empty (or the relay stopped). */
  readonly idle: () => Promise<void>
  readonly close: () => Promise<void>
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
      for (let entries = deps.outbox.pending(batch); entries.length > 0 && !closed; entries = deps.outbox.pending(batch)) {
        // One at a time, in order: a consumer must not see an effect before its cause. (Concurrent
        // in-process publishes to Aedes with level persistence stalled in a test here.)
        for (const e of entries) await deps.publish(e.topic, e.payload, e.qos)
        Crash.point("outbox-published")
        deps.outbox.sent(entries[0]!.seq, entries.at(-1)!.seq)
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
        deps.logger.log("error", "outbox relay failed, retrying", { reason: Log.reason(error) })
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
