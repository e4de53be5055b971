/**
 * Consuming: recovers what the inbox holds, opens the broker sessions, starts the ingress and the
 * ownership (in a cluster: joins it, and schedules each acquired partition's pending work). Built
 * last, so it stops first on shutdown: consuming stops, what is in flight finishes, the outbox is
 * flushed, then (in a cluster) the partitions are handed over.
 */
import { type Envelope, Log, type Message, Topics, type Subscription } from "@baton/core"
import { isUnavailable } from "@baton/store"
import { Context, Effect, Layer } from "effect"
import { Apps } from "./Apps.ts"
import { Broker } from "./Broker.ts"
import { Http } from "./Http.ts"
import { Ingress } from "./Ingress.ts"
import { Ownership } from "./Ownership.ts"
import { ProcessorHost } from "./ProcessorHost.ts"
import { Queues } from "./Queues.ts"
import { Relay } from "./Relay.ts"
import { promise, Settings } from "./Settings.ts"

/** Client ids of the runtime's persistent broker sessions (an external broker keeps them). */
export class Consuming extends Context.Service<Consuming, { readonly sessions: ReadonlyArray<string> }>()("baton/runtime/Consuming") {}

export const layer = Layer.effect(
  Consuming,
  Effect.gen(function* () {
    const { config, logger } = yield* Settings
    const ownership = yield* Ownership
    const { outbox } = yield* Queues
    const { contracts } = yield* Apps
    const { ingress, log, routePublic } = yield* Ingress
    const { face, external } = yield* Broker
    const { relay } = yield* Relay
    const { consumers, domains, workflows, topicsOf, idle } = yield* ProcessorHost
    const http = yield* Http

    // In a cluster with an external broker, one instance at a time (the owner of partition 0)
    // holds the ingress session, under a cluster-wide client id: each initiating event is taken once.
    // The session's client never reconnects once this instance lost partition 0 (no two instances
    // taking turns at one session), and opening it is retried while the partition stays ours.
    /** An ingress session's message: appended to the ingress log. */
    const receive = (m: Message): Promise<void> => ingress.receive(m.topic, m.payload, null)
    /**
     * The ingress session's messages that arrived together: appended at once, so the log commits
     * them in one transaction (its group commit), all or none.
     */
    const receiveAll = async (messages: ReadonlyArray<Message>): Promise<void> => {
      await Promise.all(messages.map(receive))
    }
    let ingressSession: Promise<Subscription | undefined> | undefined
    /** Shutting down: the ingress session is not (re)tried any more. */
    let stopping = false
    const holdsIngress = () => ownership.owns(0)
    const subscribeIngress = async (): Promise<Subscription | undefined> => {
      for (let attempt = 1; external !== undefined && !stopping && holdsIngress(); attempt++) {
        try {
          return await external.subscribe(
            { clientId: "baton-cluster-ingress", unprefixed: true, topics: [Topics.allInitiating], exclusive: holdsIngress },
            receive,
            receiveAll
          )
        } catch (error) {
          if (stopping) return undefined
          logger.log("warn", "ingress session not opened, trying again", { attempt, reason: Log.reason(error) })
          await new Promise((r) => setTimeout(r, 500))
        }
      }
      return undefined
    }
    const byName = new Map(consumers.map((c) => [c.processor.name, c.consumer]))
    const scheduleIn = async (parts: ReadonlyArray<number>) => (await Promise.all(consumers.map((c) => c.consumer.recover(parts)))).reduce((n, m) => n + m, 0)

    // A session being opened at start: interruptible, so that a signal while it waits for the
    // CONNACK stops the start at once (the sessions already open are ended by the broker's close).
    const opening = (subscribe: (signal: AbortSignal) => Promise<Subscription>) =>
      Effect.interruptible(Effect.tryPromise({ try: subscribe, catch: (e) => e as Error }))
    // Consuming stops first on shutdown; what is in flight finishes and the outbox is flushed.
    const subscriptions = yield* Effect.acquireRelease(
      Effect.gen(function* () {
        const subscriptions: Array<Subscription> = []
        relay.poke()
        for (const { processor, consumer } of consumers) {
          // In a cluster, pending messages are scheduled as their partitions are acquired.
          const recovered = ownership.clustered ? 0 : yield* promise(() => consumer.recover())
          const topics = topicsOf(processor).filter((t) => routePublic || !Topics.isInternal(t))
          // (A processor that takes no topic, the simple mediator without simple rules, needs no session.)
          if (external !== undefined && !routePublic && topics.length > 0) subscriptions.push(yield* opening((signal) => external.subscribe({ clientId: processor.name, topics, signal }, consumer.handler, consumer.handlerAll)))
          logger.log("info", "processor started", { processor: processor.name, topics: topics.join(","), via: routePublic ? "inbox" : "broker session", recovered })
        }
        if (external !== undefined && !ownership.clustered)
          subscriptions.push(yield* opening((signal) => external.subscribe({ clientId: "ingress", topics: [Topics.allInitiating], signal }, receive, receiveAll)))
        if (!ownership.clustered)
          for (const d of domains) {
            const inFlight = yield* promise(() => d.recover())
            logger.log("info", "mediator started", { domain: d.domain, workflows: workflows.filter((w) => w.domain === d.domain).map((w) => w.name).join(","), "in-flight": inFlight })
          }
        const replayed = yield* promise(() => ingress.start(relay.poke))
        logger.log("info", "ingress started", { topics: [...contracts.keys()].map(Topics.initiate).join(","), replayed })
        yield* promise(() =>
          ownership.start({
            address: { http: `${config.host}:${http.port}`, mqtt: face === undefined ? (config.brokerUrl ?? "") : `${face.host}:${face.mqttPort}` },
            acquired: async (parts) => {
              const set = new Set(parts)
              const recovered = await scheduleIn(parts)
              for (const d of domains)
                d.recover((id) => set.has(ownership.partOf(id))).then(
                  (n) => n > 0 && logger.log("info", "workflows resumed", { domain: d.domain, workflows: n, partitions: parts.join(",") }),
                  (error: unknown) => logger.log("error", "workflows not resumed", { domain: d.domain, reason: Log.reason(error) })
                )
              if (recovered > 0) logger.log("info", "pending messages scheduled", { messages: recovered, partitions: parts.join(",") })
              if (set.has(0) && external !== undefined && ingressSession === undefined) {
                ingressSession = subscribeIngress().then(
                  (session) => {
                    // From here the broker keeps every initiating event for the cluster (a persistent
                    // session); before the first one on a fresh broker, a publish has no subscriber.
                    if (session !== undefined) logger.log("info", "ingress session subscribed", { broker: config.brokerUrl, topics: Topics.allInitiating })
                    return session
                  },
                  (error: unknown) => {
                    logger.log("error", "ingress session not opened", { reason: Log.reason(error) })
                    return undefined
                  }
                )
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
            // What another instance's transaction wrote for this instance's partitions, read once for every processor.
            arrived: (entries) => {
              for (const e of entries) void byName.get(e.processor)?.schedule(JSON.parse(e.payload) as Envelope.Envelope, e.topic, e.payload)
            },
            adopt: async (dead) => {
              const entries = await outbox.adopt(dead)
              const logged = await log.adopt(dead)
              if (entries + logged === 0) return
              logger.log("info", "adopted what dead instances left", { instances: dead.join(","), "outbox-entries": entries, "ingress-entries": logged })
              relay.poke()
              ingress.poke()
            }
          })
        )
        return subscriptions
      }),
      (subscriptions) =>
        Effect.promise(() =>
          // A cluster instance stops taking partitions' work, finishes what is in flight, then
          // hands its partitions over; alone, the same without the hand-over.
          ownership.stop(async () => {
            // An external broker out of reach is not waited for: what it did not acknowledge stays in the outbox.
            stopping = true
            ingress.stop()
            relay.stopping()
            external?.stopping()
            await (await ingressSession)?.close()
            await Promise.all(subscriptions.map((s) => s.close()))
            await idle()
            await relay.close()
          })
        )
    )
    return { sessions: subscriptions.map((s) => s.clientId) }
  })
)
