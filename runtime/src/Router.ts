/**
 * In-process routing for the embedded broker: an event announced by a processor is written, in
 * the same transaction as the effects that announced it, to the inbox of every local processor
 * that consumes its topic, and to the outbox for the broker's broadcast to everyone else. No
 * internal hop crosses the broker, and no message is in flight outside a committed transaction.
 */
import type { Envelope } from "@baton/core"
import { Effect } from "effect"
import { timeline, type Inbox, type Sql } from "@baton/store"
import type { RunElsewhere } from "./Decision.ts"

/**
 * The local deliveries of one transaction's chain (Consumer's `chain`), rooted at the message
 * whose transaction it is (`root`: a consumer whose run failed refuses the root's next run, see
 * `Local.chain`). Each delivery of an event announced in the chain to a consumer that can run
 * events at once waits its turn here (`turns`, first in first out), and runs when the root's
 * handler is done (`drain`): breadth first, as the queues would take them. Each consumer thus
 * gets the chain's events in the order they would reach its inbox, and the outbox its entries in
 * the order of their transactions (a handler's events all before those its consumers announce).
 */
export interface Chain {
  readonly root: string
  readonly turns: Array<Sql<ReadonlyArray<() => void>, RunElsewhere>>
  /** Handlers run so far in the chain. */
  runs: number
  /**
   * What to call once the root's transaction has ended, committed or rolled back (PostgreSQL:
   * a consumer's keys held open by a run in it, see Consumer's `chain`). Absent where nobody
   * calls them: then nothing that needs them runs in the chain.
   */
  readonly ended?: Array<() => void> | undefined
  /**
   * PostgreSQL: the lock keys (Processor.lockKeys) of the root's message, whose advisory locks
   * its group took before anything of it ran: a processor with lock keys runs in the chain only
   * on keys among these (Consumer's `chain`), so that no lock is taken out of the one order of
   * every group. Absent: none held (the root gave none).
   */
  readonly keys?: ReadonlySet<string> | undefined
  /**
   * PostgreSQL: for each run begun in the chain, what makes its consumer refuse the root from
   * then on (a failure of the chain once its root's handler is done is blamed on all of them: a
   * write of a run may fail a later statement).
   */
  readonly begun: Array<() => void>
  /**
   * What ends the span of each run done so far (its own ends after the commit): called with the
   * cause when a later turn fails the transaction, rolling them back (an exported span under one
   * never ended would be an orphan in its trace).
   */
  readonly rolledBack: Array<(cause: unknown) => void>
}

/** Where an announced event stands in its chain: its handler's (0 for the root's events, 1 for those of a handler the root's event ran...). */
export interface Chained {
  readonly chain: Chain
  readonly depth: number
}

/** Hops from the root a chain runs at most; the events of the last are queued. */
export const maxDepth = 16
/** Handlers a chain runs at most (a fan-out's too); past them, its events are queued. */
export const maxRuns = 64

export const chainOf = (root: string, ended?: Array<() => void>, keys?: ReadonlyArray<string>): Chain => ({
  root,
  turns: [],
  runs: 0,
  ended,
  keys: keys === undefined ? undefined : new Set(keys),
  begun: [],
  rolledBack: []
})

/** Runs the chain's turns in order (those they add too), after the root's `deliveries`; all the deliveries to run after the commit. */
export const drain = (chain: Chain, deliveries: Array<() => void>): Sql<Array<() => void>, RunElsewhere> => {
  const turn = chain.turns.shift()
  return turn === undefined
    ? Effect.succeed(deliveries)
    : Effect.flatMap(timeline === undefined ? turn : Effect.andThen(Effect.sync(() => timeline?.("t")), turn), (more) => {
        for (const d of more) deliveries.push(d)
        return drain(chain, deliveries)
      })
}

