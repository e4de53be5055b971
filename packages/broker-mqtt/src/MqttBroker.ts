/**
 * A Broker over MQTT.js: any MQTT 3.1.1/5 broker by URL. One connection publishes; each subscription has its own connection, because
 * under 3.1.1 MQTT.js acknowledges serially and stops reading its socket while a handler runs
 * (docs/platform-facts.md, MQTT.js): a handler that published on the same connection would deadlock.
 */
import type { Socket } from "node:net"
import mqtt, { type MqttClient, type IClientOptions, type IPublishPacket } from "mqtt"
import type { BatchHandler, Broker, Handler, Message, QoS, SubscribeOptions, Subscription } from "@baton/core"
import { Log } from "@baton/core"

export interface Options {
  /** `mqtt://host:port`, `mqtts://`, `ws://`, `wss://`. */
  readonly url: string
  /** Prefix of every client id this broker opens. */
  readonly clientPrefix: string
  readonly username?: string
  readonly password?: string
  readonly logger?: Log.Logger
  /** How long one connection attempt may wait for its CONNACK before MQTT.js tries again. */
  readonly connectTimeoutMs?: number
  /** How long `make` and `subscribe` wait, over all attempts, for the first CONNACK. */
  readonly connectDeadlineMs?: number
  /** How long `close` waits for a connected client's graceful end (its publishes acknowledged). */
  readonly closeGraceMs?: number
  /** Aborts `make` while it waits for the first CONNACK (a signal at start). */
  readonly signal?: AbortSignal
}

/** The broker as `make` returns it: with `stopping`, which the runtime calls when it starts shutting down. */
export interface MqttBroker extends Broker {
  /**
   * From now on the broker out of reach is not waited for: the publishes in flight fail at once
   * (their outbox entries stay, for the next start) when the publisher is disconnected or loses
   * its connection, instead of waiting for a reconnect that the shutdown would wait for forever.
   */
  readonly stopping: () => void
}

const base = (options: Options): IClientOptions => ({
  protocolVersion: 4,
  reconnectPeriod: 500,
  connectTimeout: options.connectTimeoutMs ?? 3_000,
  keepalive: 30,
  manualConnect: true,
  ...(options.username === undefined ? {} : { username: options.username }),
  ...(options.password === undefined ? {} : { password: options.password })
})

const open = (options: Options, clientOptions: IClientOptions): MqttClient => mqtt.connect(options.url, { ...base(options), ...clientOptions })

/**
 * Connects, failing with a readable reason on a connection error or when no CONNACK came by the
 * deadline. A CONNACK that does not come in `connectTimeoutMs` is retried by MQTT.js (once seen
 * with Aedes and Redis sessions right after a crash: one attempt hung, the next one succeeded).
 */
/** Clients whose connect was aborted: ended on purpose, whatever MQTT.js emits afterwards. */
const givenUp = new WeakSet<MqttClient>()

const connect = (client: MqttClient, where: string, timeoutMs: number, signal?: AbortSignal): Promise<void> =>
  new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`no CONNACK for ${client.options.clientId ?? "?"} from ${where} within ${timeoutMs} ms`)), timeoutMs)
    const aborted = () => {
      // Given up, not out of reach: no outage to log.
      givenUp.add(client)
      fail(new Error("stopped while connecting"))
    }
    const cleanup = () => {
      clearTimeout(timer)
      client.off("connect", ok)
      client.off("error", fail)
      signal?.removeEventListener("abort", aborted)
    }
    const ok = () => {
      cleanup()
      resolve()
    }
    const fail = (error: Error) => {
      cleanup()
      client.end(true)
      reject(new Error(`cannot connect to MQTT broker at ${where}: ${error.message}`))
    }
    if (signal?.aborted === true) return aborted()
    client.on("connect", ok)
    client.on("error", fail)
    signal?.addEventListener("abort", aborted)
    client.connect()
  })

/** `promise`, unless `signal` aborts first (then fails at once; the client is ended by the caller). */
const unlessAborted = <A>(client: MqttClient, promise: Promise<A>, signal: AbortSignal): Promise<A> =>
  new Promise<A>((resolve, reject) => {
    const aborted = () => {
      givenUp.add(client)
      reject(new Error("stopped while subscribing"))
    }
    if (signal.aborted) return aborted()
    signal.addEventListener("abort", aborted)
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", aborted))
  })

