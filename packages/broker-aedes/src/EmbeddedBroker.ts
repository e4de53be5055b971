/**
 * The embedded Aedes broker: MQTT over TCP and over WebSocket (optionally TLS) for outside clients,
 * an in-process publish for the runtime's broadcasts, and the guard's hooks. Aedes 1.x speaks
 * MQTT 3.1.1 only (docs/platform-facts.md).
 *
 * Aedes is patched (`patches/aedes@1.2.0.patch`, test/deliverPatch.int.test.ts): a message for a
 * subscriber is written in a microtask, and a write's callback called in a tick (after the
 * packet's uncork), instead of at the event loop's next check phase. A reply, or an event the
 * outbox relay publishes (one at a time, each awaited), thus leaves without waiting for a turn of
 * the loop, in which the runtime may run a group commit first; one turn or two per message, which
 * under load became the relay's backlog. The patch also holds the live messages for a persistent
 * session while its stored ones are restored, and delivers them after (test/restoreOrder.int.test.ts):
 * with sessions on disk or in Redis, read asynchronously, live ones overtook the stored ones. And
 * its dedupe (a client with overlapping subscriptions gets a message once) keeps a window of the
 * counters a client got, not their highest: a QoS 1 message, emitted after a store step, was
 * dropped when a later QoS 0 one reached the client first (test/dedupe.int.test.ts). And a
 * restore leaves at most `restoreWindow` stored messages unacknowledged, the next ones waiting for
 * PUBACKs: past 65,535 a message took a packet id in flight, and a PUBACK cleared the wrong one
 * (test/idWrap.int.test.ts).
 */
import type { EventEmitter } from "node:events"
import { createServer, type AddressInfo, type Server, type Socket } from "node:net"
import { createServer as createTlsServer } from "node:tls"
import { createServer as createHttpsServer } from "node:https"
import { Aedes, type AedesOptions, type PublishPacket } from "aedes"
import { Level } from "level"
import persistenceLevel from "aedes-persistence-level"
import persistenceRedis from "aedes-persistence-redis"
import mqemitterRedis from "mqemitter-redis"
import { Redis } from "ioredis"
import { WebSocketServer, createWebSocketStream } from "ws"
import { Log, PortInUseError, type QoS } from "@baton/core"
import * as Announcements from "./Announcements.ts"
import * as Audience from "./Audience.ts"
import * as Filters from "./Filters.ts"

export interface Options {
  readonly host: string
  /** 0 picks a free port. */
  readonly mqttPort: number
  /** 0 picks a free port; undefined disables MQTT over WebSocket. */
  readonly wsPort?: number
  /**
   * Where persistent sessions and their queued QoS 1/2 messages live: on disk
   * (aedes-persistence-level) or in Redis (aedes-persistence-redis) they survive a restart;
   * in memory they do not.
   */
  readonly sessions?: Sessions
  /**
   * Called for every PUBLISH from a client before the broker acknowledges it: the PUBACK (QoS 1)
   * or PUBREC (QoS 2) waits for the returned promise, so the message can be made durable first.
   */
  readonly beforeAck?: (clientId: string, topic: string, payload: Buffer, qos: QoS) => Promise<void> | undefined
  /**
   * A QoS 1 PUBACK only once the message is stored for the persistent sessions and forwarded (as a
   * QoS 2 PUBREC), not before (Aedes' own order, docs/platform-facts.md: a SIGKILL right after the
   * PUBACKs lost what was not stored yet). On by default: a PUBACK means stored. A publish whose
   * `beforeAck` returned a promise is acknowledged once that resolves, as before (the hook made it
   * durable itself: the runtime's ingress). Either way a client's PUBACKs leave in the order its
   * QoS 1 PUBLISHes came, its PUBRECs in the order of its QoS 2 ones (MQTT 3.1.1 section 4.6;
   * stock Aedes wrote them as each store finished). `false`: Aedes' own, the PUBACK before the
   * store, PUBACKs and PUBRECs unordered.
   */
  readonly ackStored?: boolean
  /**
   * A `beforeAck` failure that is logged elsewhere, once for many (the store out of reach logs
   * its outage once): the publisher's connection is still dropped, without a line per publish.
   */
  readonly reportedElsewhere?: (error: Error) => boolean
  /** Who may connect, publish and subscribe; everything is allowed without one. */
  readonly guard?: Guard
  /**
   * A client whose socket stays full this long is disconnected. Until then Aedes holds back every
   * publish that has it as a subscriber, so this bounds how long one stuck reader delays the rest.
   */
  readonly drainTimeoutMs?: number
  /** TLS for MQTT and MQTT over WebSocket (PEM contents). */
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer }
  readonly logger?: Log.Logger
  /**
   * Called when a client's connection has data to read (its socket's `readable`, before Aedes
   * reads it): the runtime's `IdleSpin.seen`, which keeps an event loop that polls for a
   * requester's next request polling while data comes.
   */
  readonly onActivity?: () => void
  readonly aedes?: AedesOptions
  /**
   * Clustered on Redis: this instance's name and the instances live in the cluster table. With
   * them, every instance knows every client's filters (Audience.ts): a SUBSCRIBE of a new filter
   * is answered once every live instance knows it, and `wanted` answers in a cluster too.
   */
  readonly members?: {
    readonly instance: string
    readonly live: () => Promise<ReadonlyArray<string>>
    /** How long a SUBSCRIBE may wait for the others before it is refused: past the time a dead one takes to be found dead. */
    readonly waitMs?: number
  }
  /**
   * Announcements of the filters clients subscribe to, for a mirror of them kept away from the
   * broker (Mirror.ts; the front thread, docs/front-thread.md 4.3): a SUBACK waits for `added`.
   */
  readonly filters?: FilterHooks
}