export interface Local {
  readonly name: string
  /** Runs a message already committed to this consumer's inbox; `encoded`: the payload is `Envelope.encode(event)` (as every `route`'s is). */
  readonly schedule: (event: Envelope.Envelope, topic: string, payload: string, encoded?: boolean) => void
  /**
   * Runs the message now, inside the transaction that receives it, writing its inbox row itself
   * (done, with its effects; Consumer's `inline`): what to run after the commit, or undefined
   * when it did not run and wrote nothing (it is then received and scheduled as any other, a
   * redelivery not). Undefined when it cannot run so (asked before anything is written).
   * `rolledBack`: where it puts what ends its span should the transaction fail after it ran (the
   * caller calls them then, with the failure: a batch run again once a later request failed in it).
   */
  readonly inline?: (event: Envelope.Envelope, topic: string, payload: string, rolledBack?: Array<(cause: unknown) => void>) => Sql<(() => void) | undefined, RunElsewhere> | undefined
  /**
   * An event a handler announced, run now inside the handler's transaction (Consumer's `chain`):
   * its inbox row written done with its effects; what to run after the commit, or undefined when
   * it did not run and wrote nothing (then received pending as any other). A failure fails the
   * transaction (`RunElsewhere`: it runs again, and the event, refused then, is queued).
   * Undefined when it cannot run so (asked before anything is written).
   */
  readonly chain?: ((event: Envelope.Envelope, topic: string, payload: string, at: Chained) => Sql<(() => void) | undefined, RunElsewhere> | undefined) | undefined
  /**
   * Whether `chain` may run an event of the key now (absent: whenever it is there; in a cluster,
   * while this instance owns the key's partition); when not, the event is delivered as to a
   * consumer without one.
   */
  readonly chaining?: ((key: string) => boolean) | undefined
}

export interface Router {
  readonly add: (topic: string, local: Local) => void
  readonly consumes: (topic: string) => boolean
  /**
   * Records the message in the inbox of each local consumer of `topic`; call inside the
   * transaction. `payload` is `Envelope.encode(event)` (the consumers keep what they mask of it
   * from the event itself). Returns the deliveries to run once it has committed. `inline` (the ingress): a
   * lone consumer that can run it at once (see `Local.inline`) runs it in that transaction
   * (`rolledBack`: see `Local.inline`).
   * `chained` (an event a handler announced, in its transaction): each consumer that can run
   * events at once (`Local.chain`) gets it in its turn (see `Chain`), run there or received
   * pending; the others receive it pending now.
   */
  readonly route: {
    (topic: string, event: Envelope.Envelope, payload: string, inline?: false): Sql<ReadonlyArray<() => void>>
    (topic: string, event: Envelope.Envelope, payload: string, inline: true, chained?: undefined, rolledBack?: Array<(cause: unknown) => void>): Sql<ReadonlyArray<() => void>, RunElsewhere>
    (topic: string, event: Envelope.Envelope, payload: string, inline: false, chained: Chained | undefined): Sql<ReadonlyArray<() => void>, RunElsewhere>
  }
}

const none: ReadonlyArray<() => void> = []
/** No deliveries, as an effect made once (an exit is a value: shared, not made per event routed). */
const succeededNone: Sql<ReadonlyArray<() => void>> = Effect.succeed(none)
const noLocals: ReadonlyArray<Local> = []
/** Whether `local` runs a chain's events of `key` in their turn now. */
const chainsNow = (local: Local, key: string) => local.chain !== undefined && local.chaining?.(key) !== false
/** Whether any of `locals` does (a loop, not a closure per event routed). */
const anyChainsNow = (locals: ReadonlyArray<Local>, key: string): boolean => {
  for (let i = 0; i < locals.length; i++) if (chainsNow(locals[i]!, key)) return true
  return false
}

