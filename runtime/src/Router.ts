/**
 * In-process routing for the embedded broker: an event announced by a processor is written, in
 * the same transaction as the effects that announced it, to the inbox of every local processor
 * that consumes its topic, and to the outbox for the broker's broadcast to everyone else. No
 * internal hop crosses the broker, and no message is in flight outside a committed transaction.
 */
import type { Envelope } from "@baton/core"
import { Effect } from "effect"
import type { Inbox, Sql } from "@baton/store"
import type { RunElsewhere } from "./Decision.ts"

/**
 * Where an announced event stands in a chain of handlers run in one transaction (Consumer's
 * `chain`): `root`, the message whose transaction it is (a consumer whose run failed refuses
 * its next one, `Local.chain`), and how many handlers deep it is.
 */
export interface Chained {
  readonly root: string
  readonly depth: number
}

/** Handlers a chain runs in one transaction at most, one inside the other; the events of the last are queued. */
export const maxDepth = 16

export interface Local {
  readonly name: string
  /** Runs a message already committed to this consumer's inbox. */
  readonly schedule: (event: Envelope.Envelope, topic: string, payload: string) => void
  /**
   * Runs the message now, inside the transaction that receives it, writing its inbox row itself
   * (done, with its effects; Consumer's `inline`): what to run after the commit, or undefined
   * when it did not run and wrote nothing (it is then received and scheduled as any other, a
   * redelivery not). Undefined when it cannot run so (asked before anything is written).
   */
  readonly inline?: (event: Envelope.Envelope, topic: string, payload: string) => Sql<(() => void) | undefined> | undefined
  /**
   * An event a handler announced, run now inside the handler's transaction (Consumer's `chain`):
   * its inbox row written done with its effects; what to run after the commit, or undefined when
   * it did not run and wrote nothing (then received pending as any other). A failure fails the
   * transaction (`RunElsewhere`: it runs again, and the event, refused then, is queued).
   * Undefined when it cannot run so (asked before anything is written).
   */
  readonly chain?: ((event: Envelope.Envelope, topic: string, payload: string, at: Chained) => Sql<(() => void) | undefined, RunElsewhere> | undefined) | undefined
}

export interface Router {
  readonly add: (topic: string, local: Local) => void
  readonly consumes: (topic: string) => boolean
  /**
   * Records the message in the inbox of each local consumer of `topic`; call inside the
   * transaction. Returns the deliveries to run once it has committed. `inline` (the ingress): a
   * lone consumer that can run it at once (see `Local.inline`) runs it in that transaction.
   * `chained` (an event a handler announced, in its transaction): each consumer that can run it
   * at once (see `Local.chain`) runs it there, the others receive it pending, one consumer after
   * the other in the order they were added (a consumer's own later events see what it left pending).
   */
  readonly route: {
    (topic: string, event: Envelope.Envelope, payload: string, inline?: boolean): Sql<ReadonlyArray<() => void>>
    (topic: string, event: Envelope.Envelope, payload: string, inline: false, chained: Chained | undefined): Sql<ReadonlyArray<() => void>, RunElsewhere>
  }
}

const none: ReadonlyArray<() => void> = []

export const make = (inbox: Inbox.Inbox): Router => {
  const routes = new Map<string, Array<Local>>()
  return {
    add: (topic, local) => routes.set(topic, [...(routes.get(topic) ?? []), local]),
    consumes: (topic) => routes.has(topic),
    route: ((topic: string, event: Envelope.Envelope, payload: string, inline = false, chained?: Chained): Sql<ReadonlyArray<() => void>, RunElsewhere> => {
      const locals = routes.get(topic) ?? []
      const entry = { envelopeId: event.id, topic, key: event.key, payload }
      // Past the chain's depth, or where no consumer can run it at once: received pending, as by any other.
      const at = chained !== undefined && chained.depth < maxDepth && locals.some((l) => l.chain !== undefined) ? chained : undefined
      // Several consumers: one statement for all (each is scheduled if the message is new to it).
      if (locals.length > 1 && at === undefined)
        return Effect.map(inbox.deliverAll(locals.map((l) => l.name), entry), (fresh) =>
          locals.map((local, i) => () => {
            // A consumer added twice runs it once (as its second delivery would find it there).
            if (fresh().has(local.name) && locals.findIndex((l) => l.name === local.name) === i) local.schedule(event, topic, payload)
          })
        )
      const received = (local: Local) =>
        Effect.map(inbox.deliver(local.name, entry), (fresh) => () => {
          // A message already there (a redelivery) is not run again.
          if (fresh()) local.schedule(event, topic, payload)
        })
      const deliver = (local: Local): Sql<() => void, RunElsewhere> => {
        const now = inline ? local.inline?.(event, topic, payload) : at === undefined ? undefined : local.chain?.(event, topic, payload, at)
        // Run at once, its row written done; else (it did not run) received pending as any other.
        return now === undefined ? received(local) : Effect.flatMap(now, (ran) => (ran === undefined ? received(local) : Effect.succeed(ran)))
      }
      // None or one consumer (the common cases): without `forEach`'s loop around it.
      const one = locals[0]
      if (one === undefined) return Effect.succeed(none)
      // One, announced by a processor and not run at once: its delivery in the `map` of its write.
      if (!inline && at === undefined && locals.length === 1)
        return Effect.map(inbox.deliver(one.name, entry), (fresh) => [
          () => {
            if (fresh()) one.schedule(event, topic, payload)
          }
        ])
      if (locals.length === 1) return Effect.map(deliver(one), (d) => [d])
      // Each consumer in turn (a consumer added twice once): what one runs sees what those before it left pending.
      return Effect.forEach(
        locals.filter((l, i) => locals.findIndex((o) => o.name === l.name) === i),
        deliver
      )
    }) as Router["route"]
  }
}