export type FilterHooks = Announcements.FilterHooks

/**
 * One network connection of a client, from its CONNECT until it closes: a new one for every
 * connection, even for a client id that is connected already. Keep per-connection state by it, not
 * by the client id: the new connection takes over the client id [MQTT-3.1.4-2] and the old one's
 * disconnection is reported after the new one was authenticated.
 */
export interface Connection {
  /** The client id, the broker's own (`aedes_<uuid>`) when the client sent an empty one. */
  readonly id: string
}

export interface Login {
  readonly username: string | undefined
  readonly password: Buffer | undefined
  /** The client sent an empty client id and the broker assigned one [MQTT-3.1.3-6]. */
  readonly assignedId: boolean
}

export type Verdict =
  | { readonly ok: true }
  /** CONNACK 2 (identifier rejected) when `badClientId` [MQTT-3.1.3-9], else 5 (not authorized). */
  | { readonly ok: false; readonly reason: string; readonly badClientId?: boolean }

/** Access control at the broker's door; decisions are the runtime's, enforcement is here. */
export interface Guard {
  /** Resolves with the client's identity, or a reason to refuse it. */
  readonly connect: (connection: Connection, login: Login) => Promise<Verdict>
  /** A reason to refuse the publish (the client is disconnected: MQTT 3.1.1 has no negative PUBACK), or undefined. */
  readonly publish: (connection: Connection, topic: string, payload: Buffer) => string | undefined
  /** A reason to refuse the subscription (SUBACK 0x80), or undefined. */
  readonly subscribe: (connection: Connection, filter: string) => string | undefined
  /** Waits before a client's publish is accepted (rate limit); undefined when it may go at once. */
  readonly throttle?: (connection: Connection) => Promise<void> | undefined
  readonly disconnected?: (connection: Connection) => void
  readonly maxConnections?: number
  /** QoS 1/2 messages sent to a client and not yet acknowledged; past it, messages to that client are dropped. */
  readonly maxInflight?: number
  readonly onRefused?: (what: "connect" | "publish" | "subscribe" | "slow-consumer" | "inflight", clientId: string, reason: string, topic?: string) => void
}

export type Sessions =
  | { readonly kind: "memory" }
  | { readonly kind: "disk"; readonly dir: string }
  /** `cluster`: every broker on this Redis is one logical broker (mqemitter-redis). */
  | { readonly kind: "redis"; readonly url: string; readonly cluster?: boolean }

/** Queued messages delivered per reconnect; Redis persistence defaults to 1000 (docs/platform-facts.md). */
const maxSessionDelivery = 1_000_000

/**
 * A persistent session's stored messages a restore leaves unacknowledged at most, waiting for the
 * client's PUBACKs past it: all of them went at once, and past 65,535 a message took a packet id
 * still in flight [MQTT-2.3.1-2], whose PUBACK cleared the other one from the store (lost). Below
 * the in-flight bound's default (10,000), so the live messages held behind the restore are not
 * refused by it when they are released; independent of the bound, so a small one does not slow a
 * restore down (the stored messages count towards it all the same).
 */
const restoreWindow = 1_000

const redisOptions = (url: string) => {
  const u = new URL(url)
  if (u.protocol !== "redis:" && u.protocol !== "rediss:") throw new Error(`BATON_REDIS_URL must be a redis:// URL, got '${url}'`)
  return {
    host: u.hostname,
    port: u.port === "" ? 6379 : Number(u.port),
    ...(u.username === "" ? {} : { username: decodeURIComponent(u.username) }),
    ...(u.password === "" ? {} : { password: decodeURIComponent(u.password) }),
    ...(u.pathname.length > 1 ? { db: Number(u.pathname.slice(1)) } : {}),
    ...(u.protocol === "rediss:" ? { tls: {} } : {})
  }
}