export const make = (inbox: Inbox.Inbox): Router => {
  const routes = new Map<string, Array<Local>>()
  /** The delivery to `local`, pending: scheduled after the commit when it is new to it. */
  const receivedBy = (local: Local, entry: Inbox.Entry, event: Envelope.Envelope): Sql<() => void> =>
    Effect.map(inbox.deliver(local.name, entry), (fresh) => () => {
      // A message already there (a redelivery) is not run again.
      if (fresh()) local.schedule(event, entry.topic, entry.payload, true)
    })
  return {
    add: (topic, local) => routes.set(topic, [...(routes.get(topic) ?? []), local]),
    consumes: (topic) => routes.has(topic),
    route: ((topic: string, event: Envelope.Envelope, payload: string, inline = false, chained?: Chained, rolledBack?: Array<(cause: unknown) => void>): Sql<ReadonlyArray<() => void>, RunElsewhere> => {
      const locals = routes.get(topic) ?? noLocals
      // No consumer (a public event no local one takes): nothing to write, nothing made.
      if (locals.length === 0) return succeededNone
      const entry = { envelopeId: event.id, topic, key: event.key, payload }
      // Per event routed, only what its path uses (no closure made for the paths it does not take).
      if (chained !== undefined && anyChainsNow(locals, event.key)) return inTurn(chained, locals, event, topic, payload, (local) => receivedBy(local, entry, event))
      // Several consumers: one statement for all (each is scheduled if the message is new to it).
      if (locals.length > 1)
        return Effect.map(inbox.deliverAll(locals.map((l) => l.name), entry), (fresh) =>
          locals.map((local, i) => () => {
            // A consumer added twice runs it once (as its second delivery would find it there).
            if (fresh().has(local.name) && locals.findIndex((l) => l.name === local.name) === i) local.schedule(event, topic, payload, true)
          })
        )
      // None or one consumer (the common cases): without `forEach`'s loop around it.
      const one = locals[0]
      if (one === undefined) return succeededNone
      // One, announced by a processor (not inline): its delivery in the `map` of its write.
      if (!inline)
        return Effect.map(inbox.deliver(one.name, entry), (fresh) => [
          () => {
            if (fresh()) one.schedule(event, topic, payload, true)
          }
        ])
      const now = one.inline?.(event, topic, payload, rolledBack)
      // Run at once, its row written done; else (it did not run) received pending as any other.
      return Effect.map(now === undefined ? receivedBy(one, entry, event) : Effect.flatMap(now, (ran) => (ran === undefined ? receivedBy(one, entry, event) : Effect.succeed(ran))), (d) => [d])
    }) as Router["route"]
  }
}

/**
 * An event of a chain (`chained`) to its consumers (each once, in the order they were added): a
 * turn for each that can run events at once (run in its turn, past the chain's bounds received
 * pending then), received pending now by the others.
 */
const inTurn = (
  chained: Chained,
  locals: ReadonlyArray<Local>,
  event: Envelope.Envelope,
  topic: string,
  payload: string,
  received: (local: Local) => Sql<() => void>
): Sql<ReadonlyArray<() => void>> => {
  const { chain, depth } = chained
  /** Those received pending now (made only when there is one). */
  let now: Array<Local> | undefined
  // An index, not `entries()`: no iterator and no pair per consumer, per event of a chain.
  for (let i = 0; i < locals.length; i++) {
    const local = locals[i]!
    const run = local.chaining?.(event.key) === false ? undefined : local.chain
    if (locals.findIndex((l) => l.name === local.name) !== i) continue
    if (run === undefined) {
      ;(now ??= []).push(local)
      continue
    }
    chain.turns.push(
      Effect.suspend(() => {
        const ran = depth < maxDepth && chain.runs < maxRuns ? run(event, topic, payload, chained) : undefined
        if (ran === undefined) return Effect.map(received(local), (d) => [d])
        return Effect.flatMap(ran, (d) => {
          if (d === undefined) return Effect.map(received(local), (r) => [r])
          chain.runs++
          return Effect.succeed([d])
        })
      })
    )
  }
  return now === undefined ? succeededNone : Effect.forEach(now, received)
}
