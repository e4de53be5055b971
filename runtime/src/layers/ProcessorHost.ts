/**
 * The processors and what runs them: the apps' processors (behind their domain mediators in the
 * mediator topology, Mediation.ts), the workflow processor of parked keys, a pool of supervised
 * actors per processor, a consumer per processor (Consumer.ts) and their routes on the router
 * (Ingress.ts). The metrics count per processor here. Consuming
 * starts later (Consuming.ts); the actors stop when the runtime's scope closes, once consuming
 * stopped and what was in flight finished.
 */
import { Envelope, Log, Topics, type App, type Processor, type Repair } from "@baton/core"
import { Policy, Supervisor } from "@baton/actors"
import { Mediator, type WorkflowStore } from "@baton/mediator"
import { Parking, ParkingPolicy, WorkflowProcessor } from "@baton/repair"
import { Context, Deferred, Effect, Layer } from "effect"
import * as Consumer from "../Consumer.ts"
import * as Observability from "../Observability.ts"
import { Apps } from "./Apps.ts"
import { Broker } from "./Broker.ts"
import { Ingress } from "./Ingress.ts"
import { Mediation } from "./Mediation.ts"
import { Ownership } from "./Ownership.ts"
import { Queues } from "./Queues.ts"
import { Relay } from "./Relay.ts"
import { promise, Settings } from "./Settings.ts"
import { Store, Tracing } from "./Store.ts"

export interface Hosted {
  readonly processor: Processor
  readonly pool: ReadonlyArray<Supervisor.Supervised>
  readonly consumer: Consumer.Consumer
}

export interface Shape {
  readonly processors: ReadonlyArray<Processor>
  readonly consumers: ReadonlyArray<Hosted>
  /** The consumer of a processor, by name. */
  readonly consumer: (name: string) => Consumer.Consumer | undefined
  readonly actors: ReadonlyArray<Supervisor.Supervised>
  /** The topics a processor consumes (its resubmissions too, when it parks). */
  readonly topicsOf: (p: Processor) => ReadonlyArray<string>
  readonly workflowStore: WorkflowStore.WorkflowStore | undefined
  readonly domains: ReadonlyArray<Mediator.Domain>
  readonly workflows: NonNullable<App["mediation"]>["workflows"]
  readonly parking: Parking.Parking | undefined
  readonly repairs: WorkflowProcessor.WorkflowProcessor | undefined
  readonly metrics: Observability.Metrics
  /** `Runtime.idle`: the ingress, every consumer and the relay idle at once. */
  readonly idle: () => Promise<void>
  /** Fails when a supervisor gives up (restart limit exceeded). */
  readonly fatal: Deferred.Deferred<never, Supervisor.RestartLimitExceeded>
}

export class ProcessorHost extends Context.Service<ProcessorHost, Shape>()("baton/runtime/ProcessorHost") {}

