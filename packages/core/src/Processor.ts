/**
 * An event processor: one job, done when an event arrives (EDA-NOTES.md, section 1). Its business
 * logic is pure; `handle` is the thin shell that applies state changes and returns what to announce.
 */
import type { Envelope, Next } from "./Envelope.ts"

export interface Processor<P = unknown> {
  /** Stable name; also the processor's broker session and actor names. */
  readonly name: string
  /** Event types this processor reacts to (`order-created`), or initiating types (`place-order`). */
  readonly consumes: ReadonlyArray<string>
  /** Explicit topics, instead of those of `consumes` (a command channel, a mediator's queue). */
  readonly topics?: ReadonlyArray<string>
  /**
   * Optional asynchronous work outside the transaction (an e-mail through SMTP): at least once,
   * since a crash before the commit runs it again.
   */
  prepare?(event: Envelope): Promise<P>
  /**
   * Applies the event's state changes and returns the processing events to announce on
   * `events/<type>`. Runs synchronously inside the transaction that also records the message as
   * processed and the announced events in the outbox: all of it commits, or none. Throwing is a crash.
   */
  handle(event: Envelope, prepared: P): ReadonlyArray<Next>
  /**
   * `park`: the workflow event pattern (EDA-NOTES.md, section 4): a message that fails goes to the
   * workflow processor for repair, and the later messages of its key wait, in order, until it is
   * resolved. Otherwise (the default) it goes to the error path and its key moves on.
   */
  readonly onFailure?: "error-path" | "park"
  /**
   * The answer to an initiating event that carries `replyTo` (request-reply): the reply's data,
   * from the event and what `handle` announced; undefined when this processor does not answer.
   */
  reply?(event: Envelope, announced: ReadonlyArray<Next>): unknown
  /** Runs after the transaction committed (timers, clean-up); a throw is logged, not retried. */
  committed?(event: Envelope, prepared: P): Promise<void> | void
  /**
   * The message failed for good (after its retries, or `Rejected`): what to announce about it,
   * written in the transaction that records the failure (a negative acknowledgement).
   */
  failed?(event: Envelope, reason: string): ReadonlyArray<Next>
}

/** A failure that retrying cannot fix (bad data): it goes straight to the error path. */
export class Rejected extends Error {
  override readonly name = "Rejected"
  readonly retryable = false
}
