/**
 * The composition root: store, broker (embedded or external), apps, one supervised actor and one
 * broker session per processor, the ingress, and the HTTP port. Resources are scoped, so closing
 * the scope shuts down in reverse order: stop consuming, stop actors, close broker, store last.
 */
import { join } from "node:path"
import { Deferred, Effect, Exit, Scope } from "effect"
import { Log, Topics, type App, type Broker, type Processor } from "@baton/core"
import { Policy, Supervisor } from "@baton/actors"
import { EmbeddedBroker } from "@baton/broker-aedes"
import { MqttBroker } from "@baton/broker-mqtt"
import { Rejections, Sqlite, type Store } from "@baton/store"
import * as OrderEntry from "@baton/order-entry"
import type { Config } from "./Config.ts"
import * as ErrorPath from "./ErrorPath.ts"
import * as Host from "./Host.ts"
import * as Http from "./Http.ts"
import * as Ingress from "./Ingress.ts"

export interface Options {
  readonly logger?: Log.Logger
  /** The apps to run; the order-entry app by default. */
  readonly apps?: (deps: { readonly store: Store; readonly config: Config }) => ReadonlyArray<App>
  /** Extra processors beside the apps' (they subscribe to existing events). */
  readonly processors?: (deps: { readonly store: Store }) => ReadonlyArray<Processor>
  readonly policy?: Partial<Policy.Policy>
}

export interface Runtime {
  readonly mqttPort: number | undefined
  readonly wsPort: number | undefined
  readonly httpPort: number
  readonly broker: Broker
  readonly store: Store
  readonly actors: ReadonlyArray<Supervisor.Supervised>
  /** Fails when a supervisor gives up (restart limit exceeded): the runtime must stop. */
  readonly fatal: Effect.Effect<never, Supervisor.RestartLimitExceeded>
}

const defaultApps = (deps: { readonly store: Store; readonly config: Config }): ReadonlyArray<App> => [
  OrderEntry.make({ store: deps.store, mailer: OrderEntry.Mailer.make({ smtpUrl: deps.config.smtpUrl }) })
]

const promise = <A>(f: () => Promise<A>) => Effect.tryPromise({ try: f, catch: (e) => e as Error })

