/**
 * The broker: the embedded one (Aedes, behind the security guard, acknowledging an initiating
 * event once the ingress logged it) or an external one, where every processor and the ingress get
 * their own MQTT session. With them, who may connect: the users file (reloaded when it changes),
 * the limits, and TLS, which the HTTP port shares. The other layers reach the embedded broker
 * through its face (`Face`), never the broker itself, so that it can move to a thread of its own.
 */
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { Users } from "@baton/auth"
import { EmbeddedBroker } from "@baton/broker-aedes"
import { MqttBroker } from "@baton/broker-mqtt"
import { IdleSpin, payloadPreviewBytes, Topics, type Broker as Port } from "@baton/core"
import { FrontLog, isUnavailable } from "@baton/store"
import { Context, Deferred, Effect, Exit, Layer } from "effect"
import type { Config } from "../Config.ts"
import * as Front from "../front/Front.ts"
import * as Security from "../Security.ts"
import { Ingress } from "./Ingress.ts"
import { Ownership } from "./Ownership.ts"
import { promise, Settings } from "./Settings.ts"

/**
 * The runtime's own broker as the other layers see it: the embedded one today, a front thread's
 * later (docs/front-thread.md 2, 4.3, 9). What the front will answer across its port is async
 * already (`connections`, `counts`); `wanted` and `hasSubscribers` stay synchronous (asked inside a
 * transaction for each announced event), which a mirror of the filters can answer.
 */
export interface Face {
  readonly host: string
  readonly mqttPort: number
  readonly wsPort: number | undefined
  readonly publish: Port["publish"]
  /** `EmbeddedBroker.wanted`: yes for nobody allowed, never no for somebody; undefined when not known. */
  readonly wanted: (topic: string) => boolean | undefined
  readonly hasSubscribers: (topic: string) => boolean | undefined
  /** Clients connected now (`/metrics`). */
  readonly connections: () => Promise<number>
  /** The guard's refusals by kind (`GET /errors`). */
  readonly counts: () => Promise<Readonly<Record<string, number>>>
  /** Initiating events the front thread committed and main has not forwarded yet (`/metrics`); absent without one. */
  readonly backlog?: () => Promise<number>
  /** A client's subscriptions on the broker now (tests, operations). */
  readonly subscriptions: (clientId: string) => Promise<ReadonlyArray<string>>
}

export interface Shape {
  /** The embedded broker; undefined with an external one. */
  readonly face: Face | undefined
  readonly external: Awaited<ReturnType<typeof MqttBroker.make>> | undefined
  readonly publish: Port["publish"]
  readonly security: ReturnType<typeof Security.make>
  /** The users file in force (undefined: authentication off; a reload never unsets it). */
  readonly users: () => Users.File | undefined
  readonly tls: { readonly cert: Buffer; readonly key: Buffer } | undefined
  /** Main's loop polling for a requester's next request after a reply (`BATON_IDLE_SPIN_US`; `IdleSpin.off` at 0). */
  readonly spin: IdleSpin.IdleSpin
}

export class Broker extends Context.Service<Broker, Shape>()("baton/runtime/Broker") {}

const sessionsOf = (config: Config): EmbeddedBroker.Sessions =>
  !config.durable
    ? { kind: "memory" }
    : config.redisUrl !== undefined
      ? { kind: "redis", url: config.redisUrl, cluster: config.databaseUrl !== undefined }
      : { kind: "disk", dir: join(config.dataDir, "sessions") }

