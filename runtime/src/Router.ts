/**
 * In-process routing for the embedded broker: an event announced by a processor is written, in
 * the same transaction as the effects that announced it, to the inbox of every local processor
 * that consumes its topic, and to the outbox for the broker's broadcast to everyone else. No
 * internal hop crosses the broker, and no message is in flight outside a committed transaction.
 */
import type { Envelope } from "@baton/core"
import { Effect } from "effect"
import type { Inbox, Sql } from "@baton/store"

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
}

export interface Router {
  readonly add: (topic: string, local: Local) => void
  readonly consumes: (topic: string) => boolean
  /**
   * Records the message in the inbox of each local consumer of `topic`; call inside the
   * transaction. Returns the deliveries to run once it has committed. `inline` (the ingress): a
   * lone consumer that can run it at once (see `Local.inline`) runs it in that transaction.
   */
  readonly route: (topic: string, event: Envelope.Envelope, payload: string, inline?: boolean) => Sql<ReadonlyArray<() => void>>
}

const none: ReadonlyArray<() => void> = []

export const make = (inbox: Inbox.Inbox): Router => {
  const routes = new Map<string, Array<Local>>()
  return {
    add: (topic, local) => routes.set(topic, [...(routes.get(topic) ?? []), local]),
    consumes: (topic) => routes.has(topic),
    route: (topic, event, payload, inline = false) => {
      const locals = routes.get(topic) ?? []
      const entry = { envelopeId: event.id, topic, key: event.key, payload }
      // Several consumers: one statement for all (each is scheduled if the message is new to it).
      if (locals.length > 1)
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
      const deliver = (local: Local) => {
        const now = inline ? local.inline?.(event, topic, payload) : undefined
        // Run at once, its row written done; else (it did not run) received pending as any other.
        return now === undefined ? received(local) : Effect.flatMap(now, (ran) => (ran === undefined ? received(local) : Effect.succeed(ran)))
      }
      // None or one consumer (the common cases): without `forEach`'s loop around it.
      const one = locals[0]
      if (one === undefined) return Effect.succeed(none)
      // One, announced by a processor (not inline): its delivery in the `map` of its write.
      if (!inline && locals.length === 1)
        return Effect.map(inbox.deliver(one.name, entry), (fresh) => [
          () => {
            if (fresh()) one.schedule(event, topic, payload)
          }
        ])
      return locals.length === 1 ? Effect.map(deliver(one), (d) => [d]) : Effect.forEach(locals, deliver)
    }
  }
}
