/**
 * What the PostgreSQL tests of `Consumer.chain` set up alike: a store on a fresh schema, as the
 * one instance of a cluster owning every partition, and consumers on it, each with two actors.
 */
import { Effect, Fiber } from "effect"
import { Log, type Envelope, type Processor } from "@baton/core"
import { Supervisor } from "@baton/actors"
import { Inbox, Outbox, Postgres, Rejections } from "@baton/store"
import { freshSchema } from "@baton/testkit/postgres"
import * as Cluster from "../src/Cluster.ts"
import * as Consumer from "../src/Consumer.ts"
import * as ErrorPath from "../src/ErrorPath.ts"
import * as Router from "../src/Router.ts"
import { settle } from "./settle.ts"

/** The store (its schema dropped by `cleanups`), its `effects` table as `effects` creates it, every partition this instance's. */
export const alone = async (partitions: number, cleanups: Array<() => Promise<void>>, effects: string) => {
  const schema = await freshSchema()
  cleanups.push(schema.drop)
  const store = await Postgres.open({ url: schema.url, poolSize: 6 })
  await store.migrate(Cluster.migrations)
  await store.transaction(store.query(effects).run())
  for (let part = 0; part < partitions; part++) await store.transaction(store.query("INSERT INTO cluster_partitions (part, owner, epoch) VALUES (?, 'me', 1)").run(part))
  const inbox = await Inbox.make(store, { partitions, guard: Cluster.inboxGuard("me") })
  const outbox = await Outbox.make(store)
  const reject = ErrorPath.make({ outbox, rejections: await Rejections.make(store), logger: Log.silent })
  return { store, inbox, outbox, reject, router: Router.make(inbox), system: Supervisor.system(), fibers: [] as Array<Fiber.Fiber<unknown, unknown>> }
}

export type Harness = Awaited<ReturnType<typeof alone>>

/** `p`, or a failure naming `what` after `ms`. */
export const within = <A>(p: Promise<A>, ms: number, what: string): Promise<A> =>
  Promise.race([p, new Promise<A>((_, reject) => setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms))])

/**
 * A consumer of `processor` on `actors` actors of its own (two by default; their fibers in
 * `h.fibers`), its outcomes counted in `handled` (by `<name> <outcome>`), chaining into the keys `owns` gives;
 * at most `maxScheduled` messages in memory (the Consumer's default when absent).
 */
export const consumerOf = (h: Harness, processor: Processor, round: string, handled: Map<string, number>, owns: (key: string) => boolean, actorCount = 2, maxScheduled?: number): Consumer.Consumer => {
  const actors = Array.from({ length: actorCount }, (_, a) => Supervisor.make(h.system, `${processor.name}-${round}-${a}`, { maxAttempts: 3, initialDelayMs: 1, maxDelayMs: 5, factor: 2, maxRestarts: 1000, windowMs: 60_000 }))
  h.fibers.push(...actors.map((a) => Effect.runFork(a.run)))
  const name = processor.name
  const metrics = { handled: (outcome: string) => void handled.set(`${name} ${outcome}`, (handled.get(`${name} ${outcome}`) ?? 0) + 1), retried: () => {}, latency: () => {} }
  const cluster = { owns, holds: () => Effect.succeed(true), chains: true }
  return Consumer.make({ processor, actors, store: h.store, inbox: h.inbox, outbox: h.outbox, reject: h.reject, poke: () => undefined, router: h.router, routePublic: true, logger: Log.silent, metrics, cluster, ...(maxScheduled === undefined ? {} : { maxScheduled }) })
}

/**
 * A consumer of each of `processors` (`consumerOf`), routed on its topics in `h.router`, by name;
 * `onChained`: told of each event a consumer ran in its sender's transaction (`Consumer.chain`).
 */
export const routedConsumers = (
  h: Harness,
  processors: ReadonlyArray<Processor>,
  round: string,
  handled: Map<string, number>,
  owns: (key: string) => boolean,
  options: { readonly actors?: number; readonly onChained?: (event: Envelope.Envelope) => void } = {}
): Map<string, Consumer.Consumer> => {
  const consumers = new Map<string, Consumer.Consumer>()
  for (const processor of processors) {
    const consumer = consumerOf(h, processor, round, handled, owns, options.actors)
    consumers.set(processor.name, consumer)
    const chain = consumer.chain
    const onChained = options.onChained
    const local: Router.Local = {
      name: processor.name,
      schedule: consumer.schedule,
      chaining: consumer.chaining,
      chain:
        chain === undefined || onChained === undefined
          ? chain
          : (event, topic, payload, at) =>
              chain(event, topic, payload, at)?.pipe(
                Effect.map((ran) => {
                  if (ran !== undefined) onChained(event)
                  return ran
                })
              )
    }
    for (const topic of processor.topics ?? []) h.router.add(topic, local)
  }
  return consumers
}

/** Ends a round: its actors' fibers interrupted, its pool's connections given back at once (rounds would run the server out of them). */
export const closeHarness = async (h: Harness): Promise<void> => {
  for (const f of h.fibers) await Effect.runPromise(Fiber.interrupt(f))
  await h.store.close()
}

/** Envelopes of round `round`, numbered in order: `eventOf(key, data)`. */
export const eventsOf = (round: string) => {
  let n = 0
  return (key: string, data: unknown = {}): Envelope.Envelope => {
    const id = `${round}-${++n}`
    return { id, type: "x", correlationId: id, causationId: id, key, occurredAt: new Date().toISOString(), data }
  }
}

/**
 * Resolves once every consumer is idle and nothing is pending in the inbox; `stalled`: run when
 * something is pending and no consumer has a message in flight (a recovery, say), before waiting again;
 * fails naming the rows when they stay pending with nothing in flight (`settle.ts`).
 */
export const settled = (h: Harness, consumers: ReadonlyMap<string, Consumer.Consumer>, stalled?: () => Promise<unknown>): Promise<void> =>
  settle(h.store, consumers.values(), stalled === undefined ? {} : { stalled })

/** Messages from outside, received in one transaction and scheduled at once (their groups may hold several). */
export const arriving = (h: Harness) => async (messages: ReadonlyArray<readonly [topic: string, event: Envelope.Envelope]>) => {
  const deliveries = await h.store.transaction(Effect.forEach(messages, ([topic, event]) => h.router.route(topic, event, JSON.stringify(event))))
  return Promise.all(deliveries.flat().map((d) => Promise.resolve(d())))
}