export const layer = Layer.effect(
  Broker,
  Effect.gen(function* () {
    const { config, logger } = yield* Settings
    const { ingress, front: frontLog, broken } = yield* Ingress
    const ownership = yield* Ownership
    // The users file is read at start (a bad one stops the start), then again whenever it changes.
    let users = config.authFile === undefined ? undefined : Users.load(config.authFile)
    const usersLoaded = (file: Users.File, event: string) => {
      logger.log("info", event, { file: config.authFile, users: Object.keys(file.users).length, tokens: Object.keys(file.tokens).length })
      const old = Users.scryptTokens(file)
      if (old.length > 0)
        logger.log("warn", "HTTP tokens hashed with scrypt: they work, but replace them ('pnpm baton token add <user>', then 'pnpm baton token remove <id>')", { tokens: old.join(",") })
    }
    if (users === undefined) logger.log("warn", "no BATON_AUTH_FILE: anonymous clients allowed, on loopback only, with the client role; HTTP open to local users", { host: config.host })
    else {
      usersLoaded(users, "authentication on")
      const watcher = Users.watch(config.authFile!, {
        intervalMs: config.authReloadMs,
        changed: (file) => {
          users = file
          front?.users(file)
          usersLoaded(file, "users file reloaded")
        },
        failed: (error) => logger.log("error", "users file not reloaded, the previous version stays in force", { reason: error.message })
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => watcher.close()))
    }
    const limits: Security.Limits = {
      maxPayloadBytes: config.maxPayloadBytes,
      maxConnections: config.maxConnections,
      publishRate: config.publishRate,
      maxTopicDepth: config.maxTopicDepth,
      maxClientIdLength: config.maxClientIdLength,
      maxInflight: config.maxInflight
    }
    // With the front thread, the guard that runs is the front's (its counts answered across the port).
    const security = Security.make({ users: () => users, logger, limits })
    const tls = config.tls === undefined ? undefined : { cert: readFileSync(config.tls.certFile), key: readFileSync(config.tls.keyFile) }
    // After a reply, the loop polls for `idleSpinUs` for the requester's next request instead of
    // blocking at once: waking a halted CPU costs more than a request-reply's work (IdleSpin.ts).
    // Clients' data (the front's messages with the front thread) extend it while it runs.
    const spin = config.idleSpinUs > 0 ? IdleSpin.make({ windowUs: config.idleSpinUs }) : IdleSpin.off
    yield* Effect.addFinalizer(() => Effect.sync(() => spin.stop()))

    // `BATON_FRONT=thread`: the broker, its guard and the front's log on a worker thread of their own.
    let front: Front.Front | undefined
    if (config.front === "thread" && config.brokerUrl === undefined && frontLog !== undefined) {
      const handed = users
      front = yield* Effect.acquireRelease(
        promise(() =>
          Front.start({
            start: {
              host: config.host,
              mqttPort: config.mqttPort,
              wsPort: config.wsPort,
              tls,
              sessions: sessionsOf(config),
              drainTimeoutMs: config.drainTimeoutMs,
              limits,
              users: handed,
              path: FrontLog.pathIn(config.dataDir),
              durable: config.durable,
              previewBytes: payloadPreviewBytes,
              mark: frontLog.mark,
              backlog: config.frontBacklog,
              logLevel: config.logLevel,
              idleSpinUs: config.idleSpinUs
            },
            logger,
            onActivity: spin.seen,
            accepted: () => ingress.pokeNow(),
            fatal: (error) => Deferred.doneUnsafe(broken, Exit.die(error))
          })
        ),
        (f) => Effect.promise(() => f.close()).pipe(Effect.tap(() => Effect.sync(() => logger.log("info", "broker stopped", { thread: "front" }))))
      )
      const started = front
      // Reloaded while the worker started (`front` unset, `changed` could not tell it): its guard
      // would check the file it was started with until the next change.
      if (users !== handed && users !== undefined) started.users(users)
      frontLog.onMoved((mark) => started.forwarded(mark))
    }

    const embedded =
      config.brokerUrl === undefined && front === undefined
        ? yield* Effect.acquireRelease(
            promise(() =>
              EmbeddedBroker.start({
                host: config.host,
                mqttPort: config.mqttPort,
                ...(config.wsPort === undefined ? {} : { wsPort: config.wsPort }),
                sessions: sessionsOf(config),
                guard: security.guard,
                drainTimeoutMs: config.drainTimeoutMs,
                ...(tls === undefined ? {} : { tls }),
                // Synchronous send means stored: PUBACK/PUBREC only after the ingress log commit.
                // Any other QoS 1 publish is acknowledged once stored for the persistent sessions
                // and forwarded (`ackStored`, the broker package's default), in receipt order.
                beforeAck: (clientId, topic, payload) =>
                  Topics.initiatingName(topic) === undefined ? undefined : ingress.receive(topic, payload, clientId),
                reportedElsewhere: isUnavailable,
                onActivity: spin.seen,
                // In a cluster, every instance knows the filters subscribed on any (Audience.ts).
                ...(ownership.clustered
                  ? {
                      members: {
                        instance: config.instance,
                        live: async () => ((await ownership.view())?.members ?? []).filter((m) => m.live).map((m) => m.instance),
                        // A SIGKILLed instance holds a new filter's SUBACK back until it is found dead.
                        waitMs: Math.max(15_000, 2 * config.deadAfterMs + config.heartbeatMs)
                      }
                    }
                  : {}),
                logger
              })
            ),
            (b) => Effect.promise(() => b.close()).pipe(Effect.tap(() => Effect.sync(() => logger.log("info", "broker stopped"))))
          )
        : undefined
    const listening = embedded ?? front
    if (listening !== undefined)
      logger.log("info", "broker listening", {
        mqtt: `${tls === undefined ? "mqtt" : "mqtts"}://${listening.host}:${listening.mqttPort}`,
        ws: listening.wsPort === undefined ? "off" : `${listening.host}:${listening.wsPort}`,
        sessions: sessionsOf(config).kind,
        ...(front === undefined ? {} : { thread: "front" })
      })

    // An external broker: every processor and the ingress get their own MQTT session on it.
    const external =
      config.brokerUrl === undefined
        ? undefined
        : yield* Effect.acquireRelease(
            // Interruptible: a signal while it waits for the first CONNACK stops the start at once.
            Effect.interruptible(
              Effect.tryPromise({
                try: (signal) => MqttBroker.make({ clientPrefix: `${config.instance}.`, logger, url: config.brokerUrl ?? "", signal }),
                catch: (e) => e as Error
              })
            ),
            (b) => Effect.promise(() => b.close()).pipe(Effect.tap(() => Effect.sync(() => logger.log("info", "broker disconnected", { broker: config.brokerUrl }))))
          )
    // A reply published: its requester is likely to ask again at once, so the loop polls for it
    // (`BATON_IDLE_SPIN_US`). Without the spin, the broker's own function.
    const replying = (publish: Port["publish"]): Port["publish"] =>
      spin === IdleSpin.off
        ? publish
        : (topic, payload, qos) => {
            if (Topics.isReply(topic)) spin.touch()
            return publish(topic, payload, qos)
          }
    // The embedded broker's own functions, not wrappers: the face costs no call on the hot paths
    // (but `publish` with the spin on: a prefix test).
    const face: Face | undefined =
      front !== undefined
        ? { ...front, publish: replying(front.publish) }
        : embedded === undefined
          ? undefined
          : {
              host: embedded.host,
              mqttPort: embedded.mqttPort,
              wsPort: embedded.wsPort,
              publish: replying(embedded.publish),
              wanted: embedded.wanted,
              hasSubscribers: embedded.hasSubscribers,
              connections: async () => embedded.connections(),
              counts: async () => security.counts(),
              subscriptions: async (clientId) => embedded.subscriptions(clientId)
            }
    const publish: Port["publish"] | undefined = face?.publish ?? external?.publish
    if (publish === undefined) throw new Error("neither an embedded nor an external broker")
    logger.log("info", "broker connected", { broker: external === undefined ? "embedded" : config.brokerUrl })
    return { face, external, publish, security, users: () => users, tls, spin } satisfies Shape
  })
)