/**
 * The scope of a clustered broker's Redis channels: its URL's database number and `?prefix=`.
 * Redis's PUBLISH and SUBSCRIBE ignore the database, and mqemitter-redis names a channel after the
 * topic alone, so two deployments sharing a Redis (another database, another prefix: the sessions'
 * keys were apart already) received each other's messages. Empty for database 0 without a prefix:
 * the channels stay the topics, as other Aedes nodes on plain mqemitter-redis name them. A prefix
 * outside `[A-Za-z0-9_.:-]` is written in hex, so that no glob character of Redis's PSUBSCRIBE
 * patterns comes from it.
 */
export const channelScope = (url: string): string => {
  const u = new URL(url)
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0
  const prefix = u.searchParams.get("prefix") ?? ""
  if (db === 0 && prefix === "") return ""
  return `$baton/${db}/${/^[\w.:-]*$/.test(prefix) ? prefix : Buffer.from(prefix).toString("hex")}/`
}

/**
 * mqemitter-redis with its Redis channels under `scope` (`channelScope`): a message is published
 * on `scope + topic`, a subscription listens on `scope + ` its channel or pattern. The message
 * itself (topic included) and the local matching of the emitter are unchanged: only the Redis
 * channel names move. It publishes through `pubConn` alone and names every channel it subscribes
 * to, or unsubscribes from, through `_subTopic` (mqemitter-redis 7.x; the test of clustered brokers
 * on one Redis under two scopes fails if that changes).
 */
const scopedChannels = <M>(mq: M, scope: string): M => {
  if (scope === "") return mq
  const inner = mq as unknown as { _subTopic: (topic: string) => string; readonly pubConn: { publish: (channel: string, payload: Buffer) => Promise<unknown> } }
  const subTopic = inner._subTopic.bind(inner)
  inner._subTopic = (topic) => scope + subTopic(topic)
  const publish = inner.pubConn.publish.bind(inner.pubConn)
  inner.pubConn.publish = (channel, payload) => publish(scope + channel, payload)
  return mq
}

/** Logs a Redis connection's loss once (not each reconnection attempt) and its return. */
const watchRedis = (logger: Log.Logger, what: string, emitter: EventEmitter, connected: ReadonlyArray<string>) => {
  let down = false
  emitter.on("error", (error: Error) => {
    if (down) return
    down = true
    logger.log("warn", `redis connection lost (${what}), reconnecting`, { reason: error.message })
  })
  for (const event of connected)
    emitter.on(event, () => {
      if (!down) return
      down = false
      logger.log("info", `redis connection back (${what})`)
    })
}

/**
 * The sessions' connection, ours so that its errors are logged (aedes-persistence-redis closes it).
 * `?prefix=<p>` in the URL puts `p` before every key the sessions keep, so that several deployments
 * (or test runs) can share a database and each can find and delete its own keys.
 */
const sessionsConnection = async (logger: Log.Logger, url: string): Promise<Redis> => {
  const keyPrefix = new URL(url).searchParams.get("prefix") ?? ""
  const options = redisOptions(url)
  const connection = new Redis({ ...options, ...(keyPrefix === "" ? {} : { keyPrefix }) })
  // Reachable at start, or the start fails at once with the reason (as a store out of reach
  // does), instead of the first command failing after 20 reconnections with ioredis' own words.
  await new Promise<void>((resolve, reject) => {
    const ready = () => {
      connection.off("error", failed)
      resolve()
    }
    const failed = (error: Error) => {
      connection.off("ready", ready)
      connection.disconnect()
      reject(new Error(`cannot connect to Redis at ${options.host}:${options.port} (BATON_REDIS_URL): ${error.message}`))
    }
    connection.once("ready", ready)
    connection.once("error", failed)
  })
  watchRedis(logger, "sessions", connection, ["connect"])
  return connection
}

