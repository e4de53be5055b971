/**
 * The embedded Aedes broker: MQTT over TCP and over WebSocket for outside clients, and in-process
 * connections (a duplex pair handed to `aedes.handle`) for the runtime's own sessions, so internal
 * hops never cross TCP. Aedes 1.x speaks MQTT 3.1.1 only (PLATFORM-FACTS.md).
 */
import { createServer, type AddressInfo, type Server, type Socket } from "node:net"
import { duplexPair, type Duplex } from "node:stream"
import { Aedes, type AedesOptions, type PublishPacket } from "aedes"
import { Level } from "level"
import persistenceLevel from "aedes-persistence-level"
import persistenceRedis from "aedes-persistence-redis"
import { WebSocketServer, createWebSocketStream } from "ws"
import { Log, PortInUseError, type QoS } from "@baton/core"

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
  readonly logger?: Log.Logger
  readonly aedes?: AedesOptions
}

export type Sessions =
  | { readonly kind: "memory" }
  | { readonly kind: "disk"; readonly dir: string }
  | { readonly kind: "redis"; readonly url: string }

/** Queued messages delivered per reconnect; Redis persistence defaults to 1000 (PLATFORM-FACTS.md). */
const maxSessionDelivery = 1_000_000

const redisOptions = (url: string) => {
  const u = new URL(url)
  if (u.protocol !== "redis:" && u.protocol !== "rediss:") throw new Error(`BATON_REDIS_URL must be a redis:// URL, got '${url}'`)
  return {
    host: u.hostname,
    port: u.port === "" ? 6379 : Number(u.port),
    ...(u.username === "" ? {} : { username: decodeURIComponent(u.username) }),
    ...(u.password === "" ? {} : { password: decodeURIComponent(u.password) }),
    ...(u.pathname.length > 1 ? { db: Number(u.pathname.slice(1)) } : {}),
    ...(u.protocol === "rediss:" ? { tls: {} } : {}),
    maxSessionDelivery
  }
}

export interface EmbeddedBroker {
  readonly host: string
  readonly mqttPort: number
  readonly wsPort: number | undefined
  /** A new in-process connection to the broker, for an MQTT client's stream builder. */
  readonly connect: () => Duplex
  /** Publishes in-process; resolves once the broker stored and forwarded the message. */
  readonly publish: (topic: string, payload: string | Buffer, qos?: QoS) => Promise<void>
  readonly close: () => Promise<void>
}

const listen = (server: Server | WebSocketServer, listener: string, host: string, port: number): Promise<number> =>
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

const closeServer = (server: Server | WebSocketServer): Promise<void> =>
  new Promise<void>((resolve) => server.close(() => resolve()))

const closeAedes = (aedes: Aedes): Promise<void> => new Promise<void>((resolve) => aedes.close(() => resolve()))

export const start = async (options: Options): Promise<EmbeddedBroker> => {
  const logger = options.logger ?? Log.silent
  const sessions = options.sessions ?? { kind: "memory" }
  const level = sessions.kind === "disk" ? new Level(sessions.dir) : undefined
  const persistence =
    sessions.kind === "disk" ? persistenceLevel(level) : sessions.kind === "redis" ? persistenceRedis(redisOptions(sessions.url)) : undefined
  const beforeAck = options.beforeAck
  const aedes = await Aedes.createBroker({
    ...(persistence === undefined ? {} : { persistence }),
    ...(beforeAck === undefined
      ? {}
      : {
          authorizePublish: (client, packet, callback) => {
            const payload = typeof packet.payload === "string" ? Buffer.from(packet.payload) : packet.payload
            const pending = beforeAck(client?.id ?? "", packet.topic, payload, packet.qos)
            if (pending === undefined) return callback(null)
            pending.then(
              () => callback(null),
              (error: Error) => {
                logger.log("error", "publish not stored, connection dropped so the client resends", { client: client?.id, topic: packet.topic, reason: error.message })
                callback(error)
              }
            )
          }
        }),
    ...options.aedes
  })
  aedes.on("clientError", (client, error) => logger.log("warn", "mqtt client error", { client: client.id, reason: error.message }))

  const sockets = new Set<Socket>()
  const tcp = createServer((socket) => {
    socket.setNoDelay(true)
    sockets.add(socket)
    socket.on("close", () => sockets.delete(socket))
    aedes.handle(socket)
  })
  let ws: WebSocketServer | undefined
  let mqttPort: number
  let wsPort: number | undefined
  try {
    mqttPort = await listen(tcp, "MQTT", options.host, options.mqttPort)
    if (options.wsPort !== undefined) {
      ws = new WebSocketServer({ host: options.host, port: options.wsPort, handleProtocols: (p) => (p.has("mqtt") ? "mqtt" : false) })
      wsPort = await listen(ws, "MQTT over WebSocket", options.host, options.wsPort)
      ws.on("connection", (socket, request) => aedes.handle(createWebSocketStream(socket), request))
    }
  } catch (error) {
    if (tcp.listening) await closeServer(tcp)
    await closeAedes(aedes)
    await level?.close()
    throw error
  }

  const connect = (): Duplex => {
    const [client, server] = duplexPair()
    // A duplex pair does not pass a close across; MQTT.js waits for 'close' to finish `end`.
    server.once("close", () => client.destroy())
    client.once("close", () => server.destroy())
    aedes.handle(server)
    return client
  }

  const publish = (topic: string, payload: string | Buffer, qos: QoS = 1): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const packet = { cmd: "publish", topic, payload: typeof payload === "string" ? Buffer.from(payload) : payload, qos, retain: false, dup: false } as PublishPacket
      aedes.publish(packet, (error) => (error ? reject(error) : resolve()))
    })

  let closing: Promise<void> | undefined
  const close = () => {
    closing ??= (async () => {
      const servers = [closeServer(tcp), ...(ws === undefined ? [] : [closeServer(ws)])]
      await closeAedes(aedes)
      for (const socket of sockets) socket.destroy()
      if (ws !== undefined) for (const client of ws.clients) client.terminate()
      await Promise.all(servers)
      await level?.close()
    })()
    return closing
  }

  return { host: options.host, mqttPort, wsPort, connect, publish, close }
}
