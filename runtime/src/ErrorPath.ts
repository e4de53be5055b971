/**
 * The error path: every refused or failed message is recorded in the store, logged, and published
 * (through the outbox) on `errors/<original topic>` as a `message-rejected` envelope with the
 * reason and the payload.
 */
import { Envelope, Topics, describePayload, type Log, type Rejection, type RejectionKind } from "@baton/core"
import { Effect } from "effect"
import type { Outbox, Rejections, Sql, Store } from "@baton/store"

export interface Refusal {
  readonly topic: string
  readonly payload: Buffer
  readonly kind: RejectionKind
  readonly reason: string
  readonly issues?: ReadonlyArray<Envelope.Issue>
  readonly processor?: string
  readonly attempts?: number
  /** Size of the original payload when `payload` holds only a preview. */
  readonly size?: number
  /** The envelope that failed, when it was one: the rejection joins its correlation. */
  readonly cause?: Envelope.Envelope
}

export const rejectedType = "message-rejected"

/** Records a refusal in the caller's transaction, so it commits with whatever else it does. */
export type ErrorPath = (refusal: Refusal) => Sql<void>

export const make = (deps: {
  readonly store?: Store
  readonly outbox: Outbox.Outbox
  readonly rejections: Rejections.Log
  readonly logger: Log.Logger
  readonly clock?: Envelope.Clock
}): ErrorPath => {
  const clock = deps.clock ?? Envelope.systemClock
  return (refusal) => Effect.suspend(() => {
    const rejection: Rejection = {
      kind: refusal.kind,
      topic: refusal.topic,
      reason: refusal.reason,
      issues: refusal.issues ?? [],
      ...describePayload(refusal.payload),
      ...(refusal.size === undefined ? {} : { payloadBytes: refusal.size, payloadTruncated: refusal.size > refusal.payload.length }),
      ...(refusal.processor === undefined ? {} : { processor: refusal.processor }),
      ...(refusal.attempts === undefined ? {} : { attempts: refusal.attempts })
    }
    const envelope =
      refusal.cause === undefined
        ? Envelope.initiate(rejectedType, rejection, {}, clock)
        : Envelope.next(refusal.cause, { type: rejectedType, data: rejection }, clock)
    return Effect.gen(function* () {
      const recorded = yield* deps.rejections.record(envelope.id, new Date(envelope.occurredAt), rejection)
      yield* deps.outbox.add(Topics.error(refusal.topic), Envelope.encode({ ...envelope, data: recorded }))
      deps.logger.log("warn", "message rejected", { kind: refusal.kind, topic: refusal.topic, processor: refusal.processor, reason: refusal.reason, id: envelope.id })
    })
  })
}