export interface EmbeddedBroker {
  readonly host: string
  readonly mqttPort: number
  readonly wsPort: number | undefined
  /** Publishes in-process; resolves once the broker stored and forwarded the message. */
  readonly publish: (topic: string, payload: string | Buffer, qos?: QoS) => Promise<void>
  /** The topic filters a connected client is subscribed to (operations and tests). */
  readonly subscriptions: (clientId: string) => ReadonlyArray<string>
  /**
   * Whether a subscriber on this broker would get a message published on `topic` now (a client's
   * filter, or an in-process one, matches it); undefined when clustered on Redis, where
   * subscribers connected to another instance are not known here.
   */
  readonly hasSubscribers: (topic: string) => boolean | undefined
  /**
   * Whether anyone would get a message published on `topic` now: a subscriber connected to this
   * broker, or a persistent session (clean = false) whose filter matches it, connected or not (an
   * offline one gets it queued). It may say yes for nobody (a persistent filter is never
   * forgotten, even after an unsubscribe), never no for somebody. Clustered with `members`: a
   * subscriber or session on any instance (Audience.ts), undefined while this instance does not
   * know them all yet. Undefined with sessions in Redis otherwise, or clustered without `members`,
   * where sessions of other instances are not known here.
   */
  readonly wanted: (topic: string) => boolean | undefined
  /** Clients connected now (metrics). */
  readonly connections: () => number
  /** The persistent sessions' filters read from the sessions store at start (on disk; none otherwise): a mirror's first content. */
  readonly persistentFilters: ReadonlyArray<string>
  readonly close: () => Promise<void>
}

const listen = (server: Server | WebSocketServer | import("node:https").Server, listener: string, host: string, port: number): Promise<number> =>
  new Promise<number>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) =>
      reject(error.code === "EADDRINUSE" ? new PortInUseError(listener, host, port) : error)
    server.once("error", onError)
    const done = () => {
      server.off("error", onError)
      resolve((server.address() as AddressInfo).port)
    }
    if (server instanceof WebSocketServer) server.once("listening", done)
    else server.listen(port, host, done)
  })

const closeServer = (server: Server | WebSocketServer | import("node:https").Server): Promise<void> =>
  new Promise<void>((resolve) => server.close(() => resolve()))

/** Where aedes-persistence-level keeps persistent sessions' subscriptions. */
const subscriptionKeys = "subscriptions:"

/** Where aedes-persistence-level (9.2) indexes a client's messages sent and not yet acknowledged. */
const outgoingIdKeys = "outgoing-id:"
/** Each client id's part of those keys, `encodeURIComponent(id)` and a colon, made once per client. */
const outgoingPrefixes = new Map<string, string>()
const zeros = "0".repeat(16)

/**
 * The suffix of its key for (client, message id): `padId` of aedes-persistence-level,
 * `${encodeURIComponent(clientId)}:${messageId?.toString().padStart(16, "0")}` (internal; exported
 * for its test). Two a message a subscriber gets (its update, its PUBACK's clear): the client's part
 * is encoded once, not for each (~0.4% of the order flow's CPU in the profile).
 */
export const outgoingId = (clientId: string, messageId: number | undefined): string => {
  let prefix = outgoingPrefixes.get(clientId)
  if (prefix === undefined) {
    prefix = `${encodeURIComponent(clientId)}:`
    if (outgoingPrefixes.size >= 10_000) outgoingPrefixes.clear()
    outgoingPrefixes.set(clientId, prefix)
  }
  if (messageId === undefined) return `${prefix}undefined`
  const digits = messageId.toString()
  return digits.length >= 16 ? prefix + digits : prefix + zeros.slice(digits.length) + digits
}

interface OutgoingStore {
  outgoingUpdate: (client: { readonly id: string }, packet: { readonly messageId?: number }) => Promise<void>
  outgoingClearMessageId: (client: { readonly id: string }, packet: { readonly messageId?: number }) => Promise<unknown>
}

/**
 * Every PUBACK (and every message Aedes drops for a client) makes aedes-persistence-level read the
 * message's `outgoing-id:` key to find and delete it: a LevelDB lookup that misses for every clean
 * session (nothing of theirs is stored) and for acknowledgements already handled, ~3.7% of the
 * order flow's CPU. Those keys are written only by `outgoingUpdate`, so the ones that can exist are
 * known here: the store's at start, then each one an update may write (kept until the clear that
 * deletes it, unless an update of the same id is still running). A clear of any other id reads
 * nothing and resolves as the store would have: nothing deleted, no packet. The store's writes are
 * unchanged, so what survives a crash is too.
 */
const skipAbsentAcks = async (level: Level<string, string>, store: OutgoingStore): Promise<void> => {
  const present = new Set<string>()
  const updating = new Map<string, number>()
  for await (const key of level.keys({ gte: outgoingIdKeys, lt: `${outgoingIdKeys.slice(0, -1)};` })) present.add(key.slice(outgoingIdKeys.length))
  const update = store.outgoingUpdate.bind(store)
  const clear = store.outgoingClearMessageId.bind(store)
  store.outgoingUpdate = async (client, packet) => {
    const id = outgoingId(client.id, packet.messageId)
    present.add(id)
    updating.set(id, (updating.get(id) ?? 0) + 1)
    try {
      return await update(client, packet)
    } finally {
      const n = updating.get(id)! - 1
      if (n === 0) updating.delete(id)
      else updating.set(id, n)
    }
  }
  store.outgoingClearMessageId = async (client, packet) => {
    const id = outgoingId(client.id, packet.messageId)
    if (!present.has(id)) return undefined
    const cleared = await clear(client, packet)
    if (!updating.has(id)) present.delete(id)
    return cleared
  }
}

