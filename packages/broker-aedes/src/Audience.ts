/**
 * What the clustered brokers on one Redis subscribe to, known on every instance: the topic filters
 * of every client's SUBSCRIBE on any of them (clean or persistent, connected or gone: a filter is
 * never forgotten), so that an instance can tell an event nobody subscribes to anywhere and need
 * not write it to its outbox nor publish it through Redis (`EmbeddedBroker.wanted`).
 *
 * The rule it keeps: a client whose SUBACK came back on instance B gets every matching event that
 * instance A decides to announce after that SUBACK. B answers a SUBSCRIBE with a filter not known
 * yet only once every other live instance knows it: B adds it to the `filters` set, publishes it on
 * the cluster's control channel, and waits for an acknowledgement of each peer, publishing again
 * every `retryMs` for those not heard yet (one that subscribed to the channel late). Peers are the
 * instances live in the cluster table (`live`) that registered here (the `brokers` set: an instance
 * of an earlier version, which never acknowledges, publishes every event anyway; while one is live,
 * a persistent session may subscribe through it unannounced, so `wanted` does not answer then, and
 * the stored sessions' filters are read again once none is: `olderLive`). A filter all of
 * them acknowledged is `confirmed`, and a later SUBSCRIBE of it waits for nobody.
 *
 * An instance that starts subscribes to the channel, registers in `brokers`, waits to be live in
 * the cluster table, and only then reads the filters: a filter B added before B read the peers is
 * in that read, one added after reaches it on the channel (B waits for it). Until that read, and
 * whenever its control connection is down until it is back and has read the filters again, it does
 * not know: `wanted` says so (undefined) and every event goes out as before.
 */
import type { Redis } from "ioredis"
import { Log, Topics } from "@baton/core"
import * as Filters from "./Filters.ts"

export interface Options {
  /** The clustered broker's emitter (mqemitter-redis): the control messages go through it. */
  readonly bus: Bus
  /** A connection for the sets (the sessions', under their `keyPrefix`). */
  readonly sets: Redis
  readonly instance: string
  /** The instances live in the cluster table now. */
  readonly live: () => Promise<ReadonlyArray<string>>
  /** Filters known from elsewhere at start (persistent sessions stored before the registry). */
  readonly stored?: () => Promise<Iterable<string>>
  readonly logger: Log.Logger
  readonly retryMs?: number
  /** A SUBSCRIBE that waits longer than this for the peers is refused (SUBACK 0x80). */
  readonly timeoutMs?: number
}

export interface Audience {
  /** Whether a known filter matches `topic`; undefined until this instance knows every filter, and for a reply. */
  readonly wanted: (topic: string) => boolean | undefined
  /** Resolves once every live peer knows `filter` (before the SUBACK); rejects past `timeoutMs`. */
  readonly register: (filter: string) => Promise<void>
  readonly close: () => Promise<void>
}

/** What of mqemitter-redis is used: its channels are scoped as the broker's (`channelScope`). */
export interface Bus {
  readonly on: (topic: string, listener: (packet: { readonly payload: unknown }, done: () => void) => void, subscribed: () => void) => unknown
  readonly emit: (packet: { readonly topic: string; readonly payload: Buffer; readonly cmd: "publish"; readonly qos: 0; readonly retain: false }, done: (error?: Error) => void) => unknown
  /** The subscriber connection: its losses, and a SUBSCRIBE confirmed again after a reconnection. */
  readonly subConn: Redis
}

/** The control topic: `$` keeps it out of clients' `#` and `+` subscriptions [MQTT-4.7.2-1]. */
export const controlTopic = "$baton/audience"

type Message = { readonly op: "add"; readonly filter: string; readonly req: string; readonly from: string } | { readonly op: "ack"; readonly req: string; readonly from: string }

const filtersKey = "baton:audience:filters"
const confirmedKey = "baton:audience:confirmed"
const brokersKey = "baton:audience:brokers"

/**
 * @param channel the control topic's Redis channel, as the bus names it (scoped).
 */
