/**
 * What the PostgreSQL tests of `Consumer.chain` set up alike: a store on a fresh schema, as the
 * one instance of a cluster owning every partition, and consumers on it, each with two actors.
 */
import { Effect, Fiber } from "effect"
import { Log, type Processor } from "@baton/core"
import { Supervisor } from "@baton/actors"
import { Inbox, Outbox, Postgres, Rejections } from "@baton/store"
import { freshSchema } from "@baton/testkit/postgres"
import * as Cluster from "../src/Cluster.ts"
import * as Consumer from "../src/Consumer.ts"
import * as ErrorPath from "../src/ErrorPath.ts"
import * as Router from "../src/Router.ts"

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

/**
 * A consumer of `processor` on two actors of its own (their fibers in `h.fibers`), its outcomes
 * counted in `handled` (by `<name> <outcome>`), the cluster's `alone` as given.
 */
export const consumerOf = (h: Awaited<ReturnType<typeof alone>>, processor: Processor, round: string, handled: Map<string, number>, isAlone: () => boolean): Consumer.Consumer => {
  const actors = Array.from({ length: 2 }, (_, a) => Supervisor.make(h.system, `${processor.name}-${round}-${a}`, { maxAttempts: 3, initialDelayMs: 1, maxDelayMs: 5, factor: 2, maxRestarts: 1000, windowMs: 60_000 }))
  h.fibers.push(...actors.map((a) => Effect.runFork(a.run)))
  const name = processor.name
  const metrics = { handled: (outcome: string) => void handled.set(`${name} ${outcome}`, (handled.get(`${name} ${outcome}`) ?? 0) + 1), retried: () => {}, latency: () => {} }
  const cluster = { owns: () => true, holds: () => Effect.succeed(true), alone: isAlone }
  return Consumer.make({ processor, actors, store: h.store, inbox: h.inbox, outbox: h.outbox, reject: h.reject, poke: () => undefined, router: h.router, routePublic: true, logger: Log.silent, metrics, cluster })
}