/**
 * The filters of the persistent sessions aedes-persistence-redis (12.x) keeps: the `clients` set
 * of client ids, and a hash `client:<encoded id>` of each one's subscriptions, by filter.
 */
const storedFilters = async (redis: Redis): Promise<ReadonlyArray<string>> => {
  const ids = await redis.smembers("clients")
  const filters = await Promise.all(ids.map((id) => redis.hkeys(`client:${encodeURIComponent(id)}`)))
  return filters.flat()
}

/**
 * The broker's id, which orders its queued messages in a store on disk: aedes-persistence-level
 * keys a session's queued message `outgoing:<client>:<broker id>:<counter>` and restores them in
 * key order, so with Aedes' random id (a UUID) the messages queued by the broker before a restart
 * and those queued after it were restored in the order of two random ids, half the time the later
 * ones first. Here the id begins with the start time (`t`, 12 hex digits of milliseconds, a dash,
 * then a UUID): a later broker's messages sort after an earlier one's, and after those of any UUID
 * (a store written before this), whose first character is a hex digit (below `t`). Exported for
 * its test.
 */
export const brokerId = (now: number = Date.now()): string => `t${now.toString(16).padStart(12, "0")}-${crypto.randomUUID()}`

type Trie = Map<string, unknown>
type Matcher = Record<string, unknown> & { readonly match: (topic: string) => ReadonlyArray<unknown>; readonly get_trie: () => Trie }

const closeAedes = (aedes: Aedes): Promise<void> => new Promise<void>((resolve) => aedes.close(() => resolve()))

