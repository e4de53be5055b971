/**
 * The error path: every refused or failed message is recorded in the store, logged, and published
 * (through the outbox) on `errors/<original topic>` as a `message-rejected` envelope with the
 * reason and the payload, card numbers and the apps' sensitive fields masked in each.
 */
import { Envelope, Sensitive, Topics, describePayload, type Log, type Rejection, type RejectionKind } from "@baton/core"
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

/**
 * Text for a TEXT column: PostgreSQL refuses a NUL character (the whole transaction fails, and with
 * it the batch of messages the rejection was written in). A reason can quote what was received:
 * V8's JSON.parse error holds the text it could not parse, a payload's raw NUL byte with it.
 */
const storable = (s: string): string => (s.includes("\u0000") ? s.replaceAll("\u0000", "\uFFFD") : s)

/** Records a refusal in the caller's transaction, so it commits with whatever else it does. */
export type ErrorPath = (refusal: Refusal) => Sql<void>

export const make = (deps: {
  readonly store?: Store
  readonly outbox: Outbox.Outbox
  readonly rejections: Rejections.Log
  readonly logger: Log.Logger
  /** The apps' sensitive fields; card numbers are masked without it too. */
  readonly mask?: Sensitive.Masker
  readonly clock?: Envelope.Clock
}): ErrorPath => {
  const clock = deps.clock ?? Envelope.systemClock
  const mask = deps.mask ?? Sensitive.masker([])
  return Effect.fnUntraced(function* (refusal: Refusal) {
    const size = refusal.size ?? refusal.payload.length
    const payload = describePayload(mask.payload(refusal.payload))
    const topic = storable(Sensitive.text(refusal.topic))
    const rejection: Rejection = {
      kind: refusal.kind,
      topic,
      reason: storable(Sensitive.text(refusal.reason)),
      issues: (refusal.issues ?? []).map((i) => ({ path: Sensitive.text(i.path), message: Sensitive.text(i.message) })),
      ...payload,
      // The size of what was received, not of its masked text.
      payloadBytes: size,
      payloadTruncated: payload.payloadTruncated || size > refusal.payload.length,
      ...(refusal.processor === undefined ? {} : { processor: refusal.processor }),
      ...(refusal.attempts === undefined ? {} : { attempts: refusal.attempts }),
      ...(refusal.cause === undefined ? {} : { envelopeId: refusal.cause.id })
    }
    const envelope =
      refusal.cause === undefined
        ? Envelope.initiate(rejectedType, rejection, {}, clock)
        : Envelope.next(refusal.cause, { type: rejectedType, data: rejection }, clock)
    const recorded = yield* deps.rejections.record(envelope.id, new Date(envelope.occurredAt), rejection)
    yield* deps.outbox.add(Topics.error(topic), Envelope.encode({ ...envelope, data: recorded }))
    deps.logger.log("warn", "message rejected", { kind: refusal.kind, topic, processor: refusal.processor, reason: rejection.reason, id: envelope.id, ...Envelope.logFields(envelope) })
  })
}
