/**
 * An event processor: one job, done when an event arrives (EDA-NOTES.md, section 1). Its business
 * logic is pure; `handle` is the thin shell that applies state changes and returns what to announce.
 */
import type { Envelope, Next } from "./Envelope.ts"

export interface Processor {
  /** Stable name; also the processor's client id suffix and actor name. */
  readonly name: string
  /** Event types this processor reacts to (`order-created`), or initiating types (`place-order`). */
  readonly consumes: ReadonlyArray<string>
  /** Handles one event; returns the processing events to announce on `events/<type>`. Throwing is a crash. */
  readonly handle: (event: Envelope) => Promise<ReadonlyArray<Next>> | ReadonlyArray<Next>
}

/** A failure that retrying cannot fix (bad data): it goes straight to the error path. */
export class Rejected extends Error {
  override readonly name = "Rejected"
  readonly retryable = false
}
