/**
 * The composition root: one layer per part (runtime/src/layers), built in dependency order, so
 * that closing the scope shuts down in reverse: stop consuming, finish what is in flight, flush the
 * outbox, stop actors, close the HTTP port and the broker, the store last.
 *
 *   Settings -> Store -> Tracing -> Ownership (single, or a cluster member on PostgreSQL) -> Queues
 *   -> Apps -> Mediation -> Ingress (and the router) -> Broker -> Relay -> ProcessorHost -> Http -> Consuming
 *   -> Housekeeping
 */
import { Context, Deferred, Effect, Exit, Layer, Scope } from "effect"
import { Log, type App, type AppModule, type Envelope, type Processor } from "@baton/core"
import type { Policy, Supervisor } from "@baton/actors"
import type { Store } from "@baton/store"
import type { Config } from "./Config.ts"
import * as Apps from "./layers/Apps.ts"
import * as Broker from "./layers/Broker.ts"
import * as Consuming from "./layers/Consuming.ts"
import * as Housekeeping from "./layers/Housekeeping.ts"
import * as Http from "./layers/Http.ts"
import * as Ingress from "./layers/Ingress.ts"
import * as Mediation from "./layers/Mediation.ts"
import * as Ownership from "./layers/Ownership.ts"
import * as ProcessorHost from "./layers/ProcessorHost.ts"
import * as Queues from "./layers/Queues.ts"
import * as Relay from "./layers/Relay.ts"
import * as Settings from "./layers/Settings.ts"
import * as StoreLayer from "./layers/Store.ts"

export interface Options {
  readonly logger?: Log.Logger
  /** The apps to run; the order-entry app by default. */
  readonly apps?: (deps: { readonly store: Store; readonly config: Config }) => ReadonlyArray<App | AppModule> | Promise<ReadonlyArray<App | AppModule>>
  /** The apps' clock (their context's `clock`: the times and ids they make); the system's when absent. */
  readonly clock?: Envelope.Clock
  /** The environment the apps read their own settings from (`BATON_SMTP_URL`, ...); the process's when absent. */
  readonly env?: Readonly<Record<string, string | undefined>>
  /** Extra processors beside the apps' (they subscribe to existing events). */
  readonly processors?: (deps: { readonly store: Store }) => ReadonlyArray<Processor>
  readonly policy?: Partial<Policy.Policy>
  /** Test hook: runs before each input of a domain mediator; a throw crashes that mediator. */
  readonly mediatorFault?: (domain: string) => void
}

export interface Runtime {
  readonly mqttPort: number | undefined
  readonly wsPort: number | undefined
  readonly httpPort: number
  readonly store: Store
  readonly actors: ReadonlyArray<Supervisor.Supervised>
  /** Client ids of the runtime's persistent broker sessions (an external broker keeps them). */
  readonly sessions: ReadonlyArray<string>
  /**
   * Resolves once this runtime has nothing left to do with what it has been given, all at once:
   * - the ingress: every initiating event it acknowledged is forwarded (a forward scheduled,
   *   running, or due again after a failure is waited for);
   * - every consumer: nothing in flight, no read of its inbox's backlog under way, no batch of its
   *   broker session being committed; so no inbox row pending (but one whose recording failed, and
   *   the messages of a processor held up, which it waits for);
   * - the relay: no drain running, no retry due, and what it sent deleted from the outbox (SQLite's
   *   deferred delete run now): the outbox empty, unless publishing keeps failing (then it waits).
   * It does not cover what is outside the runtime or not yet given to it: on an external broker,
   * messages on the wire or queued in the broker (a published event on its way back to a
   * consumer's session, an initiating event not yet delivered to the ingress); a publish not yet
   * acknowledged; subscribers' receipt; timers of the apps (a mediator's timeout), another cluster
   * instance's work, and a housekeeping sweep. Called while messages keep arriving, it may resolve
   * between two of them.
   */
  readonly idle: () => Promise<void>
  /** Fails when a supervisor gives up (restart limit exceeded): the runtime must stop. */
  readonly fatal: Effect.Effect<never, Supervisor.RestartLimitExceeded>
}

/** Every part, each built on those before it (`provideMerge`: what is provided is built first). */
export const layer = (config: Config, options: Options, logger: Log.Logger) =>
  Housekeeping.layer.pipe(
    Layer.provideMerge(Consuming.layer),
    Layer.provideMerge(Http.layer),
    Layer.provideMerge(ProcessorHost.layer),
    Layer.provideMerge(Relay.layer),
    Layer.provideMerge(Broker.layer),
    Layer.provideMerge(Ingress.layer),
    Layer.provideMerge(Mediation.layer),
    Layer.provideMerge(Apps.layer),
    Layer.provideMerge(Queues.layer),
    Layer.provideMerge(Ownership.layer),
    Layer.provideMerge(StoreLayer.tracing),
    Layer.provideMerge(StoreLayer.layer),
    Layer.provideMerge(Settings.layer(config, options, logger))
  )

export const make = (config: Config, options: Options = {}) =>
  Effect.gen(function* () {
    // Card numbers are masked in every line, whichever part of the runtime writes it.
    const logger = Log.masked(options.logger ?? Log.console)
    logger.log("info", "runtime starting", { pid: process.pid, node: process.version, topology: config.topology, durable: config.durable })
    const parts = yield* Layer.build(layer(config, options, logger))
    const { lifecycle } = Context.get(parts, Settings.Settings)
    const store = Context.get(parts, StoreLayer.Store)
    const host = Context.get(parts, ProcessorHost.ProcessorHost)
    const { face } = Context.get(parts, Broker.Broker)
    const { broken } = Context.get(parts, Ingress.Ingress)
    const http = Context.get(parts, Http.Http)
    const { sessions } = Context.get(parts, Consuming.Consuming)

    // Added last, so it runs first on shutdown: health turns 503 before anything closes.
    yield* Effect.addFinalizer(() => Effect.sync(() => { lifecycle.phase = "stopping"; logger.log("info", "runtime stopping") }))
    lifecycle.phase = "ready"
    logger.log("info", "runtime ready", { processors: host.processors.length, http: http.port, mqtt: face?.mqttPort, ws: face?.wsPort })

    const runtime: Runtime = {
      mqttPort: face?.mqttPort,
      wsPort: face?.wsPort,
      httpPort: http.port,
      store,
      actors: host.actors,
      sessions,
      idle: host.idle,
      // A hand-over out of order is a defect (Ingress.ts, `HandoverOutOfOrder`): the runtime ends with it.
      fatal: Effect.raceFirst(Deferred.await(host.fatal), Deferred.await(broken))
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
