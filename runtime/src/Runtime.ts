/**
 * The composition root: store, broker (embedded or external), apps, the ingress, one broker
 * session and a pool of supervised actors per processor, the outbox relay, and the HTTP port.
 * Resources are scoped, so closing the scope shuts down in reverse order: stop consuming, finish
 * what is in flight, flush the outbox, stop actors, close the broker, the store last.
 */
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { Users } from "@baton/auth"
import { Deferred, Effect, Exit, Scope } from "effect"
import { Envelope, isAppModule, Log, Sensitive, Topics, type App, type AppModule, type Broker, type HttpRoute, type Processor, type Repair, type Subscription } from "@baton/core"
import { Policy, Supervisor } from "@baton/actors"
import { EmbeddedBroker } from "@baton/broker-aedes"
import { MqttBroker } from "@baton/broker-mqtt"
import { Inbox, IngressLog, isUnavailable, Operations, Outbox, Postgres, Rejections, Sqlite, type Page, type Store } from "@baton/store"
import { payloadPreviewBytes } from "@baton/core"
import { Parking, ParkingPolicy, WorkflowProcessor } from "@baton/repair"
import { Mediator, WorkflowStore } from "@baton/mediator"
import * as Apps from "./Apps.ts"
import type { Config } from "./Config.ts"
import * as Cluster from "./Cluster.ts"
import * as Consumer from "./Consumer.ts"
import * as Console from "./Console.ts"
import * as Crash from "./Crash.ts"
import * as ErrorPath from "./ErrorPath.ts"
import * as EventVersions from "./EventVersions.ts"
import * as Flows from "./Flows.ts"
import * as Http from "./Http.ts"
import * as Ingress from "./Ingress.ts"
import * as Observability from "./Observability.ts"
import * as Relay from "./Relay.ts"
import * as Router from "./Router.ts"
import * as Security from "./Security.ts"

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
  /** Resolves when nothing is in flight and the outbox is empty. */
  readonly idle: () => Promise<void>
  /** Fails when a supervisor gives up (restart limit exceeded): the runtime must stop. */
  readonly fatal: Effect.Effect<never, Supervisor.RestartLimitExceeded>
}

/** `BATON_APP` in its order: app modules, by path or by a reference app's name (Apps.ts). */
const configuredApps = (deps: { readonly config: Config }): Promise<ReadonlyArray<AppModule>> => Promise.all(deps.config.apps.map((a) => Apps.load(a)))

const sessionsOf = (config: Config): EmbeddedBroker.Sessions =>
  !config.durable
    ? { kind: "memory" }
    : config.redisUrl !== undefined
      ? { kind: "redis", url: config.redisUrl, cluster: config.databaseUrl !== undefined }
      : { kind: "disk", dir: join(config.dataDir, "sessions") }

/** A database URL without its password, for the log. */
const redact = (url: string): string => url.replace(/\/\/([^:@/]+):[^@/]*@/, "//$1:***@")

/** The correlation id of an envelope, for a log line. */
const correlationOf = (payload: string | Buffer): string | undefined => {
  try {
    const id = (JSON.parse(String(payload)) as { correlationId?: unknown }).correlationId
    return typeof id === "string" ? id : undefined
  } catch {
    return undefined
  }
}

/** What `pg_stat_activity` shows for an instance's connections: `baton/<instance>`. */
const applicationName = (config: Config): string => `baton/${config.instance}`

/** Published envelopes the flows API keeps in memory (the ends of chains no local processor consumes). */
const flowTapSize = 10_000

const promise = <A>(f: () => Promise<A>) => Effect.tryPromise({ try: f, catch: (e) => e as Error })

