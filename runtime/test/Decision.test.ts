/**
 * The consumer's decision on an attempt's outcome (runtime/src/Decision.ts), for all sequences of
 * attempt outcomes and policies: what is retried (and whether it uses up an attempt), what parks,
 * what goes to the error path. Retryability follows the error's type, never its text.
 */
import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { SqlError } from "effect/sql"
import { Rejected } from "@baton/core"
import * as Decision from "../src/Decision.ts"

const policy = fc.record({
  maxAttempts: fc.integer({ min: 1, max: 8 }),
  conflictTries: fc.integer({ min: 1, max: 25 }),
  onFailure: fc.constantFrom("error-path" as const, "park" as const)
})
const failure = fc.constantFrom<Decision.Failure>("data", "conflict", "unavailable", "transient")
const outcome: fc.Arbitrary<Decision.Outcome> = fc.oneof(
  fc.constant({ _tag: "Committed" as const }),
  fc.constant({ _tag: "Parked" as const }),
  fc.constant({ _tag: "Skipped" as const }),
  fc.constant({ _tag: "GaveUp" as const }),
  fc.record({ _tag: fc.constant("Failed" as const), failure, tries: fc.integer({ min: 1, max: 30 }) })
)

/** Runs a message through outcomes as the consumer does: until a decision other than a retry. */
const lifecycle = (outcomes: ReadonlyArray<Decision.Outcome>, p: Decision.Policy) => {
  const steps: Array<{ attempt: number; outcome: Decision.Outcome; decision: Decision.Decision }> = []
  let attempt = 1
  for (const o of outcomes) {
    const decision = Decision.decide(o, attempt, p)
    steps.push({ attempt, outcome: o, decision })
    if (decision._tag !== "Retry") break
    attempt = decision.attempt
  }
  return steps
}

const sqlError = (reason: SqlError.SqlError["reason"]) => new SqlError.SqlError({ reason })
const props = (message: string) => ({ cause: new Error(message), message, operation: "execute" })

