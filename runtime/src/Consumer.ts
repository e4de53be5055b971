/**
 * Hosts one processor. Its broker session (an external broker) hands over the messages that
 * arrived together at once (`handlerAll`): they are committed to the processor's durable inbox in
 * one transaction and only then acknowledged, so the broker's acknowledgements never wait for a
 * handler. From the inbox,
 * messages go to a pool of supervised actors partitioned by key: order holds per key, while a slow
 * message stalls only its own partition. An actor applies the handler's effects, marks the inbox
 * entry done and writes the announced events to the outbox in one transaction.
 */
import { Cause, Effect, Result } from "effect"
import { Envelope, Log, Rejected, Topics, type Message, type Processor, type Sensitive } from "@baton/core"
import { Supervisor } from "@baton/actors"
import { blamed, Inbox, isUnavailable, ownLaneOf, tagged, taggedBy, type Outbox, type Sql, type SqlGen, type Store } from "@baton/store"
import * as Crash from "./Crash.ts"
import * as Decision from "./Decision.ts"
import { untraced, type Hop, type ProcessorMetrics, type Tracing } from "./Observability.ts"
import type { ErrorPath } from "./ErrorPath.ts"
import type { Attempt, Parking } from "./Parking.ts"
import { chainOf, drain as drainChain, type Chain, type Chained, type Router } from "./Router.ts"

/** Topic of a consumed type: initiating events arrive validated on `accepted/`, the rest on `events/`. */
export const topicOf = (initiating: ReadonlySet<string>) => (type: string): string =>
  initiating.has(type) ? Topics.accepted(type) : Topics.event(type)

export const partitionOf = Inbox.partitionOf

/** Runs of a transaction that lost a conflict before the conflict counts as a failed attempt. */
const conflictTries = 20

/**
 * Runs a transaction again when it lost a conflict with another transaction (PostgreSQL: deadlock,
 * lock timeout, serialization failure), and for as long as the database is out of reach (a
 * connection lost mid-transaction, the server restarting: the transaction was rolled back). Neither
 * is the message's fault, so neither uses up an attempt; the store logs the outage once.
 */
export const conflictsRetried = <A>(run: () => Promise<A>, tries = conflictTries): Promise<A> => {
  // The first run without an async function around it (its promise, its suspension): one per
  // transaction of every message. A failure goes on in `retried`.
  try {
    return run().catch((error: unknown) => retried(run, tries, error))
  } catch (error) {
    return retried(run, tries, error)
  }
}

/** `conflictsRetried` from the first run's failure (`error`) on. */
const retried = async <A>(run: () => Promise<A>, tries: number, error: unknown): Promise<A> => {
  for (let i = 1, down = 0; ; i++) {
    if (!Decision.retriedInPlace(error, i, tries)) throw error
    const wait = Decision.classify(error) === "unavailable" ? Math.min(2_000, 50 * 2 ** Math.min(++down, 6)) : 5 + Math.random() * 20 * i
    await new Promise((r) => setTimeout(r, wait))
    try {
      return await run()
    } catch (next) {
      error = next
    }
  }
}

/**
 * On PostgreSQL `settleFirst` finds a message no longer pending (or no longer this instance's)
 * only when the handler has run: its transaction fails instead, and the message is skipped.
 */
export const notPendingSkipped = <A>(run: Promise<A>): Promise<A | undefined> => run.catch((error: unknown) => (Inbox.isNotPending(error) ? undefined : Promise.reject(error)))

/**
 * `conflictsRetried(() => notPendingSkipped(run()))` with one handler on the first run's promise
 * (not two, a promise each: on every message's transaction).
 */
export const skippedOrRetried = <A>(run: () => Promise<A>, tries = conflictTries): Promise<A | undefined> => {
  const again = () => notPendingSkipped(run())
  const failed = (error: unknown): Promise<A | undefined> | undefined => (Inbox.isNotPending(error) ? undefined : retried(again, tries, error))
  try {
    return run().catch(failed)
  } catch (error) {
    return retried(again, tries, error)
  }
}

/** The attributes of a span nobody records (untraced): one object for all. */
const noAttributes: Readonly<Record<string, string>> = Object.freeze({})
/** `runHere`'s `failed` when a failure leaves the caller's transaction as it was (`inline` without `claimed`, in a savepoint). */
const failedUndefined = (): Sql<undefined> => Effect.undefined
/** `announce` of no events (a fresh array each run: its callers may add to it). */
const announcedNothing: Sql<Array<() => void>> = Effect.sync((): Array<() => void> => [])

type Handled = "done" | "parked" | "skipped"
/** A message scheduled and not yet run (for a run of its key): with its partition's tenure then, in a cluster. */
type Waiting = { readonly event: Envelope.Envelope; readonly payload: Buffer | string; readonly tenure: number | undefined }

const handled: Record<Handled, Decision.Outcome> = { done: { _tag: "Committed" }, parked: { _tag: "Parked" }, skipped: { _tag: "Skipped" } }

/** What a message run for its caller (`Consumer.call`) gave back: its answers, and what to run once the caller's transaction committed. */
export interface Called {
  readonly answers: ReadonlyArray<Envelope.Next>
  /** The span of its handling, which its answers go out under. */
  readonly traceparent: string
  readonly committed: () => void
}

export interface Consumer {
  /** Takes a message from a broker session: commits it to the inbox, then runs it. */
  readonly handler: (message: Message) => Promise<void>
  /** `handler` for messages that arrived together: one transaction for them all (`Broker.subscribe`'s `batch`). */
  readonly handlerAll: (messages: ReadonlyArray<Message>) => Promise<void>
  /**
   * Runs a message already committed to this processor's inbox (in-process routing). `encoded`:
   * the payload is `Envelope.encode(event)` (Router's deliveries) or `event` was parsed from it, so
   * what the inbox keeps of it is masked from the event itself (`Sensitive.Masker.kept`), not from
   * its text parsed again.
   */
  readonly schedule: (event: Envelope.Envelope, topic: string, payload: string, encoded?: boolean) => Promise<void>
  /** Schedules what the inbox still holds from before a restart (in the given cluster partitions only). */
  readonly recover: (parts?: ReadonlyArray<number>) => Promise<number>
  /**
   * A request (an event with `replyTo`) run inside the transaction that just wrote it to the inbox
   * (the ingress's, see Router's `Local.inline`); undefined when it cannot run so.
   */
  readonly inline: (event: Envelope.Envelope, topic: string, payload: string, rolledBack?: Array<(cause: unknown) => void>) => Sql<(() => void) | undefined, Decision.RunElsewhere> | undefined
  /**
   * `inline` for a caller that consumes the answer itself (a domain mediator's command, see
   * Mediator's `Call`): the message runs inside the caller's transaction, its inbox row written
   * done, and what it addresses to its `replyTo` is given back instead of delivered. Undefined
   * when it cannot run so (asked before anything is written). As for `inline` and `chain`, the
   * payload is `Envelope.encode(event)`.
   */
  readonly call: ((event: Envelope.Envelope, topic: string, payload: string) => Sql<Called | undefined, Decision.RunElsewhere> | undefined) | undefined
  /**
   * An event another handler announced, run inside that handler's transaction (Router's
   * `Local.chain`): its inbox row written done with its effects, its own announced events run so
   * in their turn (see Router's `Chain`). Undefined when it cannot run so.
   */
  readonly chain: ((event: Envelope.Envelope, topic: string, payload: string, at: Chained) => Sql<(() => void) | undefined, Decision.RunElsewhere> | undefined) | undefined
  /**
   * Whether `chain` may run a message of the key now (PostgreSQL: while this instance owns the
   * key's partition, not being acquired, see `chainable`); absent, whenever it is there.
   */
  readonly chaining: ((key: string) => boolean) | undefined
  /**
   * Resolves once nothing is in flight: no message scheduled and unfinished, no read of the inbox's
   * backlog under way, no batch of the broker session being committed to the inbox (`handlerAll`).
   * Then every message this consumer was handed is done, failed for good, or parked, but for one
   * whose recording failed (it stays pending, logged) and, while it is held up, what its actors
   * have not finished. It does not cover what is still on its way to it: an external broker's
   * messages on the wire or in its session's queue, nor (alone) a message in another part of the
   * runtime that will be routed here: `Runtime.idle` waits for those parts too.
   */
  readonly idle: () => Promise<void>
  /** Whether `idle` would wait now. */
  readonly busy: () => boolean
  /** Messages scheduled and not finished (at most `maxScheduled`, but for a parked message's turn). */
  readonly inFlight: () => number
  /** Whether messages wait in the inbox for room (back-pressure). */
  readonly backlogged: () => boolean
}