export const make = (config: Config, options: Options = {}) =>
  Effect.gen(function* () {
    const logger = options.logger ?? Log.console
    let phase: Http.Phase = "starting"
    logger.log("info", "runtime starting", { pid: process.pid, node: process.version, topology: "broker" })

    const storePath = join(config.dataDir, "baton.db")
    const store = yield* Effect.acquireRelease(
      Effect.sync(() => Sqlite.open({ path: storePath })),
      (s) => Effect.sync(() => { s.close(); logger.log("info", "store closed") })
    )
    logger.log("info", "store opened", { path: storePath })
    const rejections = Rejections.make(store)

    const embedded =
      config.brokerUrl === undefined
        ? yield* Effect.acquireRelease(
            promise(() =>
              EmbeddedBroker.start({
                host: config.host,
                mqttPort: config.mqttPort,
                ...(config.wsPort === undefined ? {} : { wsPort: config.wsPort }),
                logger
              })
            ),
            (b) => Effect.promise(() => b.close()).pipe(Effect.tap(() => Effect.sync(() => logger.log("info", "broker stopped"))))
          )
        : undefined
    if (embedded !== undefined)
      logger.log("info", "broker listening", { mqtt: `${embedded.host}:${embedded.mqttPort}`, ws: embedded.wsPort === undefined ? "off" : `${embedded.host}:${embedded.wsPort}` })

    const broker = yield* Effect.acquireRelease(
      promise(() =>
        MqttBroker.make({
          clientPrefix: `${config.instance}.`,
          logger,
          ...(embedded === undefined ? { url: config.brokerUrl ?? "" } : { stream: embedded.connect })
        })
      ),
      (b) => Effect.promise(() => b.close())
    )
    logger.log("info", "broker connected", { broker: embedded === undefined ? config.brokerUrl : "embedded" })

    const http = yield* Effect.acquireRelease(
      promise(() =>
        Http.start({
          host: config.host,
          port: config.httpPort,
          rejections,
          status: { phase: () => phase, detail: () => ({ processors: actors.map((a) => ({ name: a.name, restarts: a.restarts() })) }) }
        })
      ),
      (h) => Effect.promise(() => h.close())
    )
    logger.log("info", "http listening", { address: `${config.host}:${http.port}` })

    const apps = (options.apps ?? defaultApps)({ store, config })
    const processors = [...apps.flatMap((a) => a.processors), ...(options.processors?.({ store }) ?? [])]
    const contracts = Ingress.contractsOf(apps)
    const topicOf = Host.topicOf(new Set(contracts.keys()))
    const reject = ErrorPath.make({ broker, rejections, logger })
    const policy: Policy.Policy = { ...Policy.defaults, maxAttempts: config.maxAttempts, initialDelayMs: config.restartDelayMs, ...options.policy }

    const fatal = yield* Deferred.make<never, Supervisor.RestartLimitExceeded>()
    const system = Supervisor.system()
    const actors: Array<Supervisor.Supervised> = []
    for (const processor of processors) {
      const actor = Supervisor.make(system, processor.name, policy, {
        onCrash: ({ actor, error, attempt, delayMs }) =>
          logger.log("warn", "processor crashed", { processor: actor, attempt, "restart-in-ms": delayMs, reason: error instanceof Error ? error.message : String(error) }),
        onRestart: ({ actor, incarnation }) => logger.log("info", "processor restarted", { processor: actor, incarnation })
      })
      actors.push(actor)
      yield* Effect.forkScoped(
        actor.run.pipe(
          Effect.catch((error) =>
            Effect.sync(() => logger.log("error", "processor gave up", { processor: actor.name, reason: error.message })).pipe(
              Effect.andThen(Deferred.fail(fatal, error))
            )
          )
        )
      )
      const topics = processor.consumes.map(topicOf)
      yield* Effect.acquireRelease(
        promise(() =>
          broker.subscribe({ clientId: processor.name, topics }, Host.handler({ processor, actor, broker, reject, logger }))
        ),
        (s) => Effect.promise(() => s.close())
      )
      logger.log("info", "processor started", { processor: processor.name, topics: topics.join(",") })
    }

    yield* Effect.acquireRelease(
      promise(() =>
        broker.subscribe(
          { clientId: "ingress", topics: [Topics.allInitiating] },
          Ingress.handler({ contracts, maxPayloadBytes: config.maxPayloadBytes, publish: (t, p) => broker.publish(t, p, 1), reject })
        )
      ),
      (s) => Effect.promise(() => s.close())
    )
    logger.log("info", "ingress started", { topics: [...contracts.keys()].map(Topics.initiate).join(",") })

    // Added last, so it runs first on shutdown: health turns 503 before anything closes.
    yield* Effect.addFinalizer(() => Effect.sync(() => { phase = "stopping"; logger.log("info", "runtime stopping") }))
    phase = "ready"
    logger.log("info", "runtime ready", { processors: processors.length, http: http.port, mqtt: embedded?.mqttPort, ws: embedded?.wsPort })

    const runtime: Runtime = {
      mqttPort: embedded?.mqttPort,
      wsPort: embedded?.wsPort,
      httpPort: http.port,
      broker,
      store,
      actors,
      fatal: Deferred.await(fatal)
    }
    return runtime
  })

/** Starts a runtime outside Effect (tests, embedding); `stop` shuts it down gracefully. */
export const start = async (config: Config, options: Options = {}): Promise<Runtime & { readonly stop: () => Promise<void> }> => {
  const scope = Scope.makeUnsafe()
  try {
    const runtime = await Effect.runPromise(Scope.provide(scope)(make(config, options)))
    let stopping: Promise<void> | undefined
    return { ...runtime, stop: () => (stopping ??= Effect.runPromise(Scope.close(scope, Exit.void))) }
  } catch (error) {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    throw error
  }
}