export const start = async (options: Options, channel: string): Promise<Audience> => {
  const { instance, logger } = options
  const retryMs = options.retryMs ?? 200
  const timeoutMs = options.timeoutMs ?? 15_000
  const known = Filters.make()
  const learn = known.add
  const confirmed = new Set<string>()
  // Acknowledgements awaited, by request: the peers heard so far, and a wake-up.
  const awaiting = new Map<string, { readonly heard: Set<string>; wake: () => void }>()
  const registering = new Map<string, Promise<void>>()
  let certain = false
  /** A live instance without the registry is in the cluster (see `olderLive`). */
  let older = false
  let closed = false
  let requests = 0

  const { bus, sets: pub } = options
  const sub = bus.subConn
  const send = (m: Message) =>
    new Promise<void>((resolve, reject) =>
      bus.emit({ cmd: "publish", topic: controlTopic, payload: Buffer.from(JSON.stringify(m)), qos: 0, retain: false }, (error) => (error ? reject(error) : resolve()))
    )
  const onMessage = (payload: unknown) => {
    let m: Message
    try {
      m = JSON.parse(String(payload)) as Message
    } catch {
      return
    }
    if (m.from === instance) return
    if (m.op === "add") {
      learn(m.filter)
      void send({ op: "ack", req: m.req, from: instance }).catch(() => undefined)
    } else {
      const waiting = awaiting.get(m.req)
      if (waiting !== undefined) {
        waiting.heard.add(m.from)
        waiting.wake()
      }
    }
  }

  /** Reads every filter (after the subscription to the channel is up): from then on this instance knows. */
  const load = async () => {
    const [all, done, stored] = await Promise.all([pub.smembers(filtersKey), pub.smembers(confirmedKey), options.stored?.() ?? []])
    for (const f of [...all, ...stored]) learn(f)
    for (const f of done) confirmed.add(f)
  }
  /**
   * Once subscribed to the channel: waits to be live in the cluster table, then reads the filters
   * (see the header). `epoch` counts the control connection's losses: a read begun before one
   * does not make this instance certain after it.
   */
  let epoch = 0
  let failing = false
  const becomeCertain = async (since: number) => {
    while (!closed && since === epoch) {
      try {
        if ((await options.live()).includes(instance)) {
          older = await olderLive()
          await load()
          if (since === epoch) certain = true
          failing = false
          return
        }
      } catch (error) {
        // The store or Redis out of reach: they log their outages; one line here until it works.
        if (!failing) logger.log("warn", "broker audience: cluster members or filters not read, retrying", { reason: Log.reason(error) })
        failing = true
      }
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  // The control connection lost: messages meanwhile are lost, so until it is subscribed again and
  // the filters are read again, this instance does not know.
  sub.on("close", () => {
    certain = false
    epoch++
  })
  // First subscribed to the channel, then registered as a peer, then certain (see the header);
  // after a reconnection, subscribed again before the filters are read again.
  // ioredis subscribes again by itself on reconnection; the filters are read once Redis confirmed
  // a SUBSCRIBE sent after it (Redis takes a repeated one as a no-op).
  let started = false
  sub.on("ready", () => {
    if (!started) return
    const since = epoch
    sub.subscribe(channel).then(() => becomeCertain(since), () => undefined)
  })
  await new Promise<void>((resolve) =>
    bus.on(
      controlTopic,
      (packet, done) => {
        onMessage(packet.payload)
        done()
      },
      resolve
    )
  )
  await pub.hset(brokersKey, instance, String(Date.now()))
  started = true
  void becomeCertain(epoch)

  /**
   * A live instance that does not keep the registry (an earlier version, during a rolling upgrade):
   * a persistent session subscribing through it is not announced, so while one is live this
   * instance does not know (`wanted` undefined: every event goes out), and once none is, it reads
   * the stored sessions' filters again before it answers. Checked every `retryMs * 5`.
   */
  const olderLive = async (): Promise<boolean> => {
    const [live, brokers] = await Promise.all([options.live(), pub.hkeys(brokersKey)])
    const registered = new Set(brokers)
    return live.some((m) => m !== instance && !registered.has(m))
  }
  let checking = false
  const watch = setInterval(() => {
    if (checking || closed || !certain) return
    checking = true
    const since = epoch
    olderLive()
      .then(async (now) => {
        if (now) older = true
        else if (older) {
          await load()
          if (since === epoch) older = false
        }
      })
      .catch(() => undefined)
      .finally(() => (checking = false))
  }, retryMs * 5)
  watch.unref()

  const peers = async (): Promise<ReadonlyArray<string>> => {
    const [live, brokers] = await Promise.all([options.live(), pub.hkeys(brokersKey)])
    const registered = new Set(brokers)
    return live.filter((m) => m !== instance && registered.has(m))
  }

  const announce = async (filter: string): Promise<void> => {
    await pub.sadd(filtersKey, filter)
    learn(filter)
    const req = `${instance}:${++requests}:${Date.now()}`
    const waiting = { heard: new Set<string>(), wake: () => undefined as void }
    awaiting.set(req, waiting)
    const deadline = Date.now() + timeoutMs
    try {
      for (;;) {
        if (closed) throw new Error("broker closing")
        // The members not read (the store out of reach a moment): again after a while.
        const missing = await peers().then(
          (ps) => ps.filter((p) => !waiting.heard.has(p)),
          (error: unknown) => [`(members not read: ${Log.reason(error)})`]
        )
        if (missing.length === 0) break
        if (Date.now() > deadline) throw new Error(`no acknowledgement of the filter from ${missing.join(",")} within ${timeoutMs} ms`)
        const heard = new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, retryMs)
          waiting.wake = () => {
            if (missing.every((p) => waiting.heard.has(p))) {
              clearTimeout(timer)
              resolve()
            }
          }
        })
        await send({ op: "add", filter, req, from: instance })
        await heard
      }
    } finally {
      awaiting.delete(req)
    }
    await pub.sadd(confirmedKey, filter)
    confirmed.add(filter)
  }

  return {
    wanted: (topic) => {
      if (!certain || older || Topics.isReply(topic)) return undefined
      return known.matches(topic)
    },
    register: (filter) => {
      // A filter under `reply/` matches reply topics only, and a reply always goes out: a client's
      // temporary reply topic (one a request) waits for nobody.
      if (confirmed.has(filter) || filter.startsWith(Topics.replyPrefix)) return Promise.resolve()
      let running = registering.get(filter)
      if (running === undefined) {
        running = announce(filter).finally(() => registering.delete(filter))
        registering.set(filter, running)
      }
      return running
    },
    close: async () => {
      closed = true
      certain = false
      clearInterval(watch)
      await pub.hdel(brokersKey, instance).catch(() => undefined)
    }
  }
}