export const make = (deps: {
  readonly processor: Processor
  readonly actors: ReadonlyArray<Supervisor.Supervised>
  readonly store: Store
  readonly inbox: Inbox.Inbox
  readonly outbox: Outbox.Outbox
  readonly reject: ErrorPath
  readonly poke: () => void
  /**
   * The relay's `offer` (Relay.ts): given the outbox entries a handler's transaction wrote, right
   * after its commit, in place of `poke`. Absent (a cluster, whose instances share the outbox): `poke`.
   */
  readonly offer?: (entries: ReadonlyArray<Outbox.Entry>) => void
  /** Routes announced events to local consumers in the same transaction. */
  readonly router: Router
  /** Public topics too (embedded broker); otherwise only internal ones, the rest go over the broker. */
  readonly routePublic: boolean
  /**
   * The embedded broker's audience: an announced event no subscriber would get (`wanted`: none
   * connected, no persistent session's filter) is not written to the outbox, nor published; after
   * the commit it is only shown to the flows' tap (`unsent`), as if published to nobody. Replies
   * always go out (a reply nobody gets is logged). Absent: every public event goes to the outbox.
   */
  readonly audience?: { readonly wanted: (topic: string) => boolean; readonly unsent: (topic: string, payload: string) => void }
  /** For processors with `onFailure: "park"`: held keys and parked messages. */
  readonly parking?: Parking | undefined
  readonly logger: Log.Logger
  /**
   * Masks what the inbox keeps of a processed message until it is pruned, when it has a sensitive
   * field (an initiating event's card, a workflow's input): the field and every card number in it.
   * A message without one is kept as it is (masking all costs ~11 us a message); a failed message
   * is kept whole, for its resubmission.
   */
  readonly mask?: Sensitive.Masker
  readonly clock?: Envelope.Clock
  /** This processor's counters and latency histogram (in memory only). */
  readonly metrics?: ProcessorMetrics
  /** A span per handling attempt, parented by the event's `traceparent`. */
  readonly tracing?: Tracing
  /** Messages of this processor in memory at most (mailboxes and running); past it they wait in the inbox. Default 1000. */
  readonly maxScheduled?: number
  /**
   * Whether this instance owns a key's partition (else its owner runs the message), and, inside a
   * transaction, whether it still does (in a cluster: locks the partition's row; see Cluster.ts).
   * The runtime gives its ownership (layers/Ownership.ts: alone, always); absent, the same.
   */
  readonly cluster?: {
    readonly owns: (key: string) => boolean
    readonly holds: (key: string) => Sql<boolean>
    /**
     * PostgreSQL: whether chains run here (`chain`): into a key whose partition this instance
     * owns (`chainable`, asked at each run), fenced on its tenure; absent, never.
     */
    readonly chains?: boolean
    /** In a cluster: this instance's tenure of the key's partition (Cluster.ts `tenure`); a message scheduled in an earlier one is skipped. */
    readonly tenure?: (key: string) => number
    /**
     * In a cluster: whether the key's partition was just acquired and its pending messages are
     * still to be scheduled (Cluster.ts `acquiring`): an arrival of it waits in the inbox.
     */
    readonly acquiring?: (key: string) => boolean
  }
}): Consumer => {
  const { processor, store, inbox, outbox } = deps
  const clock = deps.clock ?? Envelope.systemClock
  /**
   * What the inbox keeps of a processed message's payload (`mask`'s text, undefined: the payload as
   * it is). `encodes`: the event whose `Envelope.encode` the payload is (the router's deliveries, an
   * `inline`, `chain` or `call`) or that was parsed from it (a backlog's page), masked as it is in
   * memory (not parsed again from the text).
   */
  const kept = (payload: Buffer | string, encodes?: Envelope.Envelope): string | undefined =>
    deps.mask?.kept(typeof payload === "string" ? encodes : undefined, typeof payload === "string" ? payload : payload.toString("utf8"))
  const inFlight = new Set<Promise<void>>()
  const tracing = deps.tracing ?? untraced
  const metrics = deps.metrics
  const debug = Log.enabled(deps.logger, "debug")
  const parking = processor.onFailure === "park" ? deps.parking : undefined
  if (processor.onFailure === "park" && parking === undefined) throw new Error(`${processor.name} parks failed keys, but no parking is configured`)
  const policy: Decision.Policy = { maxAttempts: deps.actors[0]?.policy.maxAttempts ?? 1, conflictTries, onFailure: processor.onFailure ?? "error-path" }
  /** Each failed attempt of a message, for the hand-off to the workflow processor. */
  const attempts = new Map<string, Array<Attempt>>()
  /** The decision on a message's last failed attempt, until the supervisor settles it. */
  const decided = new Map<string, Decision.Decision>()
  /** Runs of one key's waiting messages in one transaction (see `Processor.batch`); not with parking or replies. */
  const batch = parking === undefined && processor.reply === undefined ? processor.batch : undefined
  /** Whether a message can run in its sender's transaction (`runHere`): on a single SQLite instance. */
  const runsHere = store.dialect === "sqlite" && processor.prepare === undefined && parking === undefined && batch === undefined && !inbox.guarded
  /**
   * Whether `chain` runs here on PostgreSQL: into keys this instance owns (checked at each run,
   * `openHere`, `chainable`); for a processor with lock keys, only on keys whose advisory locks
   * the chain's root's group holds already (`chain`: none taken in the middle of another
   * processor's transaction, out of the one order of every group).
   */
  const chainsHere = store.dialect === "pg" && processor.prepare === undefined && parking === undefined && batch === undefined && deps.cluster?.chains === true
  /** Whether this processor's messages may root chains on PostgreSQL (`chainsEnded`). */
  const rootsChains = store.dialect === "pg" && deps.cluster?.chains === true
  /** Per key, its messages scheduled and not yet run, in order: what a run can take. */
  const waiting = new Map<string, Array<Waiting>>()
  /** Messages applied in an earlier message's run: their own turn finds them done. */
  const applied = new Set<string>()

  /** False when a cluster partition moved to another instance meanwhile: the message is its now. */
  const holds = (key: string): Sql<boolean> => (deps.cluster === undefined ? Effect.succeed(true) : deps.cluster.holds(key))

  /** Parks a message of a held key (or behind older parked ones); undefined when it need not wait. */
  const park = (event: Envelope.Envelope, p: Parking): Sql<Array<() => void> | undefined> =>
    Effect.flatMap(p.park(processor.name, event, holds(event.key)), (out) => (out === undefined ? Effect.succeed(undefined) : announce(event, out)))

  /** Inside the transaction that finished a message of `key`: release a resolved key, unpark the next. */
  const drain = Effect.fnUntraced(function* (event: Envelope.Envelope, p: Parking): SqlGen<Array<() => void>> {
    const out = yield* announce(event, yield* p.release(processor.name, event))
    const next = yield* p.next(processor.name, event.key)
    if (next !== undefined) out.push(() => void submit(JSON.parse(next.payload) as Envelope.Envelope, next.topic, next.payload))
    return out
  })

  /**
   * Inside a message's transaction, once it is marked done: the handler's effects, its announced
   * events and reply, the next parked message. The deliveries to run after the commit. (Plain
   * `flatMap`s: a generator per message costs ~0.4 us a step more, on every hop of every message.)
   * `at`: where it stands in a chain (Consumer's `chain`); absent, it is the root of one, whose
   * events' local deliveries take their turns once it is done (breadth first, see Router's `Chain`).
   */
  const handleIn = (
    event: Envelope.Envelope,
    prepared: unknown,
    traceparent: string | undefined,
    at?: Chained,
    root?: Chain
  ): Sql<Array<() => void>, unknown> => {
    if (at !== undefined) return handledIn(event, prepared, traceparent, at)
    const chain = root ?? chainOf(event.id)
    const rolledBack = (cause: Cause.Cause<unknown>) =>
      Effect.sync(() => {
        for (const end of chain.rolledBack.splice(0)) end(cause)
      })
    const handled = Effect.flatMap(handledIn(event, prepared, traceparent, { chain, depth: 0 }), (deliveries) => {
      if (chain.turns.length === 0) return Effect.succeed(deliveries)
      const drained = drainChain(chain, deliveries)
      return Effect.tapCause(chain.ended === undefined ? drained : answered(chain, drained), rolledBack)
    })
    // PostgreSQL: its statements are the chain's (`chainFailed`), the root's first.
    return chain.ended === undefined ? handled : tagged(chain, handled)
  }
  /**
   * PostgreSQL: a chain's turns. When a run began, a failure from there on is the chain's (unless
   * it is another item's write, failing a statement of this one in a group): each consumer that
   * began a run refuses the root once, and the root's transaction fails as a lost conflict (it
   * runs again at once, those events queued). Its writes held back when it ends go out with a
   * later statement (`receiveDoneFirst`): one that fails fails the transaction there, the COMMIT
   * or the item's RELEASE at the latest, tagged with the chain (`tagged`), and `chainFailed` tells
   * it from there (nothing waits for them here: a round trip a chain saved).
   */
  const answered = (chain: Chain, drained: Sql<Array<() => void>, Decision.RunElsewhere>): Sql<Array<() => void>, unknown> =>
    Effect.catchCause(drained, (cause) => {
      const error = Cause.squash(cause)
      if (chain.begun.length === 0 || !ofChain(chain, error)) return Effect.failCause(cause)
      for (const refuse of chain.begun.splice(0)) refuse()
      return Effect.fail(new Decision.RunElsewhere(processor.name, chain.root, error))
    })
  /** Whether `error` is the chain's: a statement's tagged with it, or not a statement's of another item of the group (a handler's own failure). */
  const ofChain = (chain: Chain, error: unknown): boolean => {
    if (isUnavailable(error)) return false
    const tag = taggedBy(error)
    return tag === undefined ? blamed(error) === undefined : tag === chain
  }
  /**
   * A root's transaction failed after its chain's turns were done (`answered`): at the COMMIT, the
   * item's RELEASE, or a later item's statement of its group, of a write held back. The chain's
   * failure when that write was one of its own (`ofChain`) and a run began: as in `answered`.
   * The spans of its runs end, rolled back.
   */
  const chainFailed = (chain: Chain, error: unknown): unknown => {
    for (const end of chain.rolledBack.splice(0)) end(error)
    // A lost connection is the store's, whatever statement it failed first (maybe a chained write held back): retried as unavailable.
    if (chain.begun.length === 0 || taggedBy(error) !== chain || isUnavailable(error)) return error
    for (const refuse of chain.begun.splice(0)) refuse()
    return new Decision.RunElsewhere(processor.name, chain.root, error)
  }
  const handledIn = (event: Envelope.Envelope, prepared: unknown, traceparent: string | undefined, at: Chained): Sql<Array<() => void>, unknown> =>
    Effect.flatMap(processor.handle(event, prepared), (announced) => {
      const announcedIn = announce(event, announced, traceparent, at)
      const replied =
        event.replyTo === undefined
          ? announcedIn
          : Effect.flatMap(announcedIn, (local) => Effect.map(reply(event, "reply", () => processor.reply?.(event, announced), traceparent), (answered) => (answered === undefined ? local : [...local, answered])))
      return parking === undefined ? replied : Effect.flatMap(replied, (local) => Effect.map(drain(event, parking), (drained) => [...local, ...drained]))
    })

  /** A message's span (its handling: an attempt, or its part of a run). */
  const begin = (event: Envelope.Envelope): Hop =>
    tracing.begin(processor.name, event.traceparent, tracing.enabled ? { "baton.processor": processor.name, "baton.event.type": event.type, "baton.event.id": event.id, "baton.correlation_id": event.correlationId, "baton.causation_id": event.causationId, "baton.key": event.key } : noAttributes)

  /**
   * After a message's (or a run's) commit: its deliveries (the relay's poke among them when it
   * wrote to the outbox, see `announce`), then the processor's `committed` (a throw is logged).
   * Without a `committed` (most processors), nothing to wait for: no promise, no turn.
   */
  const afterCommit = (event: Envelope.Envelope, deliveries: ReadonlyArray<() => void>, committed: (() => Promise<void> | void) | undefined): Promise<void> | undefined => {
    for (const deliver of deliveries) deliver()
    return committed === undefined ? undefined : committedLogged(event, committed)
  }
  const committedLogged = async (event: Envelope.Envelope, committed: () => Promise<void> | void): Promise<void> => {
    try {
      await committed()
    } catch (error) {
      deps.logger.log("warn", "after-commit step failed", { processor: processor.name, envelope: event.id, reason: Log.reason(error), ...Envelope.logFields(event) })
    }
  }

  /** The tag of a root's own settle (`doneAndHandled`): no chain's. */
  const rootsOwn = {}
  /**
   * Inside a message's transaction: marks it done, then its handler's effects (`handleIn`); the
   * deliveries, or undefined when it ran nothing. Marked done first: the one statement finds it
   * still pending and (in a cluster, through the inbox's guard) its partition still ours, locking
   * both until the commit; when it finds neither, nothing commits (on SQLite nothing runs; on
   * PostgreSQL the statement goes out with the handler's first one and fails the transaction: skipped).
   */
  const doneAndHandled = (
    event: Envelope.Envelope,
    payload: Buffer | string,
    encoded: boolean,
    prepared: unknown,
    hop: Hop,
    ended?: Array<() => void>,
    keys?: ReadonlyArray<string>,
    tenure?: number
  ): Sql<Array<() => void> | undefined, unknown> => {
    // PostgreSQL with chains: its settle tagged as the root's own (`rootsOwn`), not its chain's, wherever its failure surfaces (`ofChain`).
    const settle = inbox.settleFirst(processor.name, event.id, "done", kept(payload, encoded ? event : undefined), tenure)
    const settled = Effect.flatMap(ended === undefined ? settle : tagged(rootsOwn, settle), (pending) => (pending ? handleIn(event, prepared, hop.traceparent, undefined, rooted(event, ended, keys)) : Effect.undefined))
    return inbox.guarded ? settled : Effect.flatMap(holds(event.key), (ours) => (ours ? settled : Effect.undefined))
  }

  /**
   * `doneAndHandled` for a message received in this transaction (`inline`): its inbox row written
   * done at once (never pending), then its effects; undefined when it was already there (a
   * redelivery, nothing runs) or its key is not this instance's (under the inbox's guard, checked
   * and locked by the write itself).
   */
  const receivedAndHandled = (event: Envelope.Envelope, topic: string, payload: string, hop: Hop, at?: Chained, fence?: number): Sql<Array<() => void> | undefined, unknown> => {
    const entry = { envelopeId: event.id, topic, key: event.key, payload }
    // PostgreSQL (a chained run): written done first, the transaction failing when it cannot be
    // (in a cluster, too, when the key's partition is no longer under the tenure `fence`, as a done mark's).
    const first = inbox.receiveDoneFirst
    if (first !== undefined) return Effect.andThen(first(processor.name, entry, kept(payload, event), fence), handleIn(event, undefined, hop.traceparent, at))
    const received = Effect.flatMap(inbox.receiveDone(processor.name, entry, kept(payload, event)), (fresh) => (fresh ? handleIn(event, undefined, hop.traceparent, at) : Effect.undefined))
    return inbox.guarded ? received : Effect.flatMap(holds(event.key), (ours) => (ours ? received : Effect.undefined))
  }

  /**
   * SQLite (`runsHere`): the first statement of a run in its sender's transaction (`runHere`'s
   * `claim`), for `chain` and `call`: the message's inbox row written done when this processor has
   * no other pending message (`Inbox.receiveDoneAlone`: one statement where `othersPending` and
   * `receiveDone` were two); false when one is pending, the row is already here or (a cluster)
   * the key is not this instance's: nothing of it runs.
   */
  const claimed = (event: Envelope.Envelope, topic: string, payload: string): (() => Sql<boolean>) | undefined => {
    const alone = inbox.receiveDoneAlone
    if (alone === undefined) return undefined
    return () => {
      const written = alone(processor.name, { envelopeId: event.id, topic, key: event.key, payload }, kept(payload, event))
      return deps.cluster === undefined ? written : Effect.flatMap(holds(event.key), (ours) => (ours ? written : Effect.succeed(false)))
    }
  }

  /**
   * One attempt at a message (the `n`th, the first is 1), in its span: what became of it
   * (`skipped`: not this instance's, or no longer pending). Throws what failed it, marked
   * `retryable: false` when the decision gives up at once. (One async function: its frame and
   * promise are per message.) `tenure`: in a cluster, its partition's when it was scheduled (`submit`),
   * which its done mark is fenced on.
   */
  const apply = async (event: Envelope.Envelope, payload: Buffer | string, n: number, encoded: boolean, tenure?: number): Promise<Handled> => {
    if (deps.cluster?.owns(event.key) === false) return "skipped"
    // A message no longer pending (a redelivery raced its first run) is skipped by the transaction's
    // first statement (see below); a read beforehand is needed only where work runs before it.
    if (((processor.prepare !== undefined && processor.prepareReadsOnly !== true) || parking !== undefined) && (await conflictsRetried(() => store.run(inbox.status(processor.name, event.id)))) !== "pending") return "skipped"
    const hop = begin(event)
    const started = performance.now()
    let result: Handled = "parked"
    try {
      if (parking === undefined || !(await parked(event, parking))) {
        let deliveries: Array<() => void> | undefined
        let prepared: unknown
        try {
          const prepare = processor.prepare
          prepared = prepare === undefined ? undefined : await conflictsRetried(() => Effect.runPromise(prepare(event)))
          Crash.point("handler", processor.name)
          // A run of this key chained in another transaction still open (PostgreSQL): after it.
          for (let open = opened.get(event.key); open !== undefined; open = opened.get(event.key)) await open.ended
          // The shared rows it locks (Processor.lockKeys): several of its messages in a group,
          // whose advisory locks on them its chain may run processors on (`chain`): not for a
          // processor that says `ownRows`, whose messages run side by side in their group (two of
          // one key's would each read a chained run's rows before the other's write).
          const keys = processor.lockKeys?.(event)
          const chainKeys = processor.ownRows === true || !rootsChains ? undefined : keys
          deliveries = await skippedOrRetried(() =>
            chainsEnded((ended) =>
              store.group(
                // Built when it runs (a group may run it again, in a savepoint): its timestamps, ids and
                // deliveries are those of the run that commits.
                Effect.suspend(() => doneAndHandled(event, payload, encoded, prepared, hop, ended, chainKeys, tenure)),
                // A processor that locks only its message's own rows: a lane per message, so a group
                // holds several of its messages (a mailer's two an order on PostgreSQL).
                processor.ownRows === true ? ownLaneOf(processor.name, event.id) : processor.name,
                keys
              )
            )
          )
        } catch (error) {
          throw failedAttempt(event, error, n)
        }
        attempts.delete(event.id)
        // The partition moved to another instance meanwhile: the message is its now.
        if (deliveries === undefined) result = "skipped"
        else {
          Crash.point("processed-committed", processor.name)
          const after = afterCommit(event, deliveries, processor.committed === undefined ? undefined : () => processor.committed?.(event, prepared))
          if (after !== undefined) await after
          result = "done"
        }
      }
    } catch (error) {
      hop.end(error)
      metrics?.latency((performance.now() - started) / 1000)
      deps.logger.log("warn", "handling attempt failed", { processor: processor.name, id: event.id, type: event.type, reason: Log.reason(error), correlationId: event.correlationId, traceId: hop.traceId })
      throw error
    }
    hop.end()
    metrics?.latency((performance.now() - started) / 1000)
    if (debug) deps.logger.log("debug", "message handled", { processor: processor.name, id: event.id, type: event.type, outcome: result, ms: Math.round((performance.now() - started) * 10) / 10, correlationId: event.correlationId, traceId: hop.traceId })
    return result
  }

  /** A processor that parks: whether the message was parked (behind its held key) instead of run. */
  const parked = async (event: Envelope.Envelope, p: Parking): Promise<boolean> => {
    const out = await conflictsRetried(() => store.transaction(park(event, p)))
    if (out === undefined) return false
    for (const deliver of out) deliver()
    deps.poke()
    return true
  }

  /**
   * An attempt's transaction (or its `prepare`) failed, its runs in place over (conflictsRetried):
   * records the failure and the decision on it; what to throw (marked `retryable: false` when the
   * decision gives up at once).
   */
  const failedAttempt = (event: Envelope.Envelope, error: unknown, n: number): unknown => {
    if (parking !== undefined) {
      const history = attempts.get(event.id) ?? []
      attempts.set(event.id, [...history, { attempt: history.length + 1, error: Log.reason(error), at: clock.now().toISOString() }])
    }
    const decision = Decision.decide({ _tag: "Failed", failure: Decision.classify(error), tries: Infinity }, n, policy)
    decided.set(event.id, decision)
    // A retryable failure crashes the actor, whose supervisor runs the message again or, past its
    // attempts, settles it failed; one marked not retryable settles at once.
    if ((decision._tag === "Park" || decision._tag === "Reject") && !decision.exhausted && !Decision.isPermanent(error)) return Object.assign(new Error(`data error: ${Log.reason(error)}`), { retryable: false })
    return error
  }

  /** The waiting messages of `event`'s key from it on (at most the batch's `max`); it alone when it is not the first. */
  const runOf = (event: Envelope.Envelope, max: number) => {
    const queue = waiting.get(event.key) ?? []
    return queue[0]?.event.id === event.id ? queue.slice(0, max) : []
  }
  const unwait = (key: string, ids: ReadonlySet<string>) => {
    const queue = waiting.get(key)?.filter((w) => !ids.has(w.event.id))
    if (queue === undefined || queue.length === 0) waiting.delete(key)
    else waiting.set(key, queue)
  }
  /** Takes one submission's entry out of its key's line (not another entry of the same message). */
  const unwaitEntry = (key: string, entry: Waiting) => {
    const queue = waiting.get(key)
    if (queue === undefined) return
    const i = queue.indexOf(entry)
    if (i < 0) return
    if (queue.length === 1) waiting.delete(key)
    else queue.splice(i, 1)
  }
  const notRun = new Error("the run did not apply")

  /** A run's transaction (`applyRun`): its messages marked done, then handled, their events announced; the deliveries. */
  const runIn = Effect.fnUntraced(function* (b: NonNullable<typeof batch>, run: ReadonlyArray<Waiting>, events: ReadonlyArray<Envelope.Envelope>, prepared: unknown, hops: ReadonlyArray<Hop>) {
    if (!inbox.guarded && !(yield* holds(events[0]!.key))) return yield* Effect.fail(notRun)
    for (const w of run) if (!(yield* inbox.settleFirst(processor.name, w.event.id, "done", kept(w.payload), w.tenure))) return yield* Effect.fail(notRun)
    const announced = yield* b.handle(events, prepared)
    const local: Array<() => void> = []
    for (const [i, event] of events.entries()) local.push(...(yield* announce(event, announced[i] ?? [], hops[i]!.traceparent)))
    return local
  })

  /**
   * A run of one key's waiting messages in one transaction: true once committed. False when
   * anything failed it (nothing of it committed): its first message then runs alone.
   */
  const applyRun = async (b: NonNullable<typeof batch>, run: ReadonlyArray<Waiting>): Promise<boolean> => {
    const events = run.map((w) => w.event)
    const first = events[0]!
    if (deps.cluster?.owns(first.key) === false) return false
    // A span per message, as one at a time: each message's events are its own span's children.
    const hops = events.map((event) => begin(event))
    const started = performance.now()
    let deliveries: Array<() => void>
    let prepared: unknown
    try {
      prepared = await Effect.runPromise(b.prepare(events))
      Crash.point("handler", processor.name)
      deliveries = await store.group(runIn(b, run, events, prepared, hops), processor.name)
    } catch (error) {
      for (const hop of hops) hop.end(error)
      if (debug) deps.logger.log("debug", "run of messages not applied; one at a time", { processor: processor.name, id: first.id, messages: events.length, reason: Log.reason(error) })
      return false
    }
    for (const hop of hops) hop.end()
    metrics?.latency((performance.now() - started) / 1000)
    Crash.point("processed-committed", processor.name)
    for (const w of run.slice(1)) applied.add(w.event.id)
    unwait(first.key, new Set(events.map((e) => e.id)))
    const after = afterCommit(first, deliveries, b.committed === undefined ? undefined : () => b.committed?.(events, prepared))
    if (after !== undefined) await after
    return true
  }

  /**
   * Request-reply: answers on the event's public `replyTo` (inside the transaction, through the
   * outbox, at QoS 0 so that nothing piles up for a requester that went away). The reply's
   * `correlationId` is the request's id. What to run after the commit when it wrote one (the
   * relay's offer of the reply).
   */
  const reply = (event: Envelope.Envelope, type: "reply" | "request-failed", data: () => unknown, traceparent = event.traceparent): Sql<(() => void) | undefined> => {
    if (event.replyTo === undefined || !Topics.isReply(event.replyTo)) return Effect.succeed(undefined)
    const answer = data()
    if (answer === undefined) return Effect.succeed(undefined)
    const envelope: Envelope.Envelope = { id: clock.newId(), type, correlationId: event.id, causationId: event.id, key: event.key, occurredAt: Envelope.occurred(clock), ...(traceparent === undefined ? {} : { traceparent }), data: answer }
    return write([], event.replyTo, Envelope.encode(envelope), 0)
  }

  /**
   * Writes an outbox entry inside the caller's transaction. The entries `written` so far (of one
   * `announce`) are offered to the relay after the commit by the one delivery returned for the
   * first of them (without `offer`, a cluster: the relay's poke).
   */
  const offer = deps.offer ?? (() => deps.poke())
  const write = (written: Array<() => Outbox.Entry>, topic: string, payload: string, qos: 0 | 1): Sql<(() => void) | undefined> =>
    Effect.map(outbox.added(topic, payload, qos), (entry) => {
      written.push(entry)
      return written.length === 1 ? () => offer(written.map((e) => e())) : undefined
    })

  /**
   * Writes announced events, inside the caller's transaction: public ones to the outbox (the
   * broker's broadcast), and each to the inbox of its local consumers. Returns the deliveries to
   * run after the commit (the relay's poke among them when it wrote to the outbox: a message
   * that wrote nothing there costs the relay no read). Each carries `traceparent`: the span of
   * the hop that emitted it. `at` (a handler's events, in its transaction): a local consumer that
   * can run one at once runs it there (Consumer's `chain`), its failure failing the transaction.
   */
  const announce: {
    (cause: Envelope.Envelope, announced: ReadonlyArray<Envelope.Next>, traceparent?: string): Sql<Array<() => void>>
    (cause: Envelope.Envelope, announced: ReadonlyArray<Envelope.Next>, traceparent: string | undefined, at: Chained): Sql<Array<() => void>, Decision.RunElsewhere>
  } = ((cause: Envelope.Envelope, announced: ReadonlyArray<Envelope.Next>, traceparent = cause.traceparent, at?: Chained): Sql<Array<() => void>, Decision.RunElsewhere> =>
    // (Without `at` nothing runs at once: nothing fails it so.) Nothing announced: one effect made once.
    announced.length === 0 ? announcedNothing : Effect.suspend(() => {
      const local: Array<() => void> = []
      const entries: Array<() => Outbox.Entry> = []
      /** What a step gave recorded: a route's deliveries (an array), or a write's delivery (maybe none). */
      const record = (a: ReadonlyArray<() => void> | (() => void) | undefined) => {
        if (typeof a === "function") local.push(a)
        else if (a !== undefined) for (let j = 0; j < a.length; j++) local.push(a[j]!)
      }
      /**
       * The announced events from the `i`th on (a step per event, a loop in `flatMap`s; the last
       * event's step ends in a `map`, most handlers announcing one).
       */
      const from = (i: number): Sql<Array<() => void>, Decision.RunElsewhere> => {
        if (i === announced.length) return Effect.succeed(local)
        const next = announced[i]!
        const out = Envelope.next(cause, next, deps.clock, traceparent)
        const topic = next.topic ?? Topics.event(out.type)
        const payload = Envelope.encode(out)
        const internal = Topics.isInternal(topic)
        const audience = deps.audience
        const last = i + 1 === announced.length
        /** `step`, what it gives recorded, then the events after this one. */
        const then = (step: Sql<ReadonlyArray<() => void> | (() => void) | undefined, Decision.RunElsewhere>): Sql<Array<() => void>, Decision.RunElsewhere> =>
          last
            ? Effect.map(step, (a) => {
                record(a)
                return local
              })
            : Effect.flatMap(step, (a) => {
                record(a)
                return from(i + 1)
              })
        const route = internal || deps.routePublic ? deps.router.route(topic, out, payload, false, at) : undefined
        let written: Sql<(() => void) | undefined> | undefined
        if (internal) {
          if (!deps.router.consumes(topic)) return Effect.die(new Error(`no local consumer for the internal topic ${topic}`))
        } else if (Topics.isReply(topic) || audience === undefined || audience.wanted(topic)) {
          written = write(entries, topic, payload, Topics.isReply(topic) ? 0 : 1)
        } else local.push(() => audience.unsent(topic, payload))
        if (written === undefined) return route === undefined ? from(i + 1) : then(route)
        if (route === undefined) return then(written)
        return Effect.flatMap(written, (deliver) => {
          record(deliver)
          return then(route)
        })
      }
      return from(0)
    })) as typeof announce

  /** The message failed for good: settle it as failed and hand it over, or send it down the error path. */
  const fail = Effect.fnUntraced(function* (
    event: Envelope.Envelope,
    topic: string,
    payload: Buffer | string,
    decision: Decision.GivenUp,
    error: unknown,
    history: ReadonlyArray<Attempt>,
    tenure: number | undefined
  ): SqlGen<Array<() => void> | undefined> {
    const attemptsMade = decision.attempts
    const reason = `${processor.name} failed after ${attemptsMade} attempt(s): ${Log.reason(error)}`
    // Undefined: not recorded (its key not this instance's, or no longer pending), its row as it was.
    if ((!inbox.guarded && !(yield* holds(event.key))) || !(yield* inbox.settle(processor.name, event.id, "failed", undefined, tenure))) return undefined
    if (decision._tag === "Park" && parking !== undefined) {
      // The workflow event pattern: hand it over, hold its key, and move on at once.
      const failure = { topic: Topics.publicTopic(topic), error: Log.reason(error), reason, attempts: history }
      return yield* announce(event, yield* parking.hold(processor.name, event, failure, clock.now()))
    }
    yield* reply(event, "request-failed", () => (processor.reply === undefined ? undefined : { error: reason }))
    yield* deps.reject({
      topic: Topics.publicTopic(topic),
      payload: typeof payload === "string" ? Buffer.from(payload) : payload,
      kind: "processing-failed",
      reason,
      ...(error instanceof Rejected && error.issues.length > 0 ? { issues: error.issues } : {}),
      processor: processor.name,
      attempts: attemptsMade,
      cause: event
    })
    return yield* announce(event, processor.failed?.(event, reason) ?? [])
  })

  /** The supervisor settled a message as failed for good: record it so (`fail`), then its deliveries. */
  const failedForGood = async (event: Envelope.Envelope, topic: string, payload: Buffer | string, decision: Decision.GivenUp, error: unknown, tenure: number | undefined): Promise<void> => {
    metrics?.handled("failed")
    const history = attempts.get(event.id) ?? []
    attempts.delete(event.id)
    const deliveries = await conflictsRetried(() => store.transaction(fail(event, topic, payload, decision, error, history, tenure)))
    // Committed failed (its row never pending again): a read of pending rows out now may hold it still pending (`reads`).
    if (deliveries !== undefined) {
      for (const done of reads) done.add(event.id)
      for (const deliver of deliveries) deliver()
    }
    deps.poke()
  }

  const running = new Map<string, Promise<void>>()
  /**
   * A read of the inbox's pending rows out (a backlog's page, a recovery or a cluster's sweep,
   * `readPending`): the ids of the messages whose runs here committed them done (or failed for
   * good, `failedForGood`) meanwhile. Such a message left `running` before the read's answer came,
   * so `running` no longer tells that its row
   * in the answer is stale: without this it was scheduled again, ran its handler, and its done mark
   * failed the whole group transaction as no longer pending (PostgreSQL, one instance: the
   * cluster's sweep every second or two, ~0.01-0.05 an order of `ab.ts pg`, all of them so).
   */
  const reads = new Set<Set<string>>()
  /**
   * `read` (of pending rows), its answer given to `use` with the ids of the messages committed done
   * here while it was out: rows of them in it are stale. `use` runs in the read's own turn, the ids
   * still gathered until it returns (a run that ends in a turn between the answer and its use would
   * be missed: it ran twice, Consumer.pendingRead.pg.test.ts).
   */
  const readPending = async <A, B>(read: () => Promise<A>, use: (answer: A, done: ReadonlySet<string>) => B): Promise<B> => {
    const done = new Set<string>()
    reads.add(done)
    try {
      return use(await read(), done)
    } finally {
      reads.delete(done)
    }
  }
  /**
   * In a cluster, the tenure of its partition each message of `running` was scheduled in. One of
   * an earlier tenure is skipped when its turn comes (see Cluster.ts `tenure`: the partition got
   * back, its pending messages are scheduled again in their order, not behind it), and does not
   * stand for the message when it is scheduled again. One whose turn had begun already is stopped
   * by its done mark, fenced on the tenure it was scheduled in (Cluster.ts `inboxGuard`: the
   * claim's epoch, a parameter of the statement that marks it done, no statement more).
   */
  const tenureOf = deps.cluster?.tenure
  const tenures = new Map<string, number>()
  /** The run of message `id` (of `key`) in memory, unless it is stale (scheduled in an earlier tenure). */
  const runningNow = (id: string, key: string): Promise<void> | undefined => {
    const run = running.get(id)
    return run === undefined || tenureOf === undefined || tenures.get(id) === tenureOf(key) ? run : undefined
  }
  /** PostgreSQL with chains (`openHere`): messages of `running` by key. */
  const runningKeys = new Map<string, number>()
  /** Runs a message of the inbox now (past the bound too: a parked message's turn, a backlog's page). */
  const submit = (event: Envelope.Envelope, topic: string, payload: Buffer | string, encoded = false): Promise<void> => {
    if (deps.cluster?.owns(event.key) === false) return Promise.resolve()
    const already = runningNow(event.id, event.key)
    if (already !== undefined) return already
    const tenure = tenureOf?.(event.key)
    const actor = deps.actors[partitionOf(event.key, deps.actors.length)]!
    let tries = 0
    let result: Handled = "skipped"
    const entry: Waiting = { event, payload, tenure }
    if (batch !== undefined) {
      const queue = waiting.get(event.key)
      if (queue === undefined) waiting.set(event.key, [entry])
      else queue.push(entry)
    }
    const record = (handled: Handled) => {
      result = handled
    }
    // Without runs of a key (most processors): the attempt's promise, not an async function around it.
    const work =
      batch === undefined
        ? () => {
            if (tries++ > 0) metrics?.retried()
            if (tenure !== undefined && tenureOf!(event.key) !== tenure) return Promise.resolve(record("skipped"))
            return apply(event, payload, tries, encoded, tenure).then(record)
          }
        : async () => {
            if (tries++ > 0) metrics?.retried()
            if (tenure !== undefined && tenureOf!(event.key) !== tenure) return record("skipped")
            if (applied.delete(event.id)) {
              result = "done"
              return
            }
            const taken = tries === 1 ? runOf(event, batch.max) : []
            if (taken.length > 1 && (await applyRun(batch, taken))) {
              result = "done"
              return
            }
            unwait(event.key, new Set([event.id]))
            result = await apply(event, payload, tries, encoded, tenure)
          }
    const run = actor.submit(work).then((outcome): Promise<void> | undefined => {
      const decision =
        outcome._tag === "Done"
          ? Decision.decide(handled[result], tries, policy)
          : outcome.error instanceof Supervisor.RestartLimitExceeded
            ? Decision.decide({ _tag: "GaveUp" }, outcome.attempts, policy)
            : Decision.givenUp(decided.get(event.id), outcome.attempts, policy)
      decided.delete(event.id)
      if (decision._tag === "Done" && decision.outcome !== "skipped") metrics?.handled(decision.outcome)
      // Pending: the supervisor gave up, a crash loop and not this message's fault; it stays pending for the next start.
      // Done (nearly every message): no async function, no promise of its own.
      if (decision._tag !== "Park" && decision._tag !== "Reject") return undefined
      return failedForGood(event, topic, payload, decision, outcome._tag === "Failed" ? outcome.error : undefined, tenure)
    })
    inFlight.add(run)
    running.set(event.id, run)
    if (tenure !== undefined) tenures.set(event.id, tenure)
    if (chainsHere) runningKeys.set(event.key, (runningKeys.get(event.key) ?? 0) + 1)
    const settled = () => {
      inFlight.delete(run)
      if (tenure === undefined) running.delete(event.id)
      else if (running.get(event.id) === run) {
        running.delete(event.id)
        tenures.delete(event.id)
      }
      if (chainsHere) {
        const n = runningKeys.get(event.key)!
        if (n <= 1) runningKeys.delete(event.key)
        else runningKeys.set(event.key, n - 1)
      }
      // Committed done (its row never pending again): a read of pending rows out now may hold it still pending.
      if (result === "done" && reads.size > 0) for (const done of reads) done.add(event.id)
      if (batch !== undefined) {
        applied.delete(event.id)
        // Its own entry only: a stale one's (scheduled in an earlier tenure) end must not take out
        // the entry its message was scheduled again with, or a run of the key's older messages
        // would take a later one along ahead of it (cluster.handover-order.int.test.ts: 1, 2, 5, 3, 4).
        unwaitEntry(event.key, entry)
      }
      if (backlog && inFlight.size <= maxScheduled / 2) refill()
    }
    // One `then` (not `catch` and `finally`: two promises more, and `finally`'s own): per message.
    void run.then(settled, (error: unknown) => {
      try {
        deps.logger.log("error", "recording a failed message failed; it stays pending", { processor: processor.name, id: event.id, reason: Log.reason(error), ...Envelope.logFields(event) })
      } finally {
        settled()
      }
    })
    return run
  }

  /*
   * Back-pressure: at most `maxScheduled` messages of this processor are in memory (in its actors'
   * mailboxes or running). Past that, arrivals stay pending in the durable inbox (where they are
   * already committed) and are read back in arrival order, a page at a time, once half the room
   * is free; until the backlog is read out, every arrival waits behind it, so the order per key holds.
   */
  const maxScheduled = deps.maxScheduled ?? 1000
  let backlog = false
  /** An arrival was left in the inbox while a refill was reading it: read again before leaving backlog. */
  let missed = false
  /** Partitions swept (or acquired) while a backlog was being read (`recover`): read once at the end of the pass. */
  const swept = new Set<number>()
  let refilling: Promise<void> | undefined
  /** A cluster's ownership, for the backlog's reader (PostgreSQL only: alone on SQLite, every row is this instance's, nothing to ask per row). */
  const owns = store.dialect === "pg" ? deps.cluster?.owns : undefined
  /** What a partition's rows were when a pass met them: another instance's (-2), or this instance's under a tenure (0 without tenures; -1: a claim on its way). */
  const notOwned = -2
  const readBacklog = async (): Promise<void> => {
    while (backlog) {
      missed = false
      let after = 0
      /**
       * What each partition's rows were when this pass met them: another instance's, or this
       * one's under a tenure. One owned further on under another tenure (acquired between two
       * pages; or lost and acquired again, its messages this pass ran then stale, skipped when
       * their turn comes) has rows behind the pass's position, older than its rows ahead, not
       * running: the pass starts again from the first row, or a key's later message would run
       * before its earlier ones (Consumer.backlogHandover.pg.test.ts).
       */
      const met = new Map<number, number>()
      for (;;) {
        // Undefined: the room is full (the end of a run reads on from the start); else whether the page was full.
        const full = await readPending(
          () => inbox.pendingPage(processor.name, after, maxScheduled),
          (page, done) => {
            for (const entry of page) {
              if (inFlight.size >= maxScheduled) return undefined
              if (owns !== undefined) {
                const now = !owns(entry.key) ? notOwned : (tenureOf?.(entry.key) ?? 0)
                const before = met.get(entry.part)
                if (now !== notOwned && before !== undefined && before !== now) {
                  met.clear()
                  after = 0
                  return true
                }
                met.set(entry.part, now)
                if (now === notOwned) {
                  after = entry.seq
                  continue
                }
              }
              after = entry.seq
              if (done.has(entry.envelopeId)) continue
              // Running already (the page starts at the oldest pending, those in flight): its submit
              // would find it running; not parsed again (half of a page read at half the room).
              if (runningNow(entry.envelopeId, entry.key) !== undefined) continue
              void submit(JSON.parse(entry.payload) as Envelope.Envelope, entry.topic, entry.payload, true)
            }
            return page.length === maxScheduled
          }
        )
        if (full === undefined) return
        if (!full) break
      }
      // A sweep (or partitions acquired) while the pass was out: the pass may have gone past a
      // row of theirs committed behind its position. Not another pass on that alone: a pass
      // reads other instances' partitions too and may outlast the sweep's period, and then the
      // backlog would never end (a pass after every pass). Their pending rows, read once: one
      // not running, another pass (and read again for a sweep that came while they were read).
      while (!missed && swept.size > 0) {
        const parts = [...swept]
        swept.clear()
        await readPending(
          () => inbox.pendingIn(processor.name, parts),
          (pending, done) => {
            for (const entry of pending) if (!done.has(entry.envelopeId) && runningNow(entry.envelopeId, entry.key) === undefined) return void (missed = true)
          }
        )
      }
      if (!missed) backlog = false
    }
  }
  const backlogFailing = Log.streak(deps.logger, "reading the inbox backlog failed, retrying", "reading the inbox backlog again", { processor: processor.name })
  const refill = (): void => {
    if (refilling !== undefined) return
    refilling = readBacklog()
      .then(backlogFailing.succeeded, async (error: unknown) => {
        // The messages stay in the inbox: read again shortly (the database out of reach: the store
        // logs it once). A failure that recurs is logged once, again when its reason changes.
        if (!isUnavailable(error)) backlogFailing.failed(error)
        await new Promise((r) => setTimeout(r, 500))
      })
      .finally(() => {
        refilling = undefined
        if (backlog && inFlight.size <= maxScheduled / 2) refill()
      })
  }
  const acquiring = deps.cluster?.acquiring
  /**
   * A message just committed to the inbox: run now, or left there while the processor is full, or
   * (`read` false: not from a read of the inbox's pending rows) while its partition, just acquired,
   * may have older pending messages not yet scheduled (Cluster.ts `acquiring`; run at once, it
   * went ahead of its key's older ones: cluster.acquired-arrival.int.test.ts). The backlog's reader
   * (or the acquired hook's read) reads it back behind them, in arrival order.
   */
  const admit = (event: Envelope.Envelope, topic: string, payload: Buffer | string, encoded: boolean, read: boolean): Promise<void> => {
    const already = runningNow(event.id, event.key)
    if (already !== undefined) return already
    if (backlog || inFlight.size >= maxScheduled || (!read && acquiring?.(event.key) === true)) {
      backlog = true
      missed = true
      if (inFlight.size <= maxScheduled / 2) refill()
      return Promise.resolve()
    }
    return submit(event, topic, payload, encoded)
  }
  const schedule = (event: Envelope.Envelope, topic: string, payload: Buffer | string, encoded = false): Promise<void> => admit(event, topic, payload, encoded, false)

  /**
   * Request-reply on a single SQLite instance: a request is handled in the transaction that
   * receives it (the ingress's append, before its PUBACK), when this processor has no other
   * pending message (nothing older of its key can wait; SQLite runs one transaction at a time, so
   * none is being handled meanwhile). Its inbox row is written done with the handler's effects,
   * never pending. Not for processors with `prepare` (it runs outside the transaction), parking or
   * runs of a key, nor under a cluster's inbox guard.
   *
   * Without a savepoint, as `chain` and `call` (`claimed`: one statement both asks whether
   * another message is pending and writes the row done, where the savepoint's way took four:
   * that question, SAVEPOINT, the row, RELEASE): a failure fails the ingress's transaction
   * (`Decision.RunElsewhere`), which its log runs again at once on the connection it still holds
   * (`Store.transaction`'s `again`, no other transaction between), this request refused then:
   * received pending and scheduled as any other after the commit (its attempts counted from
   * there), as the savepoint's rollback left it. Measured (interleaved against the savepoint's
   * way, 2026-12-03, load 1.7-6.9, six sets of 8-10 rounds of `rrCounters.ts 3000` and `rr.ts
   * 300`/`1000`): 10 -> 7 statements a round trip, p50 0.94-0.98x (lower in 40 of 52 rounds),
   * the runtime's CPU a round trip 0.95-0.98x (lower in 19 of 24); the order flow unchanged
   * (`ab.ts sqlite 2000 4`: 1.00x orders/s). Where `claimed` is not offered, the savepoint's way.
   */
  const inline = (event: Envelope.Envelope, topic: string, payload: string, rolledBack?: Array<(cause: unknown) => void>): Sql<(() => void) | undefined, Decision.RunElsewhere> | undefined => {
    if (event.replyTo === undefined) return undefined
    // Its chain made here, not in `handleIn`: the spans of its chained runs end with its own
    // should the transaction roll back after it ran (a later request of the batch failing).
    let chain: Chain | undefined
    const ran = (deliveries: ReadonlyArray<() => void>, after: () => void, hop: Hop) => {
      const runs = chain
      rolledBack?.push((cause) => {
        if (runs !== undefined) for (const end of runs.rolledBack.splice(0)) end(cause)
        hop.end(cause)
      })
      return ranHere(event, deliveries, after)
    }
    const claim = claimed(event, topic, payload)
    if (claim === undefined) return runHere(event, (hop) => receivedAndHandled(event, topic, payload, hop), true, failedUndefined, ran)
    if (refused.has(event.id)) return undefined
    return runHere(event, (hop) => handleIn(event, undefined, hop.traceparent, undefined, (chain = chainOf(event.id))), false, refusing(event, event.id), ran, false, claim)
  }

  /** What `inline` and `chain` run after the commit of a message they ran: the span's end and the rest (`after`), its deliveries, its `committed`. */
  const ranHere =
    (event: Envelope.Envelope, deliveries: ReadonlyArray<() => void>, after: () => void) =>
    (): void => {
      after()
      const done = afterCommit(event, deliveries, processor.committed === undefined ? undefined : () => processor.committed?.(event, undefined))
      if (done !== undefined) {
        inFlight.add(done)
        void done.then(() => inFlight.delete(done))
      }
    }

  /**
   * An event a handler announced, run in the handler's transaction (see `Consumer.chain`), on the
   * terms of `inline` (`runHere`: this processor has no other pending message, so nothing of it
   * queued earlier, in this transaction or before, is overtaken; on PostgreSQL see `openHere`
   * and `answered`). Without a savepoint, as `call`:
   * a failure fails the transaction (`Decision.RunElsewhere`), which runs again at once, and the
   * event, refused here on the root's next run, is received pending and run as any other. Not a
   * message with a `replyTo` (a domain mediator's command): its sender runs it (`call`) or
   * queued it, and so every later one to this channel (a refused call is not run again here).
   * Not for a processor with a `committed` step: run from its queue, one key's steps run one
   * after another (its actor waits for each); here they would all start at the root's commit.
   */
  const chain = (event: Envelope.Envelope, topic: string, payload: string, at: Chained): Sql<(() => void) | undefined, Decision.RunElsewhere> | undefined => {
    if (event.replyTo !== undefined || refused.has(at.chain.root)) return undefined
    // PostgreSQL in a cluster: the tenure of the key's partition its row is fenced on (`chainable`: not -1).
    let fence: number | undefined
    if (store.dialect === "pg") {
      if (!heldFor(event, at.chain.keys) || !openHere(event.key, at.chain.ended)) return undefined
      fence = deps.cluster?.tenure?.(event.key)
      const root = at.chain.root
      at.chain.begun.push(() => refuse(root))
    }
    const inner: Chained = { chain: at.chain, depth: at.depth + 1 }
    const claim = store.dialect === "pg" ? undefined : claimed(event, topic, payload)
    return runHere(
      event,
      claim === undefined ? (hop) => receivedAndHandled(event, topic, payload, hop, inner, fence) : (hop) => handleIn(event, undefined, hop.traceparent, inner),
      false,
      // PostgreSQL: another item's write of the group failing a statement of this run is not its
      // failure (that item's chain, or that item, is blamed: `ofChain`); it fails the transaction as it is.
      store.dialect === "pg" ? (cause) => (ofChain(at.chain, Cause.squash(cause)) ? refusing(event, at.chain.root)(cause) : (Effect.failCause(cause) as Sql<never, Decision.RunElsewhere>)) : refusing(event, at.chain.root),
      (deliveries, after, hop) => {
        at.chain.rolledBack.push((cause) => hop.end(cause))
        return ranHere(event, deliveries, after)
      },
      store.dialect === "pg",
      claim
    )
  }

  /**
   * PostgreSQL (`chainsHere`): transactions run side by side, so a run chained in
   * one must not overtake, nor run beside, one of its key in another. The chained row's write
   * (`receiveDoneFirst`) fails the transaction when a message of the key is pending: committed to
   * the inbox, or being handled in another open transaction (still pending there). What it
   * cannot see is a message received by another transaction still open (of this instance or,
   * in a cluster, of another). That one is scheduled here once committed (only the owner of the
   * key's partition runs its messages, and this instance owns it: `chainable`; the write is
   * fenced on that tenure, locking the partition's row to the commit, so no other instance
   * claims the partition before this transaction ends, nor ran the key's messages since this
   * tenure began), after its
   * transaction's commit, so after that write's read, so after the key was opened here: it waits
   * for the chain's transaction to end (`apply`), and runs after the chained message, whose
   * effects it then sees. Until then both transactions were open side by side, neither saw the
   * other's message, and so which came first is what the chained run's commit made it (the
   * queued one, handled later, is the later in every table). Opens `key` for the chain's
   * transaction (`ended` calls what closes it); false when it cannot: a message of this processor
   * is in memory (scheduled or running: its row pending, or done in a transaction not yet ended,
   * or being handled in the same group's transaction beside this one, where the write cannot see
   * it pending; of this key only for a processor that says `ownRows`, whose messages of different
   * keys run side by side in one transaction anyway), or another transaction's chain holds the
   * key open. One of the key pending in the inbox and not in memory (arrived a moment ago, or a
   * backlog's) fails the chain's transaction, which runs again with this processor refusing.
   */
  const openHere = (key: string, ended: Array<() => void> | undefined): boolean => {
    if (ended === undefined || (processor.ownRows === true ? runningKeys.has(key) : running.size > 0) || !chainable(key)) return false
    const open = opened.get(key)
    if (open !== undefined) return open.by === ended
    let close!: () => void
    const entry = { by: ended, ended: new Promise<void>((resolve) => (close = resolve)) }
    opened.set(key, entry)
    ended.push(() => {
      opened.delete(key)
      close()
    })
    return true
  }
  /**
   * PostgreSQL: whether the chain's transaction holds the advisory locks of every lock key of
   * this processor's (Processor.lockKeys) for `event`: true without lock keys. A message whose
   * keys are not known (undefined) is not chained: its locks could only be taken here, in the
   * middle of the transaction, out of the one order of every group. Nor one whose `lockKeys`
   * throws (user code, in the root's transaction before this processor refuses the root): queued,
   * it fails its own message (`apply`), not its sender's.
   */
  const heldFor = (event: Envelope.Envelope, held: ReadonlySet<string> | undefined): boolean => {
    if (processor.lockKeys === undefined) return true
    let keys: ReadonlyArray<string> | undefined
    try {
      keys = processor.lockKeys(event)
    } catch {
      return false
    }
    return Array.isArray(keys) && keys.every((k) => held?.has(k) === true)
  }
  /** The chain of the latest run of an attempt (`chainsEnded`), by its `ended`: `chainFailed` looks at it when the attempt's transaction failed. */
  const rooting = new Map<Array<() => void>, Chain>()
  /** A root's chain, for a run of its attempt (run again in a group's savepoint: the run before it rolled back). */
  const rooted = (event: Envelope.Envelope, ended: Array<() => void> | undefined, keys: ReadonlyArray<string> | undefined): Chain => {
    const chain = chainOf(event.id, ended, keys)
    if (ended === undefined) return chain
    const before = rooting.get(ended)
    if (before !== undefined && before.rolledBack.length > 0) {
      const cause = new Error("rolled back with its group's transaction: its root runs again")
      for (const end of before.rolledBack.splice(0)) end(cause)
    }
    rooting.set(ended, chain)
    return chain
  }
  /**
   * PostgreSQL: whether a chain may run a message of `key` here now: its partition is this
   * instance's (alone, always), under a tenure (not -1: a claim on its way), and not being
   * acquired (its older pending messages not all scheduled yet, `acquiring`). Asked by the router
   * per event (`chaining`: when no consumer chains it, one statement delivers it to all) and at
   * each run (`openHere`); the run's row is fenced on the tenure (`chain`).
   */
  const chainable = (key: string): boolean => {
    const cluster = deps.cluster
    if (cluster === undefined) return true
    return cluster.owns(key) && cluster.tenure?.(key) !== -1 && cluster.acquiring?.(key) !== true
  }
  /** Keys of this processor with a chained run in a transaction not yet ended (`openHere`), by the chain's `ended`. */
  const opened = new Map<string, { readonly by: Array<() => void>; readonly ended: Promise<void> }>()
  /**
   * One attempt's group commit (`group`), given what to call when its transaction has ended
   * (`Chain.ended`; PostgreSQL with chains, else nothing to call: undefined).
   */
  const chainsEnded = <A>(group: (ended: Array<() => void> | undefined) => Promise<A>): Promise<A> => {
    // Any processor's message may root a chain (on PostgreSQL); what chains is what this
    // instance owns (`chainable`, asked per event: the router queues the rest as before).
    if (!rootsChains) return group(undefined)
    const ended: Array<() => void> = []
    const close = () => {
      for (const end of ended.splice(0)) end()
    }
    return group(ended).then(
      (value) => {
        rooting.delete(ended)
        close()
        return value
      },
      (error: unknown) => {
        const chain = rooting.get(ended)
        rooting.delete(ended)
        close()
        throw chain === undefined ? error : chainFailed(chain, error)
      }
    )
  }

  /**
   * `inline` for a caller that takes the answer itself (a domain mediator's command on its
   * channel): what the handler addresses to the message's `replyTo` is given back, not written
   * to the caller's inbox; the rest it announces as always. Not for a processor with a
   * `committed` step (nothing runs it) or a `reply` (answers go to the caller only). Without a
   * savepoint of its own (two statements, and a copy of each page it changes first): a failure
   * fails the caller's transaction (`Decision.RunElsewhere`), which runs again at once, and the
   * message, refused here then, is sent as any other.
   */
  const call = (event: Envelope.Envelope, topic: string, payload: string): Sql<Called | undefined, Decision.RunElsewhere> | undefined => {
    const replyTo = event.replyTo
    if (replyTo === undefined || processor.committed !== undefined || processor.reply !== undefined || refused.has(event.id)) return undefined
    const entry = { envelopeId: event.id, topic, key: event.key, payload }
    let traceparent = ""
    const handled = (hop: Hop): Sql<readonly [ReadonlyArray<Envelope.Next>, Array<() => void>], unknown> =>
      Effect.flatMap(processor.handle(event, undefined), (announced) => {
        traceparent = hop.traceparent
        const answers = announced.filter((n) => n.topic === replyTo)
        const rest = answers.length === announced.length ? [] : announced.filter((n) => n.topic !== replyTo)
        return Effect.map(announce(event, rest, hop.traceparent), (deliveries) => [answers, deliveries] as const)
      })
    const claim = claimed(event, topic, payload)
    const called = (hop: Hop): Sql<readonly [ReadonlyArray<Envelope.Next>, Array<() => void>] | undefined, unknown> =>
      Effect.flatMap(holds(event.key), (ours) =>
        !ours ? Effect.undefined : Effect.flatMap(inbox.receiveDone(processor.name, entry, kept(payload, event)), (fresh) => (!fresh ? Effect.undefined : handled(hop)))
      )
    const call = claim === undefined ? called : handled
    return runHere(event, call, false, refusing(event, event.id), ([answers, deliveries], after): Called => ({
      answers,
      traceparent,
      committed: () => {
        after()
        for (const deliver of deliveries) deliver()
      }
    }), false, claim)
  }
  /**
   * Messages whose run for a caller failed (`call`, by their id), and the roots of chains whose
   * run here failed (`chain`, by the root's id): refused whenever asked again, so sent as any other.
   * Not spent by the first refusal: that run may roll back (a group commit's optimistic run, undone
   * by a later message's failure, runs it again in a savepoint), and a fan-out's other consumer
   * roots a chain of the same id. The oldest forgotten past 10,000 (their roots long committed).
   */
  const refused = new Set<string>()
  /** A run in a sender's transaction failed: it fails that transaction, and is refused (`key`) when asked again. */
  const refuse = (key: string) => {
    if (refused.size >= 10_000) refused.delete(refused.values().next().value!)
    refused.add(key)
  }
  const refusing = (event: Envelope.Envelope, key: string) => (cause: Cause.Cause<unknown>) => {
    refuse(key)
    return Effect.fail(new Decision.RunElsewhere(processor.name, event.id, Cause.squash(cause)))
  }

  /** A run of `runHere` that did not run, or failed: its span ends (if it began). */
  const notRunHere = (event: Envelope.Envelope, hop: Hop | undefined, cause: Cause.Cause<unknown> | undefined) => {
    hop?.end(cause)
    if (debug) deps.logger.log("debug", "message not handled in its sender's transaction; sent as any other", { processor: processor.name, id: event.id, ...Envelope.logFields(event) })
  }
  /**
   * The common part of `inline` and `call`: on a single SQLite instance, when this processor has
   * no other pending message, `body` runs in the caller's transaction (`inSavepoint`: in a
   * savepoint of it, when its failure is to roll back only its own work). `failed` says what its
   * failure makes of the caller's transaction; `done`, what the caller gets of its outcome, given
   * what to run after the commit for the span, the metrics and the crash point. `claim` (SQLite,
   * not in a savepoint: `claimed`): the statement that both asks whether another message is
   * pending and writes this one's row done, `body` run only when it did (where `othersPending`
   * asked first, and `body` wrote the row); the span begins once it has.
   */
  const runHere = <A, B, E>(
    event: Envelope.Envelope,
    body: (hop: Hop) => Sql<A | undefined, unknown>,
    inSavepoint: boolean,
    failed: (cause: Cause.Cause<unknown>) => Sql<undefined, E>,
    done: (a: A, after: () => void, hop: Hop) => B,
    pg = false,
    claim?: () => Sql<boolean>
  ): Sql<B | undefined, E> | undefined => {
    if (!(pg ? chainsHere : runsHere)) return undefined
    if (deps.cluster?.owns(event.key) === false) return undefined
    const attempt = (first: Sql<boolean> | undefined): Sql<B | undefined, E> => {
      let hop: Hop | undefined
      let started = 0
      const begun = (): Sql<A | undefined, unknown> => {
        hop = begin(event)
        started = performance.now()
        Crash.point("handler", processor.name)
        return body(hop)
      }
      const run = first === undefined ? Effect.suspend(begun) : Effect.flatMap(first, (fresh) => (fresh ? begun() : Effect.undefined))
      return Effect.matchCauseEffect(inSavepoint ? store.sql.withTransaction(run) : run, {
        onFailure: (cause) => {
          notRunHere(event, hop, cause)
          return failed(cause)
        },
        onSuccess: (value): Sql<B | undefined> => {
          if (value === undefined) {
            notRunHere(event, hop, undefined)
            return Effect.undefined
          }
          const ran = hop!
          return Effect.succeed(
            done(value, () => {
              ran.end()
              const ms = performance.now() - started
              metrics?.latency(ms / 1000)
              metrics?.handled("done")
              if (debug) deps.logger.log("debug", "message handled", { processor: processor.name, id: event.id, type: event.type, outcome: "done", ms: Math.round(ms * 10) / 10, correlationId: event.correlationId, traceId: ran.traceId })
              Crash.point("processed-committed", processor.name)
            }, ran)
          )
        }
      })
    }
    if (claim !== undefined) return attempt(claim())
    // PostgreSQL: nothing of this processor (of this key) in memory (`openHere`); one of the key pending in the inbox fails the write of its row (`receiveDoneFirst`).
    return Effect.flatMap(pg ? Effect.succeed(false) : inbox.othersPending(processor.name, event.id), (others) => (others ? Effect.succeed(undefined) : attempt(undefined)))
  }

  /** A message from the broker session: its envelope, or its rejection (to write in its place). */
  const received = (message: Message): { readonly event: Envelope.Envelope } | { readonly rejected: Sql<void> } => {
    let json: unknown
    try {
      json = JSON.parse(message.payload.toString("utf8"))
    } catch (error) {
      return { rejected: deps.reject({ topic: message.topic, payload: message.payload, kind: "malformed-json", reason: `not an envelope: ${Log.reason(error)}`, processor: processor.name }) }
    }
    const decoded = Envelope.decodeEnvelope(json)
    if (Result.isFailure(decoded))
      return { rejected: deps.reject({ topic: message.topic, payload: message.payload, kind: "schema-violation", reason: "invalid envelope", issues: decoded.failure, processor: processor.name }) }
    // Valid JSON (`\u0000`) but not storable in PostgreSQL's TEXT: it would fail its whole batch
    // (never acknowledged, sent again and again, the session stuck behind it), not only itself.
    if (decoded.success.id.includes("\u0000") || decoded.success.key.includes("\u0000"))
      return { rejected: deps.reject({ topic: message.topic, payload: message.payload, kind: "schema-violation", reason: "invalid envelope: a NUL character in its id or key", processor: processor.name }) }
    return { event: decoded.success }
  }

  const handler = async (message: Message): Promise<void> => handlerAll([message])

  /** Batches of the broker session being committed to the inbox (`handlerAll`): `idle` waits for them. */
  let receiving = 0
  /** Resolved once no batch is being committed (made only when `idle` waits for one: nothing per batch otherwise). */
  let allReceived: PromiseWithResolvers<void> | undefined
  /**
   * The messages that arrived together on the broker session (`Broker.subscribe`'s `batch`), in
   * one transaction (group commit): each one's inbox row, or its rejection. Once it committed
   * (before the broker acknowledges them), the new ones are scheduled in the order received.
   */
  const handlerAll = async (messages: ReadonlyArray<Message>): Promise<void> => {
    receiving++
    try {
      const taken = messages.map(received)
      const fresh = await store.transaction(
        Effect.forEach(taken, (t, i) =>
          "rejected" in t
            ? Effect.as(t.rejected, false)
            : inbox.receive(processor.name, { envelopeId: t.event.id, topic: messages[i]!.topic, key: t.event.key, payload: messages[i]!.payload.toString("utf8") })
        )
      )
      let rejected = false
      for (let i = 0; i < taken.length; i++) {
        const t = taken[i]!
        if ("rejected" in t) {
          rejected = true
          continue
        }
        Crash.point("received-committed")
        if (fresh[i] === true) schedule(t.event, messages[i]!.topic, messages[i]!.payload)
      }
      if (rejected) deps.poke()
    } finally {
      if (--receiving === 0 && allReceived !== undefined) {
        allReceived.resolve()
        allReceived = undefined
      }
    }
  }

  /**
   * Schedules what the inbox holds (from before a restart: the first page, the rest as a backlog),
   * or what it holds in the given cluster partitions. Returns how many it read.
   */
  const recover = async (parts?: ReadonlyArray<number>) => {
    // A cluster's sweep (or partitions acquired) while a backlog is being read: every row it would
    // read that is not running would be left in the inbox (`schedule`), and the backlog's reader
    // reads every pending row of this processor's, in arrival order, those of `parts` among them.
    // So no read now: the pass that ends after it reads the partitions' pending rows once
    // (`swept`). (One instance on PostgreSQL sweeps every second or two: in a burst it read and
    // parsed the whole backlog each time.)
    if (parts !== undefined && backlog) {
      for (const part of parts) swept.add(part)
      if (inFlight.size <= maxScheduled / 2) refill()
      return 0
    }
    const read = await readPending(
      () => (parts === undefined ? inbox.pendingPage(processor.name, 0, maxScheduled) : inbox.pendingIn(processor.name, parts)),
      (pending, done) => {
        // One running already is not parsed: `schedule` would find it running (`runningNow`).
        for (const entry of pending)
          if (!done.has(entry.envelopeId) && runningNow(entry.envelopeId, entry.key) === undefined) void admit(JSON.parse(entry.payload) as Envelope.Envelope, entry.topic, Buffer.from(entry.payload), false, true)
        return pending.length
      }
    )
    // A full page: more may wait behind it, read once half the room is free (the page is not read
    // twice). A message's end starts that read; with the room free already (what was in flight
    // finished while the page was read), none is left to: read now (Consumer.recoverBacklog.test.ts).
    if (parts === undefined && read === maxScheduled) {
      backlog = true
      missed = true
      if (inFlight.size <= maxScheduled / 2) refill()
    }
    return read
  }

  const busy = () => inFlight.size > 0 || refilling !== undefined || receiving > 0
  const idle = async () => {
    while (busy()) await Promise.all([...inFlight, refilling, receiving > 0 ? (allReceived ??= Promise.withResolvers()).promise : undefined])
  }

  // Absent where it never runs (see `runsHere`, `chainsHere`): its senders need not ask. Not
  // `chain` for a processor with a `committed` step (see `chain`).
  const chains = (runsHere || chainsHere) && processor.committed === undefined
  return { handler, handlerAll, schedule, inline, call: runsHere ? call : undefined, chain: chains ? chain : undefined, chaining: chains && chainsHere ? chainable : undefined, recover, idle, busy, inFlight: () => inFlight.size, backlogged: () => backlog }
}