/**
 * Logs a client's outage once: its first error (then quiet while it reconnects every 500 ms), and
 * "mqtt reconnected" when a CONNACK comes again.
 */
const logOutage = (client: MqttClient, logger: Log.Logger, what: string, fields: Record<string, string>) => {
  let down = false
  client.on("error", (e) => {
    if (down || givenUp.has(client)) return
    down = true
    logger.log("warn", `${what} error, reconnecting every ${client.options.reconnectPeriod ?? 0} ms`, { ...fields, reason: e.message })
  })
  client.on("offline", () => {
    if (down || client.disconnecting || givenUp.has(client)) return
    down = true
    logger.log("warn", `${what} disconnected, reconnecting every ${client.options.reconnectPeriod ?? 0} ms`, fields)
  })
  client.on("connect", () => {
    if (!down) return
    down = false
    logger.log("info", "mqtt reconnected", fields)
  })
}

/**
 * Ends a client without waiting for a broker out of reach: gracefully (DISCONNECT, and the QoS 1/2
 * publishes in flight acknowledged first) while connected, within `graceMs`; at once otherwise.
 */
const end = async (client: MqttClient, graceMs: number): Promise<void> => {
  if (client.connected) {
    let timer: NodeJS.Timeout | undefined
    const ended = await Promise.race([client.endAsync().then(() => true), new Promise<false>((r) => (timer = setTimeout(() => r(false), graceMs)))])
    clearTimeout(timer)
    if (ended) return
  }
  // (MQTT.js calls back once the socket closes, which a closed socket never does again: not awaited.)
  client.end(true)
}

// Nagle's algorithm costs ~15 ms per QoS 1 hop (docs/platform-facts.md, TCP).
const noDelay = (client: MqttClient) =>
  client.on("connect", () => {
    const socket = client.stream as Partial<Socket>
    socket.setNoDelay?.(true)
  })

/** Most messages of one session taken in (handed to the batch handler or waiting for it) and not yet acknowledged. */
const maxUnacknowledged = 1_000

/** Passed to MQTT.js's `handleMessage` callback: the pump goes on to the next packet without sending the PUBACK (sent later, see `batched`). */
const deferred = new Error("acknowledged later")

/**
 * The session's messages through `batch`, those that arrived together at once (group commit).
 * MQTT.js hands a connection's packets over one at a time, the next only once the previous one's
 * `handleMessage` called back, and then sends its acknowledgement. Here a QoS 1 message is taken
 * in and the callback called at once with an error, which MQTT.js reads as "do not acknowledge"
 * and goes on to the next packet: the messages parsed from one read (and others read in the same
 * turn of the event loop) are given to `batch` together, at the end of the turn. Their PUBACKs
 * are sent once `batch` resolved, in the order received ([MQTT-4.6.0-2]); one batch at a time,
 * what arrives meanwhile waits for the next. A message of another QoS (or past
 * `maxUnacknowledged`) is acknowledged by MQTT.js when its batch resolved, and holds the
 * connection's next packets until then. When `batch` fails, the connection is dropped, the
 * messages received on it and not yet handed over are let go (not acknowledged: the broker sends
 * them again, in order), and so are the acknowledgements of messages committed but still due on a
 * connection that closed meanwhile: the broker sends those again too (the inbox takes an id once).
 * `stop` (the subscription closing): nothing more is handed over, what waits is let go (the broker
 * sends it again to the session's next connection); resolves once the batch in progress settled.
 */
