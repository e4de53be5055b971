/**
 * An event processor: one job, done when an event arrives (docs/concepts.md, section 1). Its business
 * logic is pure; `handle` is the thin shell that applies state changes and returns what to announce.
 *
 * The contract: `handle` is an `Effect` that reads and writes through effect's `SqlClient`
 * (`effect/sql`) and succeeds with the events to announce. The runtime runs it inside the one
 * transaction that also marks the message done in the processor's inbox and writes the announced
 * events to the outbox and to local consumers' inboxes: all of it commits, or none of it. It may
 * be retried (a failure, a crash before the commit, a lost conflict with another instance), so it
 * must do nothing outside the transaction; asynchronous work outside it belongs in `prepare`.
 * Messages of one key run one at a time, in order; different keys run concurrently.
 *
 * ```ts
 * const payments: Processor = {
 *   name: "payment",
 *   consumes: ["order-created"],
 *   // Made once: `(event) => Effect.gen(function* () {...})` would make a generator function per message.
 *   handle: Effect.fnUntraced(function* (event: Envelope) {
 *     const sql = yield* SqlClient.SqlClient
 *     const order = event.data as OrderCreated
 *     yield* sql`INSERT INTO payments (order_id, amount) VALUES (${order.orderId}, ${order.total})`
 *     return [{ type: "payment-applied", data: { orderId: order.orderId } }]
 *   })
 * }
 * ```
 */
import type { Effect } from "effect"
import type { SqlClient } from "effect/sql"
import type { Envelope, Issue, Next } from "./Envelope.ts"

/** What a handler does: reads and writes through the transaction, and yields the events to announce. */
export type Handling = Effect.Effect<ReadonlyArray<Next>, unknown, SqlClient.SqlClient>

export interface Processor<P = unknown> {
  /** Stable name; also the processor's broker session and actor names. */
  readonly name: string
  /** Event types this processor reacts to (`order-created`), or initiating types (`place-order`). */
  readonly consumes: ReadonlyArray<string>
  /** Explicit topics, instead of those of `consumes` (a command channel, a mediator's queue). */
  readonly topics?: ReadonlyArray<string>
  /**
   * How many of its messages may run at once, at least: its actors, each taking a share of the keys
   * (a key's messages stay in order on one). The runtime gives it the larger of this and
   * `BATON_PARTITIONS`. A processor many short inputs pass through (a domain mediator) asks for
   * more, so that more of them share each group commit.
   */
  readonly actors?: number
  /**
   * Optional asynchronous work outside the transaction (an e-mail through SMTP): at least once,
   * since a crash before the commit runs it again. A processor with one is never run inside its
   * sender's transaction (a request inline, a mediator's command through `Consumer.call`): work
   * that is only computing (rendering a mail kept in the store) belongs in `handle` instead.
   */
  prepare?(event: Envelope): Effect.Effect<P, unknown>
  /**
   * `prepare` only reads and computes (no work outside the store, nothing it would be wrong to run
   * for a message already handled), or its work outside is guarded by a record that commits with
   * the message's done mark and that it reads first (a mailer's: no mail when the event's is
   * recorded): it runs without a read first that the message is still pending; the transaction's
   * done mark still skips one handled meanwhile. Default false.
   */
  readonly prepareReadsOnly?: boolean
  /**
   * Its transaction locks only rows of its message's own: the message's inbox row, records keyed
   * by the message's id (a mailer's, by the causing event), rows it inserts new (the events it
   * announces). A group commit on PostgreSQL (Store.ts `onePerLane`) then holds several of its
   * messages at once, as no two of them wait for each other's locks; otherwise at most one.
   * Default false.
   */
  readonly ownRows?: boolean
  /**
   * The shared rows its transaction locks for a message, named as keys (`stock/BOOK-1`: a table and
   * a row), or undefined when they are not known from the message. A key names the same rows for
   * every processor that gives it, so two processors that lock the same rows give the same keys.
   * With them, a group commit on PostgreSQL holds several of its messages at once (those on the
   * keys of its first): it takes an advisory lock on each of its messages' keys first, all in one
   * global order (no two groups then deadlock, whatever order their messages lock rows in), and
   * this instance starts no group on a key that a group of its own still holds (its messages wait
   * for the next group rather than a connection waiting for a lock). The keys must cover every row
   * it locks that another message may lock too; a message without keys (undefined) is one of its
   * processor's at most in a group, as without `lockKeys`. Ignored by SQLite (one writer). Rows of
   * the message's own need no key. The keys may also name rows that the processors its events
   * chain into lock (on one PostgreSQL instance an announced event runs at once in the sender's
   * transaction on a lock-keyed consumer only when all that consumer's keys for it are among the
   * root's): the order-entry inventory names the warehouse's `warehouse_stock/<sku>` for that.
   */
  readonly lockKeys?: (event: Envelope) => ReadonlyArray<string> | undefined
  /**
   * Applies the event's state changes and yields the processing events to announce on
   * `events/<type>`. Runs inside the transaction that also records the message as processed and
   * the announced events in the outbox: all of it commits, or none. A failure (or a defect) is a
   * failed attempt: retried, unless it is `Rejected` or a constraint violation.
   */
  handle(event: Envelope, prepared: P): Handling
  /**
   * `park`: the workflow event pattern (docs/concepts.md, section 4): a message that fails goes to the
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
   * Messages of one key that wait together (a domain mediator's acknowledgements of one step) may
   * be applied as one run, in one transaction with each one's done mark: the same as one at a time,
   * in their order, with fewer transitions written. Its `prepare` only reads and computes (as with
   * `prepareReadsOnly`); `handle` yields the events each message announces, in their order. When a
   * run fails in any way (a message handled meanwhile, a failed handler, a lost conflict), nothing
   * of it commits and its first message runs alone, with its own retries; the rest follow. Not
   * for a processor that parks failed keys or answers requests.
   */
  readonly batch?: Batch<unknown>
  /**
   * The message failed for good (after its retries, or `Rejected`): what to announce about it,
   * written in the transaction that records the failure (a negative acknowledgement).
   */
  failed?(event: Envelope, reason: string): ReadonlyArray<Next>
}

/** How a processor applies a run of one key's waiting messages at once (see `Processor.batch`). */
export interface Batch<B> {
  /** Messages in one run at most. */
  readonly max: number
  prepare(events: ReadonlyArray<Envelope>): Effect.Effect<B, unknown>
  handle(events: ReadonlyArray<Envelope>, prepared: B): Effect.Effect<ReadonlyArray<ReadonlyArray<Next>>, unknown, SqlClient.SqlClient>
  committed?(events: ReadonlyArray<Envelope>, prepared: B): Promise<void> | void
}

/** A failure that retrying cannot fix (bad data): it goes straight to the error path. */
export class Rejected extends Error {
  override readonly name = "Rejected"
  readonly retryable = false
  /** Data that did not decode: each issue with its path in the envelope (`data.items[0].qty`), listed by the rejection. */
  readonly issues: ReadonlyArray<Issue>
  constructor(message: string, issues: ReadonlyArray<Issue> = []) {
    super(message)
    this.issues = issues
  }
}