export const layer = Layer.effect(
  ProcessorHost,
  Effect.gen(function* () {
    const { config, options, logger } = yield* Settings
    const store = yield* Store
    const tracing = yield* Tracing
    const ownership = yield* Ownership
    const { inbox, outbox } = yield* Queues
    const { apps, mask, reject, contracts } = yield* Apps
    const { ingress, router, routePublic } = yield* Ingress
    const { face, spin } = yield* Broker
    const { relay, tap } = yield* Relay
    const consumers: Array<Hosted> = []
    const consumer = (name: string) => consumers.find((c) => c.processor.name === name)?.consumer

    const extra = options.processors?.({ store }) ?? []
    const { mediated, workflowStore, workflows, domains, rules, simpleTypes } = yield* Mediation
    const hosted = [...apps.flatMap((a) => (mediated.includes(a) ? a.processors.map(Mediator.channel) : a.processors)), ...extra]
    // The workflow event pattern, for processors that park the keys of failed messages.
    const parking = hosted.some((p) => p.onFailure === "park") ? yield* promise(() => Parking.make(store)) : undefined
    const parkingLimits: WorkflowProcessor.Limits = { maxParked: config.parkMaxCount, maxHeldMs: config.parkMaxAgeMs }
    const parkingPolicy = parking === undefined ? undefined : ParkingPolicy.make(parking, logger, parkingLimits)
    const repairs =
      parking === undefined
        ? undefined
        : yield* promise(() =>
            WorkflowProcessor.make({
              store,
              parking,
              outbox,
              repairs: Object.assign({}, ...apps.map((a) => a.repairs ?? {})) as Readonly<Record<string, Repair>>,
              limits: parkingLimits,
              logger,
              route: (topic, envelope, payload) => router.route(topic, envelope, payload),
              schedule: (name, parked) => void consumer(name)?.schedule(JSON.parse(parked.payload) as Envelope.Envelope, parked.topic, parked.payload),
              poke: () => relay.poke()
            })
          )
    const processors: ReadonlyArray<Processor> = [
      ...(mediated.length === 0 ? [] : [Mediator.simple(rules, workflows, simpleTypes), ...domains.map((d) => d.processor)]),
      ...hosted,
      ...(repairs === undefined ? [] : [repairs.processor])
    ]

    const metrics = Observability.makeMetrics({
      store,
      flushOutbox: outbox.flush,
      gauges: { inFlight: () => consumers.map((c) => [c.processor.name, c.consumer.inFlight()] as const), connections: () => face?.connections(), frontBacklog: () => face?.backlog?.(), idleSpin: spin },
      tables: () => ({ parking: parking !== undefined, dashboard: repairs !== undefined, workflows: workflowStore !== undefined })
    })
    const actors: Array<Supervisor.Supervised> = []
    const policy: Policy.Policy = { ...Policy.defaults, maxAttempts: config.maxAttempts, initialDelayMs: config.restartDelayMs, ...options.policy }
    const fatal = yield* Deferred.make<never, Supervisor.RestartLimitExceeded>()
    const system = Supervisor.system()
    const topicOf = Consumer.topicOf(new Set(contracts.keys()))
    const topicsOf = (p: Processor): ReadonlyArray<string> => [...(p.topics ?? p.consumes.map(topicOf)), ...(p.onFailure === "park" ? [Topics.resubmit(p.name)] : [])]

    const tenure = ownership.tenure
    const acquiring = ownership.acquiring
    for (const processor of processors) {
      const pool = Array.from({ length: Math.max(config.partitions, processor.actors ?? 0) }, (_, i) =>
        Supervisor.make(system, `${processor.name}-${i}`, policy, {
          onCrash: ({ actor, error, attempt, delayMs }) =>
            logger.log("warn", "processor crashed", { processor: actor, attempt, "restart-in-ms": delayMs, reason: Log.reason(error) }),
          onRestart: ({ actor, incarnation }) => logger.log("info", "processor restarted", { processor: actor, incarnation })
        })
      )
      for (const actor of pool) {
        actors.push(actor)
        yield* Effect.forkScoped(
          actor.run.pipe(
            Effect.catch((error) =>
              Effect.sync(() => logger.log("error", "processor gave up", { processor: actor.name, reason: error.message })).pipe(Effect.andThen(Deferred.fail(fatal, error)))
            )
          )
        )
      }
      const consumer = Consumer.make({
        processor,
        actors: pool,
        store,
        inbox,
        outbox,
        reject,
        poke: relay.poke,
        // Alone, a handler's outbox entries are offered to the relay after its commit; a cluster's
        // instances share the outbox (adopted entries, numbers taken by other instances): poked.
        ...(ownership.clustered ? {} : { offer: relay.offer }),
        logger,
        router,
        routePublic,
        ...(face === undefined ? {} : { audience: { wanted: (topic: string) => face.wanted(topic) ?? true, unsent: tap.record } }),
        parking: parkingPolicy,
        mask,
        metrics: metrics.processor(processor.name),
        tracing,
        maxScheduled: config.maxScheduled,
        cluster: {
          owns: (key: string) => ownership.owns(ownership.partOf(key)),
          holds: (key: string) => ownership.holds(ownership.partOf(key)),
          // Consumer's `chain` on PostgreSQL: into the keys this instance owns (alone, every one).
          chains: true,
          ...(tenure === undefined ? {} : { tenure: (key: string) => tenure(ownership.partOf(key)) }),
          ...(acquiring === undefined ? {} : { acquiring: (key: string) => acquiring(ownership.partOf(key)) })
        }
      })
      for (const topic of topicsOf(processor)) if (routePublic || Topics.isInternal(topic)) router.add(topic, { name: processor.name, schedule: consumer.schedule, inline: consumer.inline, chain: consumer.chain, chaining: consumer.chaining })
      consumers.push({ processor, pool, consumer })
    }
    for (const d of domains) {
      // A command whose channel can run it at once runs in the mediator's transaction (Consumer's `call`).
      d.connect((channel) => consumers.find((c) => c.processor.name === channel)?.consumer.call)
      const consumer = consumers.find((c) => c.processor === d.processor)!.consumer
      const topic = Topics.mediator(d.domain)
      // Timeouts and restarts are inputs like acknowledgements: committed to the queue, then run.
      d.attach((event) => {
        const payload = Envelope.encode(event)
        return store
          .transaction(inbox.receive(d.processor.name, { envelopeId: event.id, topic, key: event.key, payload }))
          .then((fresh) => (fresh ? consumer.schedule(event, topic, payload) : undefined))
      })
    }

    // Until the ingress and every consumer are idle at once: one that finishes after another's
    // wait resolved may have handed that one a message meanwhile (the ingress forwards to the
    // consumers; a consumer's event, through the router, to another).
    const idle = async () => {
      do {
        await ingress.idle()
        await Promise.all(consumers.map((c) => c.consumer.idle()))
        await relay.idle()
      } while (ingress.busy() || consumers.some((c) => c.consumer.busy()) || relay.busy())
    }
    return { processors, consumers, consumer, actors, topicsOf, workflowStore, domains, workflows, parking, repairs, metrics, idle, fatal } satisfies Shape
  })
)
