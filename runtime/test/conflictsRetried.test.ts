/**
 * `conflictsRetried` (a transaction run again after a lost conflict or an outage) against the
 * async loop it replaced, for all sequences of runs: the same outcome (value or error), after the
 * same number of runs, a synchronous throw of a run included.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest"
import fc from "fast-check"
import { SqlError } from "effect/sql"
import * as Decision from "../src/Decision.ts"
import { conflictsRetried, notPendingSkipped, skippedOrRetried } from "../src/Consumer.ts"

const sqlError = (reason: SqlError.SqlError["reason"]) => new SqlError.SqlError({ reason })
const props = (message: string) => ({ cause: new Error(message), message, operation: "execute" })

/** The loop as it was: an async function around every run. */
const reference = async <A>(run: () => Promise<A>, tries: number): Promise<A> => {
  for (let i = 1, down = 0; ; i++) {
    try {
      return await run()
    } catch (error) {
      if (!Decision.retriedInPlace(error, i, tries)) throw error
      const wait = Decision.classify(error) === "unavailable" ? Math.min(2_000, 50 * 2 ** Math.min(++down, 6)) : 5 + Math.random() * 20 * i
      await new Promise((r) => setTimeout(r, wait))
    }
  }
}

type Step = { readonly kind: "ok" | "conflict" | "outage" | "data" | "other" | "not-pending"; readonly sync: boolean }
const errorOf = (kind: Step["kind"], n: number): unknown =>
  kind === "conflict"
    ? sqlError(new SqlError.DeadlockError(props(`deadlock ${n}`)))
    : kind === "outage"
      ? sqlError(new SqlError.ConnectionError(props(`connection lost ${n}`)))
      : kind === "data"
        ? sqlError(new SqlError.UniqueViolation({ ...props(`duplicate ${n}`), constraint: "pk" }))
        : kind === "not-pending"
          ? // What \`Inbox.settleFirst\` fails a PostgreSQL transaction with (SQLSTATE BTN01).
            sqlError(new SqlError.UnknownError({ ...props(`not pending ${n}`), cause: Object.assign(new Error(`not pending ${n}`), { code: "BTN01" }) }))
          : new Error(`other ${n}`)

/**
 * What `retry` makes of the runs `steps` describe: its value or error, and how many runs it took.
 * Past the sequence, the run succeeds (an outage is retried for as long as it lasts).
 */
const outcome = async (steps: ReadonlyArray<Step>, tries: number, retry: (run: () => Promise<number>, tries: number) => Promise<number | undefined>) => {
  let runs = 0
  const run = (): Promise<number> => {
    const n = runs++
    const s = steps[n]
    if (s === undefined || s.kind === "ok") return Promise.resolve(n)
    const error = errorOf(s.kind, n)
    if (s.sync) throw error
    return Promise.reject(error)
  }
  const settled = retry(run, tries).then(
    (value) => ({ value }),
    (error: unknown) => ({ error: String(error) })
  )
  await vi.runAllTimersAsync()
  return { ...(await settled), runs }
}

const steps = (...kinds: ReadonlyArray<Step["kind"]>) => fc.array(fc.record({ kind: fc.constantFrom(...kinds), sync: fc.boolean() }), { minLength: 1, maxLength: 8 })

describe("conflictsRetried", () => {
  beforeEach(() => void vi.useFakeTimers())
  afterEach(() => void vi.useRealTimers())

  it("for all sequences of runs (values, conflicts, outages, other failures; thrown at once or rejected): the outcome and the runs of the loop it replaced", async () => {
    await fc.assert(
      fc.asyncProperty(steps("ok", "conflict", "outage", "data", "other"), fc.integer({ min: 1, max: 5 }), async (steps, tries) => {
        expect(await outcome(steps, tries, conflictsRetried)).toEqual(await outcome(steps, tries, reference))
      }),
      { numRuns: 300 }
    )
  })

  it("skips a message no longer pending as the two it folds into one did, for all sequences of runs: the same outcome and runs", async () => {
    await fc.assert(
      fc.asyncProperty(steps("ok", "conflict", "outage", "data", "other", "not-pending"), fc.integer({ min: 1, max: 5 }), async (steps, tries) => {
        const folded = await outcome(steps, tries, skippedOrRetried)
        expect(folded).toEqual(await outcome(steps, tries, (run, tries) => conflictsRetried(() => notPendingSkipped(run()), tries)))
        if (steps[0]?.kind === "not-pending" && !steps[0].sync) expect(folded).toEqual({ value: undefined, runs: 1 })
      }),
      { numRuns: 500 }
    )
  })
})
