/**
 * In-process routing for the embedded broker: an event announced by a processor is written, in
 * the same transaction as the effects that announced it, to the inbox of every local processor
 * that consumes its topic, and to the outbox for the broker's broadcast to everyone else. No
 * internal hop crosses the broker, and no message is in flight outside a committed transaction.
 */
import type { Envelope } from "@baton/core"
import { Effect } from "effect"
import type { Inbox, Sql, Statement } from "@baton/store"

export interface Local {
  readonly name: string
  /** Runs a message already committed to this consumer's inbox. */
  readonly schedule: (event: Envelope.Envelope, topic: string, payload: string) => void
}

export interface Router {
  readonly add: (topic: string, local: Local) => void
  readonly consumes: (topic: string) => boolean
  /**
   * Records the message in the inbox of each local consumer of `topic`; call inside the
   * transaction. Returns the deliveries to run once it has committed.
   */
  readonly route: (topic: string, event: Envelope.Envelope, payload: string, alongside?: Statement) => Sql<ReadonlyArray<() => void>>
}

export const make = (inbox: Inbox.Inbox): Router => {
  const routes = new Map<string, Array<Local>>()
  return {
    add: (topic, local) => routes.set(topic, [...(routes.get(topic) ?? []), local]),
    consumes: (topic) => routes.has(topic),
    // One statement for all the topic's local consumers (carrying `alongside`: the event's outbox row).
    route: (topic, event, payload, alongside) => {
      const locals = routes.get(topic) ?? []
      return Effect.map(inbox.deliverAll(locals.map((l) => l.name), { envelopeId: event.id, topic, key: event.key, payload }, alongside), (fresh) =>
        locals.map((local, i) => () => {
          // A consumer listed twice runs the message once.
          if (fresh().has(local.name) && locals.findIndex((l) => l.name === local.name) === i) local.schedule(event, topic, payload)
        })
      )
    }
  }
}
