/**
 * Restart policy of a supervised actor, as pure functions: exponential back-off between restarts,
 * a restart limit within a time window (past it the supervisor escalates), and a bound on the
 * attempts of one message (past it the message goes to the error path instead of crashing again).
 */
export interface Policy {
  /** Attempts of one message before it goes to the error path. */
  readonly maxAttempts: number
  readonly initialDelayMs: number
  readonly maxDelayMs: number
  readonly factor: number
  /** More than `maxRestarts` restarts within `windowMs` escalates. */
  readonly maxRestarts: number
  readonly windowMs: number
}

export const defaults: Policy = {
  maxAttempts: 3,
  initialDelayMs: 100,
  maxDelayMs: 10_000,
  factor: 2,
  maxRestarts: 20,
  windowMs: 60_000
}

/** Delay before the restart that follows `consecutive` crashes in a row (1 for the first). */
export const delayMs = (policy: Policy, consecutive: number): number =>
  Math.min(policy.maxDelayMs, policy.initialDelayMs * policy.factor ** Math.max(0, consecutive - 1))

export interface Decision {
  /** Restart times still inside the window, including this one. */
  readonly history: ReadonlyArray<number>
  readonly escalate: boolean
}

/** Records a restart at `now`; escalates when the window holds more than `maxRestarts` of them. */
export const restart = (policy: Policy, history: ReadonlyArray<number>, now: number): Decision => {
  const kept = [...history.filter((t) => now - t < policy.windowMs), now]
  return { history: kept, escalate: kept.length > policy.maxRestarts }
}
