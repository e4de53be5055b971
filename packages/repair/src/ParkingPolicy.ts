/**
 * Parking as a consumer's failure policy (`onFailure: "park"`, the workflow event pattern): the
 * consumer (runtime/src/Consumer.ts) defines what it asks of a policy and announces the events
 * returned here; this module keeps the held keys and parked messages (Parking.ts) and names the
 * events. Every operation runs inside the consumer's transaction.
 */
import { Envelope, Log, Topics } from "@baton/core"
import type { Sql, SqlGen } from "@baton/store"
import { Effect } from "effect"
import type { Parked, Parking } from "./Parking.ts"
import { events, type HandOff, type Limits } from "./WorkflowProcessor.ts"

export interface Failure {
  /** The topic the message came on, as clients know it. */
  readonly topic: string
  readonly error: string
  /** The consumer's sentence for the log: what failed, after how many attempts. */
  readonly reason: string
  readonly attempts: HandOff["attempts"]
}

export const make = (parking: Parking, logger: Log.Logger, limits?: Limits) => ({
  /**
   * Before an attempt: undefined when the message need not wait (its key is not held, nothing of
   * it is parked); else parks it (when `owned`: the key's partition is still this instance's) and
   * returns the events that announce it, with a count alert past the limit.
   */
  park: Effect.fnUntraced(function* (processor: string, event: Envelope.Envelope, owned: Sql<boolean>): SqlGen<ReadonlyArray<Envelope.Next> | undefined> {
    if (!(yield* parking.mustWait(processor, event.key, event.id))) return undefined
    if (!(yield* owned)) return []
    const held = yield* parking.park(processor, event.key, event.id)
    const out: Array<Envelope.Next> = [{ type: events.parked, data: { processor, key: event.key, envelopeId: event.id, parked: held?.parked, heldBy: held?.failedId } }]
    const limit = limits?.maxParked
    if (held !== undefined && limit !== undefined && held.parked > limit && (yield* parking.alert(processor, event.key, "count")) !== undefined) {
      out.push({ type: events.alert, data: { processor, key: event.key, reason: "count", parked: held.parked, limit } })
      logger.log("warn", "parking alert", { processor, key: event.key, reason: "count", parked: held.parked, ...Envelope.logFields(event) })
    }
    return out
  }),
  /** In the transaction that finished a message: releases its key when it was the resubmission of the failed one. */
  release: Effect.fnUntraced(function* (processor: string, event: Envelope.Envelope): SqlGen<ReadonlyArray<Envelope.Next>> {
    if ((yield* parking.held(processor, event.key))?.resubmittedId !== event.id) return []
    yield* parking.release(processor, event.key)
    const parked = yield* parking.parked(processor, event.key)
    return [{ type: events.released, data: { processor, key: event.key, parked } }]
  }),
  /** Then: unparks the key's oldest parked message, to run after the commit. */
  next: (processor: string, key: string): Sql<Parked | undefined> => parking.next(processor, key),
  /** The message failed for good: holds its key and returns the hand-off to the workflow processor. */
  hold: Effect.fnUntraced(function* (processor: string, event: Envelope.Envelope, failure: Failure, at: Date): SqlGen<ReadonlyArray<Envelope.Next>> {
    yield* parking.hold(processor, event.key, event.id, at)
    const handOff: HandOff = {
      processor,
      topic: failure.topic,
      envelope: event,
      error: failure.error,
      attempts: failure.attempts,
      trail: [...new Set([event.correlationId, event.causationId, event.id])]
    }
    logger.log("warn", "message handed to the workflow processor", { processor, key: event.key, id: event.id, reason: failure.reason, ...Envelope.logFields(event) })
    return [
      { type: "hand-off", topic: Topics.repair, data: handOff },
      { type: events.keyHeld, data: { processor, key: event.key, failedId: event.id, error: handOff.error } }
    ]
  })
})