const batched = (
  client: MqttClient,
  batch: BatchHandler,
  onFailure: (error: unknown, messages: ReadonlyArray<Message>) => void
): { readonly handleMessage: MqttClient["handleMessage"]; readonly stop: () => Promise<void> } => {
  interface Taken {
    readonly message: Message
    readonly stream: MqttClient["stream"]
    readonly ack: () => void
  }
  let waiting: Array<Taken> = []
  let running = false
  let unacknowledged = 0
  let stopped = false
  /** The batch in progress (settled when none). */
  let current: Promise<void> = Promise.resolve()
  const run = async () => {
    const taken = waiting
    waiting = []
    try {
      await batch(taken.map((t) => t.message))
    } catch (error) {
      onFailure(error, taken.map((t) => t.message))
      // Every connection they came on (a batch can span a reconnect: the lost connection's last
      // messages, then the broker's redeliveries on the new one): one left open would hold its
      // messages unacknowledged (MQTT 3.1.1 redelivers on a reconnect only) while later ones pass.
      const failed = new Set(taken.map((t) => t.stream))
      // Those received after them on the same connections are not handed over (they come again, after these).
      const dropped = waiting.filter((t) => failed.has(t.stream)).length
      waiting = waiting.filter((t) => !failed.has(t.stream))
      unacknowledged -= taken.length + dropped
      for (const stream of failed) stream.destroy()
      running = false
      next()
      return
    }
    unacknowledged -= taken.length
    for (const t of taken) t.ack()
    running = false
    next()
  }
  const next = () => {
    if (stopped || running || waiting.length === 0) return
    running = true
    current = new Promise<void>((settled) => setImmediate(() => void run().then(settled, settled)))
  }
  const stop = () => {
    stopped = true
    waiting = []
    return current
  }
  const handleMessage: MqttClient["handleMessage"] = (packet: IPublishPacket, done) => {
    // Closing: not taken, not acknowledged (QoS 1: the pump goes on without a PUBACK).
    if (stopped) return packet.qos === 1 ? done(deferred) : undefined
    const payload = typeof packet.payload === "string" ? Buffer.from(packet.payload) : packet.payload
    const stream = client.stream
    const message = { topic: packet.topic, payload }
    unacknowledged++
    if (packet.qos === 1 && unacknowledged <= maxUnacknowledged) {
      const messageId = packet.messageId!
      waiting.push({
        message,
        stream,
        // On the connection it came on only (the broker sends it again on the next one).
        ack: () => {
          if (client.stream === stream && client.connected) (client as unknown as { _sendPacket: (p: object, cb: () => void) => void })._sendPacket({ cmd: "puback", messageId }, () => {})
        }
      })
      done(deferred)
    } else waiting.push({ message, stream, ack: () => client.stream === stream && done() })
    next()
  }
  return { handleMessage, stop }
}