export const make = (config: Config, options: Options = {}) =>
  Effect.gen(function* () {
    // Card numbers are masked in every line, whichever part of the runtime writes it.
    const logger = Log.masked(options.logger ?? Log.console)
    let phase: Http.Phase = "starting"
    logger.log("info", "runtime starting", { pid: process.pid, node: process.version, topology: config.topology, durable: config.durable })

    // Every store in one database: the embedded SQLite file, or PostgreSQL (shared by a cluster).
    const storePath = join(config.dataDir, "baton.db")
    // Idle pooled connections dropped together (the server restarting, connections cut): one line
    // for the lot, a moment after the first, rather than one per connection.
    let idleLosses = 0
    const idleLost = (error: Error) => {
      if (idleLosses++ > 0) return
      setTimeout(() => {
        logger.log("warn", "idle database connections lost", { connections: idleLosses, reason: Log.reason(error) })
        idleLosses = 0
      }, 250).unref()
    }
    const store = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () =>
          config.databaseUrl === undefined
            ? Sqlite.open({ path: storePath, synchronous: config.durable ? "NORMAL" : "OFF" })
            : Postgres.open({
                url: config.databaseUrl,
                poolSize: config.poolSize,
                driver: config.pgDriver,
                applicationName: applicationName(config),
                onIdleError: idleLost
              }),
        catch: (e) => new Error(`cannot open the store: ${Log.reason(e)}`)
      }),
      (s) => Effect.promise(() => s.close()).pipe(Effect.tap(() => Effect.sync(() => logger.log("info", "store closed"))))
    )
    logger.log("info", "store opened", { kind: store.kind, where: config.databaseUrl === undefined ? storePath : redact(config.databaseUrl) })
    store.onAvailability((available, reason) =>
      available ? logger.log("info", "store reachable again", { kind: store.kind }) : logger.log("error", "store unreachable, retrying", { kind: store.kind, reason })
    )
    // With PostgreSQL, instances sharing the database form a cluster: each owns some key partitions
    // and processes only their messages; its outbox and ingress entries are its own (Cluster.ts).
    const clustered = store.kind === "postgres"
    // Spans only with an OTLP endpoint; the exporter sends its last batch when the runtime stops.
    const tracing = config.otlpUrl === undefined
      ? Observability.untraced
      : yield* Observability.otlp({ url: config.otlpUrl, serviceName: `baton/${config.instance}`, exportIntervalMs: config.otlpIntervalMs })
    if (config.otlpUrl !== undefined) logger.log("info", "traces exported", { url: config.otlpUrl })
    let cluster: Cluster.Cluster | undefined
    const partOf = (key: string) => Inbox.partitionOf(key, config.clusterPartitions)
    const mine = clustered ? { instance: config.instance } : {}
    const rejections = yield* promise(() => Rejections.make(store))
    const operations = yield* promise(() => Operations.make(store))
    const outbox = yield* promise(() => Outbox.make(store, mine))
    const inbox = yield* promise(() =>
      Inbox.make(
        store,
        clustered ? { partitions: config.clusterPartitions, notify: (part) => cluster?.notify(part) ?? Effect.void, guard: Cluster.inboxGuard(config.instance) } : {}
      )
    )
    let ingressRef: Ingress.Ingress | undefined
    const log = yield* promise(() => IngressLog.make(store, {
      maxBytes: config.maxPayloadBytes,
      previewBytes: payloadPreviewBytes,
      beforeCommit: () => Crash.point("ingress-before-commit"),
      ...mine,
      ...(clustered ? { afterCommit: async () => ingressRef?.forwardNow() } : {}),
      // On an external broker, only the holder of the cluster's ingress session (the owner of
      // partition 0) logs initiating events: a former holder's client still connected cannot.
      ...(clustered && config.brokerUrl !== undefined
        ? {
            fence: Effect.flatMap(Effect.suspend(() => cluster?.holds(0) ?? Effect.succeed(false)), (holds) =>
              holds ? Effect.void : Effect.die(new Error("this instance no longer holds the cluster's ingress session"))
            )
          }
        : {})
    }))
    const apps = yield* promise(async () => {
      const given = await (options.apps ?? configuredApps)({ store, config })
      const ctx = Apps.context(store, options.env ?? process.env, options.clock)
      return Promise.all(given.map((a) => (isAppModule(a) ? Apps.instantiate(a, ctx) : a)))
    })
    // Their events' versions and schemas against those earlier deployments recorded.
    yield* promise(() => EventVersions.check(store, apps))
    logger.log("info", "apps running", { apps: apps.map((a) => a.name).join(","), hint: "BATON_APP=+<app or ./path/app.ts> adds one to the defaults" })
    // What must not leak: the fields the apps mark sensitive, and card numbers anywhere.
    const mask = Sensitive.masker(apps.flatMap((a) => a.initiating.flatMap((i) => i.sensitive ?? [])))
    const masked = <A extends ReadonlyArray<any>, B>(f: (...args: A) => Promise<B>) => async (...args: A): Promise<B> => mask.json(await f(...args))
    const reject = ErrorPath.make({ store, outbox, rejections, logger, mask })
    const extra = options.processors?.({ store }) ?? []
    // The mediator topology: apps with workflows take commands on channels from their domain
    // mediators, behind the simple mediator; apps without keep chaining by events.
    const mediated = config.topology === "mediator" ? apps.filter((a) => a.mediation !== undefined) : []
    const workflowStore =
      mediated.length === 0
        ? undefined
        : yield* Effect.acquireRelease(
            promise(() => WorkflowStore.inStore(store)),
            (s) => Effect.promise(() => s.close())
          )
    if (workflowStore !== undefined) logger.log("info", "workflow store opened", { kind: workflowStore.kind })
    const workflows = mediated.flatMap((a) => a.mediation?.workflows ?? [])
    const domains =
      workflowStore === undefined
        ? []
        : [...new Set(workflows.map((w) => w.domain))].map((domain) =>
            Mediator.domain({
              domain,
              workflows: workflows.filter((w) => w.domain === domain),
              store: workflowStore,
              defaults: { timeoutMs: config.commandTimeoutMs, maxAttempts: config.commandAttempts },
              logger,
              ...(options.mediatorFault === undefined ? {} : { fault: () => options.mediatorFault?.(domain) })
            })
          )
    yield* Effect.addFinalizer(() => Effect.sync(() => domains.forEach((d) => d.close())))
    const hosted = [...apps.flatMap((a) => (mediated.includes(a) ? a.processors.map(Mediator.channel) : a.processors)), ...extra]
    // The workflow event pattern, for processors that park the keys of failed messages.
    const parking = hosted.some((p) => p.onFailure === "park") ? yield* promise(() => Parking.make(store)) : undefined
    const parkingLimits: WorkflowProcessor.Limits = { maxParked: config.parkMaxCount, maxHeldMs: config.parkMaxAgeMs }
    const parkingPolicy = parking === undefined ? undefined : ParkingPolicy.make(parking, logger, parkingLimits)
    const repairs =
      parking === undefined
        ? undefined
        : yield* promise(() => WorkflowProcessor.make({
            store,
            parking,
            outbox,
            repairs: Object.assign({}, ...apps.map((a) => a.repairs ?? {})) as Readonly<Record<string, Repair>>,
            limits: parkingLimits,
            logger,
            route: (topic, envelope, payload) => router.route(topic, envelope, payload),
            schedule: (name, parked) => {
              const consumer = consumers.find((c) => c.processor.name === name)?.consumer
              void consumer?.schedule(JSON.parse(parked.payload) as Envelope.Envelope, parked.topic, parked.payload)
            },
            poke: () => relay.poke()
          }))
    const processors: ReadonlyArray<Processor> = [
      ...(mediated.length === 0 ? [] : [Mediator.simple(mediated.flatMap((a) => a.mediation?.rules ?? []), workflows), ...domains.map((d) => d.processor)]),
      ...hosted,
      ...(repairs === undefined ? [] : [repairs.processor])
    ]
    const contracts = Ingress.contractsOf(apps)
    // Internal topics (command channels, repairs) are always routed through the store. With the
    // embedded broker or in a cluster, so are public ones; with an external broker and a single
    // instance, every processor consumes those from its own broker session.
    const router = Router.make(inbox)
    const routePublic = config.brokerUrl === undefined || clustered
    const ingress = Ingress.make({ contracts, maxPayloadBytes: config.maxPayloadBytes, store, log, outbox, reject, logger, tracing, ...(routePublic ? { router } : {}) })
    ingressRef = ingress

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
          usersLoaded(file, "users file reloaded")
        },
        failed: (error) => logger.log("error", "users file not reloaded, the previous version stays in force", { reason: error.message })
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => watcher.close()))
    }
    const security = Security.make({
      users: () => users,
      logger,
      limits: {
        maxPayloadBytes: config.maxPayloadBytes,
        maxConnections: config.maxConnections,
        publishRate: config.publishRate,
        maxTopicDepth: config.maxTopicDepth,
        maxClientIdLength: config.maxClientIdLength,
        maxInflight: config.maxInflight
      }
    })
    const tls = config.tls === undefined ? undefined : { cert: readFileSync(config.tls.certFile), key: readFileSync(config.tls.keyFile) }

    const embedded =
      config.brokerUrl === undefined
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
                beforeAck: (clientId, topic, payload) =>
                  Topics.initiatingName(topic) === undefined ? undefined : ingress.receive(topic, payload, clientId),
                reportedElsewhere: isUnavailable,
                logger
              })
            ),
            (b) => Effect.promise(() => b.close()).pipe(Effect.tap(() => Effect.sync(() => logger.log("info", "broker stopped"))))
          )
        : undefined
    if (embedded !== undefined)
      logger.log("info", "broker listening", {
        mqtt: `${tls === undefined ? "mqtt" : "mqtts"}://${embedded.host}:${embedded.mqttPort}`,
        ws: embedded.wsPort === undefined ? "off" : `${embedded.host}:${embedded.wsPort}`,
        sessions: sessionsOf(config).kind
      })

    // An external broker: every processor and the ingress get their own MQTT session on it.
    const external =
      config.brokerUrl === undefined
        ? undefined
        : yield* Effect.acquireRelease(
            promise(() => MqttBroker.make({ clientPrefix: `${config.instance}.`, logger, url: config.brokerUrl ?? "" })),
            (b) => Effect.promise(() => b.close())
          )
    const publish: Broker["publish"] | undefined = embedded?.publish ?? external?.publish
    if (publish === undefined) throw new Error("neither an embedded nor an external broker")
    logger.log("info", "broker connected", { broker: external === undefined ? "embedded" : config.brokerUrl })

    const actors: Array<Supervisor.Supervised> = []
    const consumers: Array<{ readonly processor: Processor; readonly pool: ReadonlyArray<Supervisor.Supervised>; readonly consumer: Consumer.Consumer }> = []
    const metrics = Observability.makeMetrics({
      store,
      gauges: { inFlight: () => consumers.map((c) => [c.processor.name, c.consumer.inFlight()] as const), connections: () => embedded?.connections() },
      tables: () => ({ parking: parking !== undefined, dashboard: repairs !== undefined, workflows: workflowStore !== undefined })
    })
    /** The domain mediator of a workflow (any, for an unknown one: it answers 404). */
    const ownerOf = async (id: string) => {
      const state = await workflowStore?.load(id)
      return domains.find((d) => d.domain === state?.domain) ?? domains[0]!
    }
    // The console's flows: the store's record, and the envelopes published lately (Flows.ts).
    const tap = Flows.tap(flowTapSize)
    const flows = Flows.make({ store, tap, dashboard: parking !== undefined })
    const http = yield* Effect.acquireRelease(
      promise(() =>
        Http.start({
          pages: Console.pages(),
          extra: Console.endpoints({
            flows,
            tap,
            resubmit: Console.resubmitter({ store, inbox, flows, consumer: (name) => consumers.find((c) => c.processor.name === name)?.consumer })
          }),
          host: config.host,
          port: config.httpPort,
          rejections,
          operations,
          logger,
          mask,
          security: security.counts,
          metrics: metrics.scrape,
          // `users` is set with authentication on, and a reload never unsets it.
          ...(users === undefined ? {} : { authorize: (token: string) => Users.checkToken(users!, token) }),
          ...(tls === undefined ? {} : { tls }),
          // What the operators see is masked; the stores keep what a restart or a resubmission needs.
          routes: Object.fromEntries(Object.entries(Object.assign({}, ...apps.map((a) => a.http ?? {})) as Readonly<Record<string, HttpRoute>>).map(([route, f]) => [route, masked(f)])),
          ...(repairs === undefined || parking === undefined
            ? {}
            : { dashboard: { entries: { page: masked(repairs.page), resubmit: masked(repairs.resubmit), discard: masked(repairs.discard) }, held: masked(() => parking.all()) } }),
          ...(workflowStore === undefined
            ? {}
            : {
                workflows: {
                  page: masked((filter: Omit<WorkflowStore.Filter, "limit">, req: Page.Request) => workflowStore.page(filter, req)),
                  get: masked((id: string) => workflowStore.load(id)),
                  restart: masked(async (id: string, patch: Readonly<Record<string, unknown>> | undefined) => (await ownerOf(id)).restart(id, patch)),
                  discard: masked(async (id: string, reason: string, by: string) => (await ownerOf(id)).discard(id, reason, by))
                }
              }),
          cluster: async () => {
            if (cluster === undefined) return undefined
            const view = await cluster.view()
            const owners = new Map(view.partitions.map((p) => [p.part, p.owner] as const))
            const owned = new Map<string, Array<string>>()
            if (workflowStore !== undefined)
              for (const row of await store.run(store.query("SELECT id FROM workflows WHERE status <> 'discarded' ORDER BY updated_at").all())) {
                const owner = owners.get(partOf(String(row.id))) ?? "nobody"
                owned.set(owner, [...(owned.get(owner) ?? []), String(row.id)])
              }
            return {
              instance: cluster.instance,
              partitions: cluster.partitions,
              members: view.members.map((m) => ({
                ...m,
                partitions: view.partitions.filter((p) => p.owner === m.instance).map((p) => p.part),
                workflows: owned.get(m.instance) ?? []
              })),
              unowned: view.partitions.filter((p) => p.owner === null).map((p) => p.part)
            }
          },
          status: {
            phase: () => phase,
            detail: async (options) => ({
              outbox: await outbox.size(),
              statements: store.statements(),
              ...(options?.statements === true ? { statementTexts: store.breakdown() } : {}),
              memory: Object.fromEntries(Object.entries(process.memoryUsage()).map(([k, v]) => [`${k}Mb`, Math.round(v / 1048576)])),
              processors: consumers.map(({ processor, pool }) => ({ name: processor.name, partitions: pool.length, restarts: pool.reduce((n, a) => n + a.restarts(), 0) }))
            })
          }
        })
      ),
      (h) => Effect.promise(() => h.close())
    )
    logger.log("info", "http listening", { address: `${config.host}:${http.port}` })

    // A reply goes out at QoS 0, which no broker queues: with no subscriber it is lost, so say so.
    const relayed: Broker["publish"] = (topic, payload, qos) => {
      if (Topics.isReply(topic) && embedded?.hasSubscribers(topic) === false)
        logger.log("warn", "reply lost: nobody subscribes to its topic (subscribe before sending the request, on the connection that sends it)", { topic, request: correlationOf(payload) })
      tap.record(topic, String(payload))
      return publish(topic, payload, qos)
    }
    const relay = Relay.make({ outbox, publish: relayed, logger })
    const policy: Policy.Policy = { ...Policy.defaults, maxAttempts: config.maxAttempts, initialDelayMs: config.restartDelayMs, ...options.policy }
    const fatal = yield* Deferred.make<never, Supervisor.RestartLimitExceeded>()
    const system = Supervisor.system()
    const topicOf = Consumer.topicOf(new Set(contracts.keys()))
    const topicsOf = (p: Processor): ReadonlyArray<string> => [...(p.topics ?? p.consumes.map(topicOf)), ...(p.onFailure === "park" ? [Topics.resubmit(p.name)] : [])]

    for (const processor of processors) {
      const pool = Array.from({ length: config.partitions }, (_, i) =>
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
        logger,
        router,
        routePublic,
        ...(embedded === undefined ? {} : { audience: { wanted: (topic: string) => embedded.wanted(topic) ?? true, unsent: tap.record } }),
        parking: parkingPolicy,
        mask,
        metrics: metrics.processor(processor.name),
        tracing,
        ...(clustered ? { cluster: { owns: (key: string) => cluster?.owns(partOf(key)) ?? false, holds: (key: string) => cluster?.holds(partOf(key)) ?? Effect.succeed(false) } } : {})
      })
      for (const topic of topicsOf(processor)) if (routePublic || Topics.isInternal(topic)) router.add(topic, { name: processor.name, schedule: consumer.schedule })
      consumers.push({ processor, pool, consumer })
    }
    for (const d of domains) {
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

    const idle = async () => {
      await Promise.all(consumers.map((c) => c.consumer.idle()))
      await relay.idle()
    }

    // In a cluster with an external broker, one instance at a time (the owner of partition 0)
    // holds the ingress session, under a cluster-wide client id: each initiating event is taken once.
    // The session's client never reconnects once this instance lost partition 0 (no two instances
    // taking turns at one session), and opening it is retried while the partition stays ours.
    let ingressSession: Promise<Subscription | undefined> | undefined
    const holdsIngress = () => cluster?.owns(0) === true
    const subscribeIngress = async (): Promise<Subscription | undefined> => {
      for (let attempt = 1; external !== undefined && holdsIngress(); attempt++) {
        try {
          return await external.subscribe(
            { clientId: "baton-cluster-ingress", unprefixed: true, topics: [Topics.allInitiating], exclusive: holdsIngress },
            (m) => ingress.receive(m.topic, m.payload, null)
          )
        } catch (error) {
          logger.log("warn", "ingress session not opened, trying again", { attempt, reason: Log.reason(error) })
          await new Promise((r) => setTimeout(r, 500))
        }
      }
      return undefined
    }

    // Consuming stops first on shutdown; what is in flight finishes and the outbox is flushed.
    const subscribed = yield* Effect.acquireRelease(
      Effect.gen(function* () {
        const subscriptions: Array<Subscription> = []
        relay.poke()
        for (const { processor, consumer } of consumers) {
          const recovered = clustered ? 0 : yield* promise(() => consumer.recover())
          const topics = topicsOf(processor).filter((t) => routePublic || !Topics.isInternal(t))
          if (external !== undefined && !routePublic) subscriptions.push(yield* promise(() => external.subscribe({ clientId: processor.name, topics }, consumer.handler)))
          logger.log("info", "processor started", { processor: processor.name, topics: topics.join(","), via: routePublic ? "inbox" : "broker session", recovered })
        }
        if (external !== undefined && !clustered) subscriptions.push(yield* promise(() => external.subscribe({ clientId: "ingress", topics: [Topics.allInitiating] }, (m) => ingress.receive(m.topic, m.payload, null))))
        if (!clustered)
          for (const d of domains) {
            const inFlight = yield* promise(() => d.recover())
            logger.log("info", "mediator started", { domain: d.domain, workflows: workflows.filter((w) => w.domain === d.domain).map((w) => w.name).join(","), "in-flight": inFlight })
          }
        const replayed = yield* promise(() => ingress.start(relay.poke))
        logger.log("info", "ingress started", { topics: [...contracts.keys()].map(Topics.initiate).join(","), replayed })
        if (clustered) {
          const scheduleIn = async (parts: ReadonlyArray<number>) => (await Promise.all(consumers.map((c) => c.consumer.recover(parts)))).reduce((n, m) => n + m, 0)
          const control = yield* Effect.acquireRelease(
            promise(() => Postgres.open({ url: config.databaseUrl ?? "", poolSize: 2, driver: config.pgDriver, applicationName: applicationName(config) })),
            (s) => Effect.promise(() => s.close())
          )
          cluster = yield* promise(() => Cluster.make({
            store,
            control,
            url: config.databaseUrl ?? "",
            instance: config.instance,
            partitions: config.clusterPartitions,
            heartbeatMs: config.heartbeatMs,
            deadAfterMs: config.deadAfterMs,
            address: { http: `${config.host}:${http.port}`, mqtt: embedded === undefined ? (config.brokerUrl ?? "") : `${embedded.host}:${embedded.mqttPort}` },
            logger,
            acquired: async (parts) => {
              const set = new Set(parts)
              const recovered = await scheduleIn(parts)
              for (const d of domains)
                d.recover((id) => set.has(partOf(id))).then(
                  (n) => n > 0 && logger.log("info", "workflows resumed", { domain: d.domain, workflows: n, partitions: parts.join(",") }),
                  (error: unknown) => logger.log("error", "workflows not resumed", { domain: d.domain, reason: Log.reason(error) })
                )
              if (recovered > 0) logger.log("info", "pending messages scheduled", { messages: recovered, partitions: parts.join(",") })
              if (set.has(0) && external !== undefined && ingressSession === undefined) {
                ingressSession = subscribeIngress().catch((error: unknown) => {
                  logger.log("error", "ingress session not opened", { reason: Log.reason(error) })
                  return undefined
                })
                logger.log("info", "ingress session taken", { broker: config.brokerUrl })
              }
              relay.poke()
            },
            released: (parts) => {
              if (!parts.includes(0) || ingressSession === undefined) return
              const closing = ingressSession
              ingressSession = undefined
              void closing.then((s) => s?.close())
              logger.log("info", "ingress session handed over", { broker: config.brokerUrl })
            },
            pending: (parts) =>
              void scheduleIn(parts).catch((error: unknown) => isUnavailable(error) || logger.log("error", "pending messages not scheduled", { reason: Log.reason(error) })),
            adopt: async (dead) => {
              const entries = await outbox.adopt(dead)
              const logged = await log.adopt(dead)
              if (entries + logged === 0) return
              logger.log("info", "adopted what dead instances left", { instances: dead.join(","), "outbox-entries": entries, "ingress-entries": logged })
              relay.poke()
              ingress.poke()
            }
          }))
          yield* promise(() => cluster?.start() ?? Promise.resolve())
        }
        return subscriptions
      }),
      (subscriptions) =>
        Effect.promise(async () => {
          // A cluster instance stops taking partitions' work, finishes what is in flight, then
          // hands its partitions over.
          await cluster?.stop(async () => {
            await (await ingressSession)?.close()
            await Promise.all(subscriptions.map((s) => s.close()))
            await idle()
            await relay.close()
          })
          if (cluster !== undefined) return
          await Promise.all(subscriptions.map((s) => s.close()))
          await idle()
          await relay.close()
        })
    )

    // Forget what is older than the deduplication window, at start and every hour.
    const prune = async () => {
      const before = new Date(Date.now() - config.retentionHours * 3_600_000)
      const inboxRows = await inbox.prune(before)
      const ingressRows = await log.prune(before)
      if (inboxRows + ingressRows > 0) logger.log("info", "retention sweep", { "inbox-rows": inboxRows, "ingress-rows": ingressRows, before: before.toISOString() })
    }
    const pruneSafely = () => void prune().catch((error: unknown) => logger.log("error", "retention sweep failed", { reason: Log.reason(error) }))
    // Alert about keys held too long.
    if (repairs !== undefined)
      yield* Effect.acquireRelease(
        Effect.sync(() => setInterval(() => void repairs.sweep(new Date()).catch((error: unknown) => logger.log("error", "parking sweep failed", { reason: Log.reason(error) })), Math.min(5000, Math.max(100, Math.floor(config.parkMaxAgeMs / 2)))).unref()),
        (timer) => Effect.sync(() => clearInterval(timer))
      )
    yield* Effect.acquireRelease(
      Effect.gen(function* () {
        yield* promise(prune)
        return setInterval(pruneSafely, 3_600_000).unref()
      }),
      (timer) => Effect.sync(() => clearInterval(timer))
    )

    // Added last, so it runs first on shutdown: health turns 503 before anything closes.
    yield* Effect.addFinalizer(() => Effect.sync(() => { phase = "stopping"; logger.log("info", "runtime stopping") }))
    phase = "ready"
    logger.log("info", "runtime ready", { processors: processors.length, http: http.port, mqtt: embedded?.mqttPort, ws: embedded?.wsPort })

    const runtime: Runtime = {
      mqttPort: embedded?.mqttPort,
      wsPort: embedded?.wsPort,
      httpPort: http.port,
      store,
      actors,
      sessions: subscribed.map((s) => s.clientId),
      idle,
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
