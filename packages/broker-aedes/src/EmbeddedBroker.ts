/**
 * The embedded Aedes broker: MQTT over TCP and over WebSocket for outside clients, and in-process
 * connections (a duplex pair handed to `aedes.handle`) for the runtime's own clients, so internal
 * hops never cross TCP. Aedes 1.x speaks MQTT 3.1.1 only (PLATFORM-FACTS.md).
 */
import { createServer, type AddressInfo, type Server, type Socket } from "node:net"
import { duplexPair, type Duplex } from "node:stream"
import { Aedes, type AedesOptions } from "aedes"
import { WebSocketServer, createWebSocketStream } from "ws"
import { Log, PortInUseError } from "@baton/core"

export interface Options {
  readonly host: string
  /** 0 picks a free port. */
  readonly mqttPort: number
  /** 0 picks a free port; undefined disables MQTT over WebSocket. */
  readonly wsPort?: number
  readonly logger?: Log.Logger
  readonly aedes?: AedesOptions
}

export interface EmbeddedBroker {
  readonly host: string
  readonly mqttPort: number
  readonly wsPort: number | undefined
  /** A new in-process connection to the broker, for an MQTT client's stream builder. */
  readonly connect: () => Duplex
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

export const start = async (options: Options): Promise<EmbeddedBroker> => {
  const logger = options.logger ?? Log.silent
  const aedes = await Aedes.createBroker(options.aedes ?? {})
  aedes.on("clientError", (client, error) =>
    logger.log("warn", "mqtt client error", { client: client.id, reason: error.message })
  )

  const sockets = new Set<Socket>()
  const tcp = createServer((socket) => {
    socket.setNoDelay(true)
    sockets.add(socket)
    socket.on("close", () => sockets.delete(socket))
    aedes.handle(socket)
  })
  let mqttPort: number
  try {
    mqttPort = await listen(tcp, "MQTT", options.host, options.mqttPort)
  } catch (error) {
    await new Promise<void>((resolve) => aedes.close(() => resolve()))
    throw error
  }

  let ws: WebSocketServer | undefined
  let wsPort: number | undefined
  if (options.wsPort !== undefined) {
    ws = new WebSocketServer({
      host: options.host,
      port: options.wsPort,
      handleProtocols: (protocols) => (protocols.has("mqtt") ? "mqtt" : false)
    })
    try {
      wsPort = await listen(ws, "MQTT over WebSocket", options.host, options.wsPort)
    } catch (error) {
      await closeServer(tcp)
      await new Promise<void>((resolve) => aedes.close(() => resolve()))
      throw error
    }
    ws.on("connection", (socket, request) => {
      aedes.handle(createWebSocketStream(socket), request)
    })
  }

  const connect = (): Duplex => {
    const [client, server] = duplexPair()
    // A duplex pair does not pass a close across; MQTT.js waits for 'close' to finish `end`.
    server.once("close", () => client.destroy())
    client.once("close", () => server.destroy())
    aedes.handle(server)
    return client
  }

  let closing: Promise<void> | undefined
  const close = () => {
    closing ??= (async () => {
      const servers = [closeServer(tcp), ...(ws === undefined ? [] : [closeServer(ws)])]
      await new Promise<void>((resolve) => aedes.close(() => resolve()))
      for (const socket of sockets) socket.destroy()
      if (ws !== undefined) for (const client of ws.clients) client.terminate()
      await Promise.all(servers)
    })()
    return closing
  }

  return { host: options.host, mqttPort, wsPort, connect, close }
}