export const make = async (options: Options): Promise<MqttBroker> => {
  const logger = options.logger ?? Log.silent
  const where = options.url
  const timeout = options.connectDeadlineMs ?? 30_000
  const graceMs = options.closeGraceMs ?? 5_000
  const subscriptions = new Set<Subscription>()

  const publisher = open(options, { clientId: `${options.clientPrefix}publisher`, clean: true })
  noDelay(publisher)
  logOutage(publisher, logger, "mqtt publisher", { client: publisher.options.clientId ?? "publisher" })
  await connect(publisher, where, timeout, options.signal)

  // Stopping with the publisher disconnected: no more reconnecting, and what waits for a PUBACK
  // fails now (MQTT.js keeps it for the next connection otherwise, as it must while running).
  let stopped = false
  const abandon = (unanswered = false) => {
    if ((publisher.connected && !unanswered) || stopped) return
    stopped = true
    clearInterval(watchdog)
    publisher.end(true)
    const error = new Error(`MQTT broker at ${where} out of reach while stopping: not published`)
    for (const [id, entry] of Object.entries(publisher.outgoing)) {
      delete publisher.outgoing[Number(id)]
      entry.cb?.(error)
    }
  }
  // Stopping with the publisher connected to a broker that no longer answers (stopped, or a
  // half-open connection: no FIN, no RST), which MQTT.js would notice only at its keepalive
  // timeout (1.5 × 30 s): given up once a publish waited `graceMs` with nothing received.
  let received = 0
  publisher.on("packetreceive", () => received++)
  let watchdog: NodeJS.Timeout | undefined
  const watch = () => {
    let seen = received
    let waitingSince: number | undefined
    watchdog = setInterval(() => {
      if (Object.keys(publisher.outgoing).length === 0 || received !== seen) {
        seen = received
        waitingSince = undefined
        return
      }
      waitingSince ??= Date.now()
      if (Date.now() - waitingSince < graceMs) return
      logger.log("warn", "mqtt publisher: no answer from the broker while stopping, giving up", { client: publisher.options.clientId ?? "publisher", waited: `${graceMs} ms` })
      abandon(true)
    }, Math.max(10, Math.min(250, graceMs / 10)))
    watchdog.unref()
  }
  // Stopping: a session still waiting for its CONNACK is not waited for either.
  const stoppingSignal = new AbortController()
  let stoppingCalled = false
  const stopping = () => {
    if (stoppingCalled) return
    stoppingCalled = true
    stoppingSignal.abort()
    publisher.on("close", () => abandon())
    abandon()
    if (!stopped) watch()
  }

  const publish = async (topic: string, payload: string | Buffer, qos: QoS = 1): Promise<void> => {
    await publisher.publishAsync(topic, payload, { qos })
  }

  const subscribe = async (sub: SubscribeOptions, handler: Handler, batch?: BatchHandler): Promise<Subscription> => {
    const clientId = sub.unprefixed === true ? sub.clientId : `${options.clientPrefix}${sub.clientId}`
    const client = open(options, { clientId, clean: false })
    noDelay(client)
    logOutage(client, logger, "mqtt subscriber", { client: clientId })
    // Acknowledge only after the handler settled. Set before connecting: messages queued in the
    // session are flushed right after CONNACK (docs/platform-facts.md, MQTT.js).
    const handling =
      batch === undefined
        ? undefined
        : batched(client, batch, (error, messages) =>
            logger.log("error", "handler failed, messages left unacknowledged", { client: clientId, topic: messages[0]?.topic ?? "", messages: String(messages.length), reason: Log.reason(error) })
          )
    client.handleMessage = handling !== undefined ? handling.handleMessage : (packet: IPublishPacket, done) => {
      const payload = typeof packet.payload === "string" ? Buffer.from(packet.payload) : packet.payload
      handler({ topic: packet.topic, payload }).then(
        () => done(),
        (error: unknown) => {
          // Not acknowledged: drop the connection so the broker redelivers from the session.
          logger.log("error", "handler failed, message left unacknowledged", {
            client: clientId,
            topic: packet.topic,
            reason: Log.reason(error)
          })
          client.stream.destroy()
        }
      )
    }
    const exclusive = sub.exclusive
    if (exclusive !== undefined)
      client.on("close", () => {
        let mayHold = true
        try {
          mayHold = exclusive()
        } catch {
          // cannot tell: keep reconnecting as any session would
        }
        if (!mayHold && !client.disconnecting) {
          logger.log("info", "mqtt session let go", { client: clientId })
          client.end(true)
        }
      })
    let granted: Awaited<ReturnType<MqttClient["subscribeAsync"]>>
    try {
      // Given up (a signal at start, or stopping) while waiting for the CONNACK or the SUBACK.
      const signal = sub.signal === undefined ? stoppingSignal.signal : AbortSignal.any([sub.signal, stoppingSignal.signal])
      await connect(client, where, timeout, signal)
      granted = await unlessAborted(client, client.subscribeAsync(sub.topics.map((t) => t), { qos: sub.qos ?? 1 }), signal)
      // Closed meanwhile: `close` did not see this one.
      if (closed) throw new Error("broker closed while subscribing")
    } catch (error) {
      // No client left behind reconnecting under this session's id.
      client.end(true)
      throw error
    }
    const refused = granted.filter((g) => g.qos === 128)
    if (refused.length > 0) {
      client.end(true)
      throw new Error(`broker refused subscription to ${refused.map((g) => g.topic).join(", ")} for ${clientId}`)
    }
    const subscription: Subscription = {
      clientId,
      close: async () => {
        subscriptions.delete(subscription)
        // Nothing handed over any more; the batch in progress settles (within the grace) and is
        // acknowledged while still connected, not committed behind the shutdown's back.
        if (handling !== undefined) {
          let timer: NodeJS.Timeout | undefined
          await Promise.race([handling.stop(), new Promise((r) => (timer = setTimeout(r, graceMs)))])
          clearTimeout(timer)
        }
        await end(client, graceMs)
      }
    }
    subscriptions.add(subscription)
    return subscription
  }

  let closed = false
  const close = async () => {
    closed = true
    await Promise.all([...subscriptions].map((s) => s.close()))
    clearInterval(watchdog)
    await end(publisher, graceMs)
  }

  return { publish, subscribe, close, stopping }
}
