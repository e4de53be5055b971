/**
 * The error path: every refused or failed message is recorded in the store, logged, and published
 * on `errors/<original topic>` as a `message-rejected` envelope with the reason and the payload.
 */
import { Envelope, Log, Topics, describePayload, type Broker, type Rejection, type RejectionKind } from "@baton/core"
import type { Rejections } from "@baton/store"

export interface Refusal {
  readonly topic: string
  readonly payload: Buffer
  readonly kind: RejectionKind
  readonly reason: string
  readonly issues?: ReadonlyArray<Envelope.Issue>
  readonly processor?: string
  readonly attempts?: number
  /** The envelope that failed, when it was one: the rejection joins its correlation. */
  readonly cause?: Envelope.Envelope
}

export const rejectedType = "message-rejected"

export const make = (deps: { readonly broker: Broker; readonly rejections: Rejections.Log; readonly logger: Log.Logger; readonly clock?: Envelope.Clock }) => {
  const clock = deps.clock ?? Envelope.systemClock
  return async (refusal: Refusal): Promise<void> => {
    const rejection: Rejection = {
      kind: refusal.kind,
      topic: refusal.topic,
      reason: refusal.reason,
      issues: refusal.issues ?? [],
      ...describePayload(refusal.payload),
      ...(refusal.processor === undefined ? {} : { processor: refusal.processor }),
      ...(refusal.attempts === undefined ? {} : { attempts: refusal.attempts })
    }
    const envelope =
      refusal.cause === undefined
        ? Envelope.initiate(rejectedType, rejection, {}, clock)
        : Envelope.next(refusal.cause, { type: rejectedType, data: rejection }, clock)
    const recorded = deps.rejections.record(envelope.id, new Date(envelope.occurredAt), rejection)
    deps.logger.log("warn", "message rejected", {
      kind: refusal.kind,
      topic: refusal.topic,
      processor: refusal.processor,
      reason: refusal.reason,
      id: recorded.id
    })
    await deps.broker.publish(Topics.error(refusal.topic), Envelope.encode({ ...envelope, data: recorded }), 1)
  }
}

export type ErrorPath = ReturnType<typeof make>
