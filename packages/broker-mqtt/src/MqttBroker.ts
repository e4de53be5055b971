/**
 * A Broker over MQTT.js: any MQTT 3.1.1/5 broker by URL. One connection publishes; each subscription has its own connection, because
 * under 3.1.1 MQTT.js acknowledges serially and stops reading its socket while a handler runs
 * (docs/platform-facts.md, MQTT.js): a handler that published on the same connection would deadlock.
 */
import type { Socket } from "node:net"
import mqtt, { type MqttClient, type IClientOptions, type IPublishPacket } from "mqtt"
import type { Broker, Handler, QoS, SubscribeOptions, Subscription } from "@baton/core"
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
const connect = (client: MqttClient, where: string, timeoutMs: number): Promise<void> =>
  new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`no CONNACK for ${client.options.clientId ?? "?"} from ${where} within ${timeoutMs} ms`)), timeoutMs)
    const cleanup = () => {
      clearTimeout(timer)
      client.off("connect", ok)
      client.off("error", fail)
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
    client.on("connect", ok)
    client.on("error", fail)
    client.connect()
  })

// Nagle's algorithm costs ~15 ms per QoS 1 hop (docs/platform-facts.md, TCP).
const noDelay = (client: MqttClient) =>
  client.on("connect", () => {
    const socket = client.stream as Partial<Socket>
    socket.setNoDelay?.(true)
  })

export const make = async (options: Options): Promise<Broker> => {
  const logger = options.logger ?? Log.silent
  const where = options.url
  const timeout = options.connectDeadlineMs ?? 30_000
  const subscriptions = new Set<Subscription>()

  const publisher = open(options, { clientId: `${options.clientPrefix}publisher`, clean: true })
  noDelay(publisher)
  publisher.on("error", (e) => logger.log("warn", "mqtt publisher error", { reason: e.message }))
  await connect(publisher, where, timeout)

  const publish = async (topic: string, payload: string | Buffer, qos: QoS = 1): Promise<void> => {
    await publisher.publishAsync(topic, payload, { qos })
  }

  const subscribe = async (sub: SubscribeOptions, handler: Handler): Promise<Subscription> => {
    const clientId = sub.unprefixed === true ? sub.clientId : `${options.clientPrefix}${sub.clientId}`
    const client = open(options, { clientId, clean: false })
    noDelay(client)
    client.on("error", (e) => logger.log("warn", "mqtt subscriber error", { client: clientId, reason: e.message }))
    client.on("reconnect", () => logger.log("warn", "mqtt reconnecting", { client: clientId }))
    // Acknowledge only after the handler settled. Set before connecting: messages queued in the
    // session are flushed right after CONNACK (docs/platform-facts.md, MQTT.js).
    client.handleMessage = (packet: IPublishPacket, done) => {
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
      await connect(client, where, timeout)
      granted = await client.subscribeAsync(
        sub.topics.map((t) => t),
        { qos: sub.qos ?? 1 }
      )
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
        await client.endAsync()
      }
    }
    subscriptions.add(subscription)
    return subscription
  }

  const close = async () => {
    await Promise.all([...subscriptions].map((s) => s.close()))
    await publisher.endAsync()
  }

  return { publish, subscribe, close }
}
