/**
 * What becomes of a message after an attempt at it, as a pure function: the consumer (Consumer.ts)
 * reports what happened and interprets the decision. Retryability is a property of the error's
 * type (the store's `SqlError` reasons, classified from the driver's codes), never of its text.
 */
import { SqlError } from "effect/sql"
import { Rejected } from "@baton/core"
import { isUnavailable, Postgres } from "@baton/store"

/** Marked not retryable: a handler's `Rejected`, or what the consumer already decided to give up on. */
export const isPermanent = (error: unknown): boolean =>
  error instanceof Rejected || (typeof error === "object" && error !== null && (error as { readonly retryable?: unknown }).retryable === false)

/**
 * `data`: rejected data (`Rejected`) or a constraint violation, retrying cannot fix it. `conflict`: lost to another transaction
 * (deadlock, lock timeout, serialization failure). `unavailable`: the database is out of reach (the
 * transaction was rolled back). `transient`: anything else (a handler's failure, a crash).
 */
export type Failure = "data" | "conflict" | "unavailable" | "transient"

/**
 * A message run inside its sender's transaction (Consumer's `call`) failed there, failing the
 * sender's transaction with it: not the sender's fault, so the sender runs again at once (as after
 * a lost conflict), and the message, refused there then, is sent as any other.
 */
export class RunElsewhere extends Error {
  readonly processor: string
  readonly envelopeId: string
  constructor(processor: string, envelopeId: string, cause: unknown) {
    super(`${processor} failed on ${envelopeId} in its sender's transaction: ${cause instanceof Error ? cause.message : String(cause)}`, { cause })
    this.processor = processor
    this.envelopeId = envelopeId
  }
}

export const classify = (error: unknown): Failure => {
  if (isUnavailable(error)) return "unavailable"
  if (Postgres.isConflict(error) || error instanceof RunElsewhere) return "conflict"
  if (isPermanent(error) || (SqlError.isSqlError(error) && (error.reason._tag === "ConstraintError" || error.reason._tag === "UniqueViolation"))) return "data"
  return "transient"
}

export type Outcome =
  | { readonly _tag: "Committed" }
  /** Parked behind the held key of an older failed message. */
  | { readonly _tag: "Parked" }
  /** Not this instance's (another owns its partition) or no longer pending. */
  | { readonly _tag: "Skipped" }
  /** `tries`: runs of the failing transaction within this attempt (the first is 1). */
  | { readonly _tag: "Failed"; readonly failure: Failure; readonly tries: number }
  /** The supervisor gave up on the actor (its restart limit): a crash loop, not the message's fault. */
  | { readonly _tag: "GaveUp" }

export interface Policy {
  /** Attempts of one message (the supervisor's restart policy). */
  readonly maxAttempts: number
  /** Runs of a transaction that lost a conflict before the conflict counts as a failed attempt. */
  readonly conflictTries: number
  /** The processor's `onFailure`: hand the message over and hold its key, or the error path. */
  readonly onFailure: "error-path" | "park"
}

export type Decision =
  | { readonly _tag: "Done"; readonly outcome: "done" | "parked" | "skipped" }
  /** Run it again as attempt `attempt`; `inPlace` when the failure does not use up an attempt. */
  | { readonly _tag: "Retry"; readonly attempt: number; readonly inPlace: boolean }
  /**
   * Failed for good after `attempts`: hand it over and hold its key (`Park`) or send it down the
   * error path (`Reject`). `exhausted`: the attempts ran out (else the error is not retryable).
   */
  | { readonly _tag: "Park" | "Reject"; readonly attempts: number; readonly exhausted: boolean }
  /** Left pending in the inbox for the next start. */
  | { readonly _tag: "Pending" }

export type GivenUp = Extract<Decision, { readonly _tag: "Park" | "Reject" }>

const final = (policy: Policy, attempts: number, exhausted: boolean): GivenUp => ({ _tag: policy.onFailure === "park" ? "Park" : "Reject", attempts, exhausted })

/** The decision after attempt `attempt` (the first is 1) ended in `outcome`. */
export const decide = (outcome: Outcome, attempt: number, policy: Policy): Decision => {
  switch (outcome._tag) {
    case "Committed":
      return { _tag: "Done", outcome: "done" }
    case "Parked":
      return { _tag: "Done", outcome: "parked" }
    case "Skipped":
      return { _tag: "Done", outcome: "skipped" }
    case "GaveUp":
      return { _tag: "Pending" }
    case "Failed":
      if (outcome.failure === "data") return final(policy, attempt, false)
      if (outcome.failure === "unavailable" || (outcome.failure === "conflict" && outcome.tries < policy.conflictTries)) return { _tag: "Retry", attempt, inPlace: true }
      return attempt < policy.maxAttempts ? { _tag: "Retry", attempt: attempt + 1, inPlace: false } : final(policy, attempt, true)
  }
}

/** Whether the failure's type allows another run of the transaction within the same attempt. */
export const retriedInPlace = (error: unknown, tries: number, conflictTries: number): boolean => {
  const decision = decide({ _tag: "Failed", failure: classify(error), tries }, 1, { maxAttempts: 1, conflictTries, onFailure: "error-path" })
  return decision._tag === "Retry" && decision.inPlace
}

/**
 * The supervisor settled the message as failed after `attempts` (past its attempts, at once for an
 * error that is not retryable, or on a stopped actor): the last attempt's decision when it gave up,
 * else a final one.
 */
export const givenUp = (last: Decision | undefined, attempts: number, policy: Policy): GivenUp =>
  last !== undefined && (last._tag === "Park" || last._tag === "Reject") ? { ...last, attempts } : final(policy, attempts, true)
