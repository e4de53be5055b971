/**
 * A supervised actor: a nact actor (`spawn`: `spawnStateless` ignores `onCrash`, docs/platform-facts.md)
 * whose crashes are handled by an Effect fiber. On a crash nact stops the actor; the fiber waits an
 * exponential back-off, spawns a new incarnation, and hands it the crashed message (one attempt
 * more) ahead of whatever was still in the mailbox. nact has no back-off or restart limit of its own.
 *
 * The mailbox is ours, not nact's: nact costs a setImmediate, a context object (with a copy of its
 * children Map), a sender object, a mailbox entry and a promise per message it dispatches (~4% of
 * the bytes an order allocates). Messages queue here in arrival order; nact's actor is sent a
 * wake-up only when it is idle, and a wake-up runs the mailbox one message at a time until it is
 * empty, each message after the one before it has settled and a turn of the event loop (as nact's
 * setImmediate per message: I/O and timers run in between, and the messages of all actors that
 * start in one turn still share the store's group commit). One message at a time, in order, as before.
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
  /** The message that was running; undefined when the crash came from outside one. */
  readonly attempt: Attempt | undefined
  readonly error: unknown
}

/** What nact's actor is sent: "run what the mailbox holds". */
type Wake = typeof wake
const wake = { _tag: "Wake" } as const

/**
 * Runs `resume` in the next turn of the event loop (its check phase, where nact runs each message
 * it dispatches): every actor waiting for it resumes from one setImmediate.
 */
let ready: Array<() => void> = []
const tick = () => {
  const now = ready
  ready = []
  for (const resume of now) resume()
}
const nextTurn = (resume: () => void): void => {
  if (ready.length === 0) setImmediate(tick)
  ready.push(resume)
}

const done: Outcome = Object.freeze({ _tag: "Done" })

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
  /** Messages not yet run, in arrival order (a crashed message goes back to the front). */
  let mailbox: Array<Attempt> = []
  let actor: Ref<Wake> | undefined
  /** A wake-up is queued or running in `actor`: no other is sent. */
  let awake = false
  /** The message running now, the one a crash is about. */
  let current: Attempt | undefined
  let restarts = 0
  let consecutive = 0
  let stopped = false

  const send = (attempt: Attempt) => {
    mailbox.push(attempt)
    if (actor !== undefined && !awake) {
      awake = true
      dispatch(actor, wake)
    }
  }

  const spawnIncarnation = (incarnation: number, queue: Queue.Queue<Crash>) =>
    spawn(
      parent,
      // A wake-up: runs the mailbox's messages one at a time, each after the one before it has
      // settled and a turn of the event loop, until it is empty; a crash rejects, with `current` set.
      (state: number) =>
        new Promise<number>((finish, crash) => {
          let n = 0
          const next = (): void => {
            const msg = stopped ? undefined : mailbox.shift()
            if (msg === undefined) return end()
            n++
            current = msg
            try {
              msg.work().then(succeeded, failed)
            } catch (error) {
              failed(error)
            }
          }
          const succeeded = (): void => {
            const msg = current!
            current = undefined
            consecutive = 0
            msg.settle(done)
            after()
          }
          const failed = (error: unknown): void => {
            if (!isPermanent(error)) return crash(error) // `current` stays: the crash is about it
            const msg = current!
            current = undefined
            msg.settle({ _tag: "Failed", error, attempts: msg.attempt })
            after()
          }
          const after = (): void => {
            if (stopped || mailbox.length === 0) end()
            else nextTurn(next)
          }
          const end = (): void => {
            awake = false
            finish(state + n)
          }
          next()
        }),
      `${name}-${incarnation}`,
      {
        initialState: 0,
        onCrash: (_msg, error, ctx) => {
          actor = undefined
          awake = false
          Queue.offerUnsafe(queue, { attempt: current, error })
          current = undefined
          return ctx.stop
        }
      }
    )

  const run = Effect.gen(function* () {
    const queue = yield* Queue.unbounded<Crash>()
    let history: ReadonlyArray<number> = []
    let incarnation = 0
    while (true) {
      const ref = spawnIncarnation(incarnation, queue)
      actor = ref
      if (mailbox.length > 0) {
        awake = true
        dispatch(ref, wake)
      }
      const crash = yield* Queue.take(queue)
      consecutive++
      const decision = Policy.restart(policy, history, Date.now())
      history = decision.history
      if (decision.escalate) {
        const error = new RestartLimitExceeded(name, decision.history.length, policy.windowMs)
        const left = mailbox
        mailbox = []
        for (const a of [...(crash.attempt === undefined ? [] : [crash.attempt]), ...left]) a.settle({ _tag: "Failed", error, attempts: a.attempt })
        return yield* Effect.fail(error)
      }
      const delay = Policy.delayMs(policy, consecutive)
      events.onCrash?.({ actor: name, error: crash.error, attempt: crash.attempt?.attempt ?? 0, delayMs: delay })
      const a = crash.attempt
      if (a !== undefined) {
        if (a.attempt >= policy.maxAttempts) a.settle({ _tag: "Failed", error: crash.error, attempts: a.attempt })
        else mailbox.unshift({ ...a, attempt: a.attempt + 1 })
      }
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
