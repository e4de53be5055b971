/**
 * A supervised actor: a nact actor (`spawn`: `spawnStateless` ignores `onCrash`, docs/platform-facts.md)
 * whose crashes are handled by an Effect fiber. On a crash nact stops the actor; the fiber waits an
 * exponential back-off, spawns a new incarnation, and hands it the crashed message (one attempt
 * more) and whatever was still in the mailbox. nact has no back-off or restart limit of its own.
 */
import { Effect, Queue } from "effect"
import { dispatch, spawn, start, stop, type ActorSystemRef, type Ref } from "nact"
import * as Policy from "./Policy.ts"

export type Outcome =
  | { readonly _tag: "Done" }
  | { readonly _tag: "Failed"; readonly error: unknown; readonly attempts: number }

interface Attempt {
  readonly work: () => Promise<void>
  readonly attempt: number
  readonly settle: (outcome: Outcome) => void
}

interface Crash {
  readonly attempt: Attempt | undefined
  readonly error: unknown
  readonly mailbox: ReadonlyArray<Attempt>
}

/** The supervisor gave up: too many restarts within the policy's window. */
export class RestartLimitExceeded extends Error {
  override readonly name = "RestartLimitExceeded"
  readonly actor: string
  constructor(actor: string, restarts: number, windowMs: number) {
    super(`actor ${actor} crashed ${restarts} times within ${windowMs} ms; giving up`)
    this.actor = actor
  }
}

export interface Events {
  readonly onCrash?: (info: { readonly actor: string; readonly error: unknown; readonly attempt: number; readonly delayMs: number }) => void
  readonly onRestart?: (info: { readonly actor: string; readonly incarnation: number }) => void
}

export interface Supervised {
  readonly name: string
  /** Runs `work` in the actor; a throw crashes the actor and `work` is retried up to `maxAttempts`. */
  readonly submit: (work: () => Promise<void>) => Promise<Outcome>
  readonly restarts: () => number
  /** Its restart policy (`maxAttempts`: attempts of one message). */
  readonly policy: Policy.Policy
  /** Runs until the restart limit is exceeded (fails) or the fiber is interrupted. */
  readonly run: Effect.Effect<never, RestartLimitExceeded>
}

/** Non-retryable failures (`retryable === false`) settle at once instead of crashing the actor. */
const isPermanent = (error: unknown): boolean =>
  typeof error === "object" && error !== null && (error as { retryable?: unknown }).retryable === false

export const system = (): ActorSystemRef => start()

export const make = (parent: ActorSystemRef, name: string, policy: Policy.Policy = Policy.defaults, events: Events = {}): Supervised => {
  let actor: Ref<Attempt> | undefined
  let waiting: Array<Attempt> = []
  let restarts = 0
  let consecutive = 0
  let stopped = false

  const send = (attempt: Attempt) => {
    if (actor === undefined) waiting.push(attempt)
    else dispatch(actor, attempt)
  }

  const spawnIncarnation = (incarnation: number, queue: Queue.Queue<Crash>) =>
    spawn(
      parent,
      async (state: number, msg: Attempt) => {
        try {
          await msg.work()
        } catch (error) {
          if (!isPermanent(error)) throw error
          msg.settle({ _tag: "Failed", error, attempts: msg.attempt })
          return state + 1
        }
        consecutive = 0
        msg.settle({ _tag: "Done" })
        return state + 1
      },
      `${name}-${incarnation}`,
      {
        initialState: 0,
        onCrash: (msg, error, ctx) => {
          actor = undefined
          // nact's typings say Msg[], but the mailbox holds { message, sender } entries.
          const mailbox = (ctx.mailbox as unknown as ReadonlyArray<{ readonly message: Attempt }>).map((m) => m.message)
          Queue.offerUnsafe(queue, { attempt: msg, error, mailbox })
          return ctx.stop
        }
      }
    )

  const retry = (crash: Crash) => {
    const redo: Array<Attempt> = []
    if (crash.attempt !== undefined) {
      const a = crash.attempt
      if (a.attempt >= policy.maxAttempts) a.settle({ _tag: "Failed", error: crash.error, attempts: a.attempt })
      else redo.push({ ...a, attempt: a.attempt + 1 })
    }
    return [...redo, ...crash.mailbox]
  }

  const run = Effect.gen(function* () {
    const queue = yield* Queue.unbounded<Crash>()
    let history: ReadonlyArray<number> = []
    let incarnation = 0
    let pending: Array<Attempt> = []
    while (true) {
      const ref = spawnIncarnation(incarnation, queue)
      actor = ref
      for (const a of [...pending, ...waiting]) dispatch(ref, a)
      pending = []
      waiting = []
      const crash = yield* Queue.take(queue)
      consecutive++
      const decision = Policy.restart(policy, history, Date.now())
      history = decision.history
      if (decision.escalate) {
        const error = new RestartLimitExceeded(name, decision.history.length, policy.windowMs)
        for (const a of [...(crash.attempt === undefined ? [] : [crash.attempt]), ...crash.mailbox, ...waiting])
          a.settle({ _tag: "Failed", error, attempts: a.attempt })
        waiting = []
        return yield* Effect.fail(error)
      }
      const delay = Policy.delayMs(policy, consecutive)
      events.onCrash?.({ actor: name, error: crash.error, attempt: crash.attempt?.attempt ?? 0, delayMs: delay })
      pending = retry(crash)
      yield* Effect.sleep(delay)
      incarnation++
      restarts++
      events.onRestart?.({ actor: name, incarnation })
    }
  }).pipe(
    Effect.ensuring(
      Effect.sync(() => {
        stopped = true
        if (actor !== undefined) stop(actor)
        actor = undefined
      })
    )
  )

  const submit = (work: () => Promise<void>): Promise<Outcome> =>
    new Promise<Outcome>((resolve) => {
      if (stopped) resolve({ _tag: "Failed", error: new Error(`actor ${name} is stopped`), attempts: 0 })
      else send({ work, attempt: 1, settle: resolve })
    })

  return { name, submit, restarts: () => restarts, policy, run }
}
