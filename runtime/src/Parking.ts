/**
 * What a consumer (Consumer.ts) asks of its failure policy when a processor parks (`onFailure:
 * "park"`, the workflow event pattern). @baton/repair implements it (`ParkingPolicy`) and
 * Runtime.ts passes it in, so that the consumer knows nothing of held keys' tables or event names.
 */
import type { Envelope } from "@baton/core"
import type { Sql } from "@baton/store"

/** Holds the key of a failed message, parks later ones of it; each runs inside the consumer's transaction and returns the events for it to announce. */
export interface Parking {
  /** Before an attempt: undefined when the message need not wait; else parks it (when `owned`). */
  readonly park: (processor: string, event: Envelope.Envelope, owned: Sql<boolean>) => Sql<ReadonlyArray<Envelope.Next> | undefined>
  /** In the transaction that finished a message: releases its key when it was the failed one's resubmission. */
  readonly release: (processor: string, event: Envelope.Envelope) => Sql<ReadonlyArray<Envelope.Next>>
  /** Then: unparks the key's oldest parked message. */
  readonly next: (processor: string, key: string) => Sql<{ readonly topic: string; readonly payload: string } | undefined>
  /** The message failed for good: holds its key; returns the hand-off. */
  readonly hold: (processor: string, event: Envelope.Envelope, failure: { readonly topic: string; readonly error: string; readonly reason: string; readonly attempts: ReadonlyArray<Attempt> }, at: Date) => Sql<ReadonlyArray<Envelope.Next>>
}

/** A failed attempt of a message, for the hand-off. */
export interface Attempt {
  readonly attempt: number
  readonly error: string
  readonly at: string
}