export const start = async (options: Options): Promise<EmbeddedBroker> => {
  const logger = options.logger ?? Log.silent
  const sessions = options.sessions ?? { kind: "memory" }
  const level = sessions.kind === "disk" ? new Level(sessions.dir) : undefined
  const sessionsRedis = sessions.kind === "redis" ? await sessionsConnection(logger, sessions.url) : undefined
  const persistence =
    sessions.kind === "disk" ? persistenceLevel(level) : sessionsRedis !== undefined ? persistenceRedis({ conn: sessionsRedis, maxSessionDelivery }) : undefined
  const beforeAck = options.beforeAck
  // The publishes whose `beforeAck` returned a promise: their PUBACK waits for it, not for the store.
  const vouched = new WeakSet<object>()
  const guard = options.guard
  let connections = 0
  // Unacknowledged QoS 1/2 messages per connection (not per client id: see Connection).
  const inflight = new WeakMap<Connection, number>()
  // Connections that sent an empty client id: Aedes replaces it with its own before `authenticate`.
  const assignedIds = new WeakSet<Connection>()
  // Errors handed to Aedes after they were logged (refusals and failed acknowledgements): Aedes
  // reports them again as `clientError`, which must not log them a second time.
  const reported = new WeakSet<Error>()
  const logged = <E extends Error>(error: E): E => {
    reported.add(error)
    return error
  }
  // With Redis, every broker on the same Redis is one logical broker: messages published on one
  // reach subscribers connected to any (mqemitter-redis), sessions are shared (aedes-persistence-redis).
  // No ready check (an INFO) on its connections: ioredis 5.8.2+ can send it after the subscriber
  // connection's SUBSCRIBE, Redis refuses it ("Connection in subscriber mode"), and mqemitter-redis
  // throws that error, ending the process (seen once, an instance starting in the cluster test;
  // ioredis issue #2037). Without it, commands are sent as soon as the connection is up.
  const mq = sessions.kind === "redis" && sessions.cluster === true ? scopedChannels(mqemitterRedis({ ...redisOptions(sessions.url), enableReadyCheck: false }), channelScope(sessions.url)) : undefined
  // mqemitter-redis re-emits its connections' errors on `state` (not in its type declarations),
  // which throws when nobody listens: a Redis restart or network blip would end every instance of
  // the cluster at once. ioredis reconnects by itself (commands wait in its offline queue
  // meanwhile), so the loss and the return are logged, one line each.
  if (mq !== undefined) watchRedis(logger, "clustered broker", (mq as unknown as { readonly state: EventEmitter }).state, ["subConnect", "pubConnect"])
  const audience =
    mq === undefined || sessionsRedis === undefined || sessions.kind !== "redis" || options.members === undefined
      ? undefined
      : await Audience.start(
          { bus: mq as unknown as Audience.Bus, sets: sessionsRedis, instance: options.members.instance, live: options.members.live, ...(options.members.waitMs === undefined ? {} : { timeoutMs: options.members.waitMs }), stored: () => storedFilters(sessionsRedis), logger },
          channelScope(sessions.url) + Audience.controlTopic
        )
  const announcements = options.filters === undefined ? undefined : Announcements.make(options.filters, (filter) => holds(filter), logger)
  const aedes = await Aedes.createBroker({
    id: brokerId(),
    ...(persistence === undefined ? {} : { persistence }),
    ...(mq === undefined ? {} : { mq }),
    drainTimeout: options.drainTimeoutMs ?? 5000,
    authorizePublish: (client, packet, callback) => {
      const payload = typeof packet.payload === "string" ? Buffer.from(packet.payload) : packet.payload
      // No client: the will of a client of another broker of the cluster, which died.
      const connection: Connection = client ?? { id: "" }
      const clientId = connection.id
      const refused = guard?.publish(connection, packet.topic, payload)
      if (refused !== undefined) {
        guard?.onRefused?.("publish", clientId, refused, packet.topic)
        return callback(logged(new Error(refused)))
      }
      const accept = () => {
        const pending = beforeAck?.(clientId, packet.topic, payload, packet.qos)
        if (pending === undefined) return callback(null)
        vouched.add(packet)
        pending.then(
          () => callback(null),
          (error: Error) => {
            if (options.reportedElsewhere?.(error) !== true)
              logger.log("error", "publish not acknowledged (not stored, or not routed after it was), connection dropped so the client resends", { client: clientId, topic: packet.topic, reason: error.message })
            callback(logged(error))
          }
        )
      }
      const wait = guard?.throttle?.(connection)
      if (wait === undefined) accept()
      else void wait.then(accept)
    },
    preConnect: (client, packet, callback) => {
      if (guard?.maxConnections !== undefined && connections >= guard.maxConnections) {
        guard.onRefused?.("connect", packet.clientId, `connection limit of ${guard.maxConnections} reached`)
        return callback(null, false)
      }
      if (packet.clientId === "") assignedIds.add(client)
      callback(null, true)
    },
    authenticate: (client, username, password, callback) => {
      const refuse = (reason: string, returnCode: 2 | 3 | 5) => callback(logged(Object.assign(new Error(reason), { returnCode })), false)
      // Aedes 1.2 assigns an id and serves the client: [MQTT-3.1.3-8] wants CONNACK 2 and the
      // connection closed, as a session without a client id could never be resumed.
      if (assignedIds.has(client) && !client.clean) {
        const reason = "an empty client id requires a clean session"
        guard?.onRefused?.("connect", "", reason)
        return refuse(reason, 2)
      }
      if (guard === undefined) return callback(null, true)
      guard.connect(client, { username, password, assignedId: assignedIds.has(client) }).then(
        (verdict) => {
          if (verdict.ok) return callback(null, true)
          guard.onRefused?.("connect", client.id, verdict.reason)
          refuse(verdict.reason, verdict.badClientId === true ? 2 : 5)
        },
        (error: Error) => {
          guard.onRefused?.("connect", client.id, `cannot check the client: ${error.message}`)
          refuse(error.message, 3)
        }
      )
    },
    ...(guard === undefined
      ? {}
      : {
          authorizeForward: (client, packet) => {
            if (guard.maxInflight === undefined || packet.qos === 0) return packet
            const n = inflight.get(client) ?? 0
            // A persistent session's stored messages at its restore (the Aedes patch's `_restored`:
            // from the restore of its subscriptions to the end of its stored stream, while its live
            // messages are held) are sent whatever the count: Aedes clears a stored message refused
            // at a restore, so the bound deleted what the session had kept. The stored stream writes
            // one at a time, each after the previous write, at most `restoreWindow` unacknowledged
            // (the next ones wait for PUBACKs), and a client that stops reading is disconnected
            // after the drain timeout; they count towards the bound for what follows.
            if (n >= guard.maxInflight && (client as unknown as { _restored?: unknown })._restored == null) {
              guard.onRefused?.("inflight", client.id, `${n} messages unacknowledged (limit ${guard.maxInflight}); message dropped for this client`, packet.topic)
              return null
            }
            inflight.set(client, n + 1)
            return packet
          }
        }),
    ...(guard === undefined && audience === undefined && announcements === undefined
      ? {}
      : {
          authorizeSubscribe: (client, subscription, callback) => {
            const refused = guard?.subscribe(client, subscription.topic)
            if (refused !== undefined) {
              guard?.onRefused?.("subscribe", client.id, refused, subscription.topic)
              // [MQTT-3.9.3]: a null subscription answers 0x80 (failure) for this filter only.
              return callback(null, null)
            }
            const register = () => {
              if (audience === undefined) return callback(null, subscription)
              // The SUBACK waits until every live instance of the cluster knows the filter.
              audience.register(subscription.topic).then(
                () => callback(null, subscription),
                (error: Error) => {
                  logger.log("warn", "subscription refused: the other instances do not all know its filter yet", { client: client.id, filter: subscription.topic, reason: error.message })
                  callback(null, null)
                }
              )
            }
            if (announcements === undefined) return register()
            // The SUBACK waits until the filter is announced (a new one).
            announcements.gate(client.id, subscription.topic, !client.clean, (granted) => (granted ? register() : callback(null, null)))
          }
        }),
    ...options.aedes
  })
  // A PUBACK (or PUBCOMP) emits `ack` only for a QoS 1/2 message in flight to that connection (the
  // Aedes patch, client.js `_inflightIds`): one for an id never sent, or acknowledged already,
  // lowered the in-flight bound's count below what the client really holds unacknowledged. A new
  // message's id is none of those in flight (qos-packet.js, freshId), and a persistent session's
  // restore writes a stored message only while fewer than `restoreWindow` are (test/idWrap.int.test.ts).
  Object.assign(aedes, { trackInflight: true, restoreInflight: restoreWindow })
  // The Aedes patch, lib/handlers/publish.js: the PUBACK after the publish's store and forward,
  // but for a publish `beforeAck` made durable (acknowledged once it is, as before); in receipt order.
  if (options.ackStored !== false) (aedes as unknown as { ackStored: (client: unknown, packet: object) => boolean }).ackStored = (_client, packet) => !vouched.has(packet)
  // Aedes delivers through its emitter (mqemitter): its matcher (qlobber) holds every live subscription.
  const matcher = (aedes as unknown as { mq: { _matcher: Matcher } }).mq._matcher
  // Whether the matcher holds a subscription of exactly `filter`: qlobber 8 keeps a filter's
  // subscriptions under the separator's key, at the end of the path of its words.
  function holds(filter: string): boolean {
    let node: Trie | undefined = matcher.get_trie()
    for (const word of filter.split("/")) if ((node = node.get(word) as Trie | undefined) === undefined) return false
    return node.has("/")
  }
  // The filters of persistent sessions, connected or not: those in the sessions store from before
  // (aedes-persistence-level keys them `subscriptions:<encoded client id>:<filter>`), then each one
  // Aedes stores (only persistent sessions' are: before it subscribes the client and answers).
  const persistentFilters = Filters.make()
  const remember = persistentFilters.add
  const store = (aedes as unknown as { persistence: { addSubscriptions: (client: unknown, subs: ReadonlyArray<{ readonly topic: string }>) => Promise<void> } }).persistence
  const addSubscriptions = store.addSubscriptions.bind(store)
  store.addSubscriptions = (client, subs) => {
    for (const sub of subs) remember(sub.topic)
    return addSubscriptions(client, subs)
  }
  const stored: Array<string> = []
  if (level !== undefined)
    for await (const key of level.keys({ gte: subscriptionKeys, lt: `${subscriptionKeys.slice(0, -1)};` })) stored.push(key.slice(key.indexOf(":", subscriptionKeys.length) + 1))
  for (const filter of stored) {
    remember(filter)
    announcements?.stored(filter)
  }
  if (level !== undefined) await skipAbsentAcks(level, store as unknown as OutgoingStore)
  aedes.on("clientError", (client, error) => {
    if (reported.has(error)) return
    // Aedes refuses wildcard and empty publish topics itself [MQTT-3.3.2-2], before authorizePublish.
    if (/not allowed in PUBLISH|too many levels/.test(error.message)) guard?.onRefused?.("publish", client.id, error.message)
    else if (/drain timeout/.test(error.message)) guard?.onRefused?.("slow-consumer", client.id, "stopped reading its socket; disconnected after the drain timeout")
    // The Aedes patch, client.js `_restoreStalled`: publishers waited on a restore waiting for PUBACKs.
    else if (/restore timeout/.test(error.message)) guard?.onRefused?.("slow-consumer", client.id, "left its restored messages unacknowledged while publishers waited; disconnected after the drain timeout")
    else logger.log("warn", "mqtt client error", { client: client.id, reason: error.message })
  })
  aedes.on("client", () => {
    connections++
  })
  aedes.on("ack", (_packet, client) => {
    const n = inflight.get(client)
    if (n !== undefined && n > 0) inflight.set(client, n - 1)
  })
  // After a takeover this is the old connection's, reported once the new one was authenticated.
  aedes.on("clientDisconnect", (client) => {
    connections--
    guard?.disconnected?.(client)
  })

  const sockets = new Set<Socket>()
  const onActivity = options.onActivity
  const onSocket = (socket: Socket) => {
    // Aedes reads its connections on `readable` (`conn.read()`): a second listener reads nothing.
    if (onActivity !== undefined) socket.on("readable", onActivity)
    socket.setNoDelay(true)
    sockets.add(socket)
    socket.on("close", () => sockets.delete(socket))
    aedes.handle(socket)
  }
  const tcp: Server = options.tls === undefined ? createServer(onSocket) : createTlsServer({ cert: options.tls.cert, key: options.tls.key }, onSocket)
  const web = options.tls === undefined ? undefined : createHttpsServer({ cert: options.tls.cert, key: options.tls.key })
  let ws: WebSocketServer | undefined
  let mqttPort: number
  let wsPort: number | undefined
  try {
    mqttPort = await listen(tcp, "MQTT", options.host, options.mqttPort)
    if (options.wsPort !== undefined) {
      const handleProtocols = (p: Set<string>) => (p.has("mqtt") ? "mqtt" : false)
      if (web === undefined) {
        ws = new WebSocketServer({ host: options.host, port: options.wsPort, handleProtocols })
        wsPort = await listen(ws, "MQTT over WebSocket", options.host, options.wsPort)
      } else {
        ws = new WebSocketServer({ server: web, handleProtocols })
        wsPort = await listen(web, "MQTT over WebSocket", options.host, options.wsPort)
      }
      ws.on("connection", (socket, request) => {
        const stream = createWebSocketStream(socket)
        if (onActivity !== undefined) stream.on("readable", onActivity)
        aedes.handle(stream, request)
      })
    }
  } catch (error) {
    if (tcp.listening) await closeServer(tcp)
    await closeAedes(aedes)
    await level?.close()
    throw error
  }

  const publish = (topic: string, payload: string | Buffer, qos: QoS = 1): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const packet = { cmd: "publish", topic, payload: typeof payload === "string" ? Buffer.from(payload) : payload, qos, retain: false, dup: false } as PublishPacket
      aedes.publish(packet, (error) => (error ? reject(error) : resolve()))
    })

  let closing: Promise<void> | undefined
  const close = () => {
    closing ??= (async () => {
      const servers = [closeServer(tcp), ...(ws === undefined ? [] : [closeServer(ws)]), ...(web?.listening === true ? [closeServer(web)] : [])]
      await audience?.close()
      await closeAedes(aedes)
      for (const socket of sockets) socket.destroy()
      if (ws !== undefined) for (const client of ws.clients) client.terminate()
      await Promise.all(servers)
      await level?.close()
    })()
    return closing
  }

  const subscriptions = (clientId: string): ReadonlyArray<string> =>
    Object.keys((aedes as unknown as { clients: Record<string, { subscriptions?: Record<string, unknown> } | undefined> }).clients[clientId]?.subscriptions ?? {})
  // Whether a live subscription matches a topic, cached by topic until the matcher changes (a
  // subscription added or removed, a client gone): asked for every event a processor emits, where
  // the matcher's walk and the array of its matches were ~0.8% of an order's CPU. A filter's
  // announcement may be dropped once the matcher removed a subscription of it.
  const live = new Map<string, boolean>()
  for (const name of ["add", "remove", "clear"]) {
    const change = matcher[name]
    if (typeof change !== "function") continue
    matcher[name] = function (this: unknown, ...args: Array<unknown>) {
      try {
        return (change as (...a: Array<unknown>) => unknown).apply(this, args)
      } finally {
        live.clear()
        if (name !== "add") announcements?.removed(args[0] as string | undefined)
      }
    }
  }
  const subscribed = (topic: string): boolean => {
    let hit = live.get(topic)
    if (hit === undefined) {
      hit = matcher.match(topic).length > 0
      if (live.size >= 10_000) live.clear()
      live.set(topic, hit)
    }
    return hit
  }
  const hasSubscribers = (topic: string): boolean | undefined => (mq === undefined ? subscribed(topic) : undefined)
  const wanted = (topic: string): boolean | undefined => {
    if (audience !== undefined) return matcher.match(topic).length > 0 || audience.wanted(topic)
    if (mq !== undefined || sessions.kind === "redis") return undefined
    return subscribed(topic) || persistentFilters.matches(topic)
  }
  return { host: options.host, mqttPort, wsPort, publish, subscriptions, hasSubscribers, wanted, connections: () => aedes.connectedClients, persistentFilters: stored, close }
}