describe("Decision", () => {
  it("for all sequences of outcomes: attempts never go back nor past the maximum; only failures retry; a retry in place is a conflict or an outage", () => {
    fc.assert(
      fc.property(fc.array(outcome, { minLength: 1, maxLength: 40 }), policy, (outcomes, p) => {
        for (const { attempt, outcome: o, decision } of lifecycle(outcomes, p)) {
          expect(attempt).toBeGreaterThanOrEqual(1)
          expect(attempt).toBeLessThanOrEqual(p.maxAttempts)
          if (decision._tag === "Retry") {
            expect(o._tag).toBe("Failed")
            expect(decision.attempt).toBe(decision.inPlace ? attempt : attempt + 1)
            expect(decision.attempt).toBeLessThanOrEqual(p.maxAttempts)
            if (decision.inPlace && o._tag === "Failed") expect(o.failure === "unavailable" || (o.failure === "conflict" && o.tries < p.conflictTries)).toBe(true)
          }
          if (decision._tag === "Park" || decision._tag === "Reject") {
            expect(decision._tag).toBe(p.onFailure === "park" ? "Park" : "Reject")
            expect(decision.attempts).toBe(attempt)
          }
        }
      })
    )
  })

  it("a committed, parked or skipped attempt is done, whatever the attempt and the policy; a supervisor that gave up leaves it pending", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 10 }), policy, (attempt, p) => {
        expect(Decision.decide({ _tag: "Committed" }, attempt, p)).toEqual({ _tag: "Done", outcome: "done" })
        expect(Decision.decide({ _tag: "Parked" }, attempt, p)).toEqual({ _tag: "Done", outcome: "parked" })
        expect(Decision.decide({ _tag: "Skipped" }, attempt, p)).toEqual({ _tag: "Done", outcome: "skipped" })
        expect(Decision.decide({ _tag: "GaveUp" }, attempt, p)).toEqual({ _tag: "Pending" })
      })
    )
  })

  it("a data error is never retried: parked or rejected at once, at any attempt", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 10 }), fc.integer({ min: 1, max: 30 }), policy, (attempt, tries, p) => {
        expect(Decision.decide({ _tag: "Failed", failure: "data", tries }, attempt, p)).toEqual({ _tag: p.onFailure === "park" ? "Park" : "Reject", attempts: attempt, exhausted: false })
      })
    )
  })

  it("a transient failure is retried until the maximum attempts, then parked or rejected per policy", () => {
    fc.assert(
      fc.property(policy, (p) => {
        const steps = lifecycle(Array.from({ length: p.maxAttempts + 5 }, () => ({ _tag: "Failed", failure: "transient", tries: 1 }) as const), p)
        expect(steps.map((s) => s.attempt)).toEqual(Array.from({ length: p.maxAttempts }, (_, i) => i + 1))
        expect(steps.at(-1)!.decision).toEqual({ _tag: p.onFailure === "park" ? "Park" : "Reject", attempts: p.maxAttempts, exhausted: true })
      })
    )
  })

  it("a lost conflict is run again in place (no attempt used) until its tries run out, then counts as a failed attempt; an outage always runs again in place", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 10 }), fc.integer({ min: 1, max: 40 }), policy, (attempt, tries, p) => {
        fc.pre(attempt <= p.maxAttempts)
        const conflict = Decision.decide({ _tag: "Failed", failure: "conflict", tries }, attempt, p)
        const transient = Decision.decide({ _tag: "Failed", failure: "transient", tries }, attempt, p)
        expect(conflict).toEqual(tries < p.conflictTries ? { _tag: "Retry", attempt, inPlace: true } : transient)
        expect(Decision.decide({ _tag: "Failed", failure: "unavailable", tries }, attempt, p)).toEqual({ _tag: "Retry", attempt, inPlace: true })
      })
    )
  })

  it("the supervisor's settlement keeps the last attempt's final decision, else gives up as exhausted", () => {
    fc.assert(
      fc.property(outcome, fc.integer({ min: 0, max: 10 }), policy, (o, attempts, p) => {
        const last = Decision.decide(o, Math.max(1, attempts), p)
        const settled = Decision.givenUp(last, attempts, p)
        if (last._tag === "Park" || last._tag === "Reject") expect(settled).toEqual({ ...last, attempts })
        else expect(settled).toEqual({ _tag: p.onFailure === "park" ? "Park" : "Reject", attempts, exhausted: true })
        expect(Decision.givenUp(undefined, attempts, p)).toEqual({ _tag: p.onFailure === "park" ? "Park" : "Reject", attempts, exhausted: true })
      })
    )
  })

  it("classifies by the error's type (the driver's code as effect/sql's reason), never by its text", () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.constantFrom("UNIQUE constraint failed", "deadlock detected", "could not serialize access", "connection terminated")), (message) => {
        expect(Decision.classify(sqlError(new SqlError.UniqueViolation({ ...props(message), constraint: "pk" })))).toBe("data")
        expect(Decision.classify(sqlError(new SqlError.ConstraintError(props(message))))).toBe("data")
        expect(Decision.classify(sqlError(new SqlError.DeadlockError(props(message))))).toBe("conflict")
        expect(Decision.classify(sqlError(new SqlError.SerializationError(props(message))))).toBe("conflict")
        expect(Decision.classify(sqlError(new SqlError.LockTimeoutError(props(message))))).toBe("conflict")
        expect(Decision.classify(sqlError(new SqlError.ConnectionError(props(message))))).toBe("unavailable")
        expect(Decision.classify(sqlError(new SqlError.UnknownError(props(message))))).toBe("transient")
        expect(Decision.classify(new Rejected(message))).toBe("data")
        expect(Decision.classify(new Error(message))).toBe("transient")
        expect(Decision.classify(message)).toBe("transient")
      })
    )
  })

  it("retries a transaction in place exactly for an outage, or a conflict within its tries", () => {
    const conflict = sqlError(new SqlError.DeadlockError(props("deadlock detected")))
    const outage = sqlError(new SqlError.ConnectionError(props("connection terminated")))
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 25 }), (tries, max) => {
        expect(Decision.retriedInPlace(conflict, tries, max)).toBe(tries < max)
        expect(Decision.retriedInPlace(outage, tries, max)).toBe(true)
        expect(Decision.retriedInPlace(new Error("deadlock detected"), tries, max)).toBe(false)
        expect(Decision.retriedInPlace(sqlError(new SqlError.UniqueViolation({ ...props("x"), constraint: "pk" })), tries, max)).toBe(false)
      })
    )
  })
})
