/**
 * A raw MQTT 3.1.1 client (mqtt-packet over TCP) with a persistent session that acknowledges no
 * PUBLISH by itself: the test says when, so it can hold many QoS 1/2 messages unacknowledged and see
 * every packet id they came with. QoS 1 is acknowledged with PUBACK, QoS 2 with PUBREC; the broker's
 * PUBREL is answered with PUBCOMP at once.
 */
import { createRequire } from "node:module"
import { connect as tcp } from "node:net"

// mqtt-packet as aedes resolves it.
const mqttPacket = createRequire(createRequire(import.meta.url).resolve("aedes"))("mqtt-packet") as {
  generate: (packet: object) => Buffer
  parser: () => { on: (e: string, f: (p: Record<string, unknown>) => void) => void; parse: (b: Buffer) => number }
}

export interface Delivery {
  readonly payload: string
  readonly messageId: number
  readonly qos: number
}

/**
 * Connects `clientId` with a persistent session (clean false unless `options.clean`, no keepalive)
 * and subscribes to `subscriptions`; none (`[]`) for a connection that takes the session's
 * subscriptions as they are.
 */
export const connect = async (
  port: number,
  clientId: string,
  subscriptions: ReadonlyArray<{ topic: string; qos: 0 | 1 | 2 }>,
  options: { readonly clean?: boolean } = {}
) => {
  const socket = tcp(port, "127.0.0.1")
  socket.setNoDelay(true)
  socket.on("error", () => {})
  const parser = mqttPacket.parser()
  /** Every PUBLISH received, in order. */
  const got: Array<Delivery> = []
  /** Message id -> QoS, received and not acknowledged yet (QoS 2: no PUBREC sent yet). */
  const outstanding = new Map<number, number>()
  /** QoS 2 ids acknowledged with PUBREC whose PUBREL has not come yet: still in flight. */
  const releasing = new Set<number>()
  /** PUBLISHes that came with an id still in flight [MQTT-2.3.1-2]. */
  const reused: Array<Delivery> = []
  let lastAt = Date.now()
  let closed = false
  const waiting = new Map<string, () => void>()
  socket.on("close", () => { closed = true })
  const send = (packet: object) => socket.write(mqttPacket.generate(packet))
  parser.on("packet", (p) => {
    // Every packet is the broker at work for `quiet` (a PUBREL too: its PUBCOMP frees a place in the
    // restore's window); the PINGRESP comes only inside `ack`, which starts the wait again after it.
    lastAt = Date.now()
    if (p.cmd === "publish") {
      const d = { payload: String(p.payload), messageId: p.messageId as number, qos: p.qos as number }
      got.push(d)
      if (d.qos !== 0) {
        if (outstanding.has(d.messageId) || releasing.has(d.messageId)) reused.push(d)
        outstanding.set(d.messageId, d.qos)
      }
    } else if (p.cmd === "pubrel") {
      releasing.delete(p.messageId as number)
      send({ cmd: "pubcomp", messageId: p.messageId })
    }
    waiting.get(p.cmd as string)?.()
  })
  socket.on("data", (b) => parser.parse(b))
  const reply = (cmd: string) => new Promise<void>((resolve) => waiting.set(cmd, resolve))
  const connack = reply("connack")
  send({ cmd: "connect", protocolId: "MQTT", protocolVersion: 4, clean: options.clean ?? false, clientId, keepalive: 0 })
  await connack
  if (subscriptions.length > 0) {
    const suback = reply("suback")
    send({ cmd: "subscribe", messageId: 1, subscriptions })
    await suback
  }
  /** Resolves once the broker handled what was sent before (it answers the PINGREQ after it), or at once when the connection is closed. */
  const handled = async () => {
    if (closed) return
    const pong = reply("pingresp")
    send({ cmd: "pingreq" })
    await pong
    // `quiet` from now on: what the acknowledgements let the broker send comes after them.
    lastAt = Date.now()
  }
  return {
    got,
    outstanding,
    reused,
    /** Whether the connection is closed (by the broker, or `close`). */
    get closed() { return closed },
    /** Resolves once nothing arrived for `quietMs` (since the last `ack`, too). */
    quiet: async (quietMs: number) => {
      while (Date.now() - lastAt < quietMs) await new Promise((r) => setTimeout(r, quietMs / 4))
    },
    /**
     * Acknowledges the `count` oldest outstanding messages (all by default), in the order they came
     * [MQTT-4.6.0-2]; resolves once the broker handled the acknowledgements (it answers the PINGREQ
     * after them), or at once when the connection is closed.
     */
    ack: async (count = Infinity) => {
      for (const [messageId, qos] of [...outstanding].slice(0, count)) {
        send({ cmd: qos === 1 ? "puback" : "pubrec", messageId })
        outstanding.delete(messageId)
        if (qos === 2) releasing.add(messageId)
      }
      await handled()
    },
    /**
     * Acknowledges `messageId` with a PUBACK, whether or not this connection was sent it (a QoS 1
     * acknowledgement out of order, or of another session's id), then as `ack`.
     */
    ackId: async (messageId: number) => {
      send({ cmd: "puback", messageId })
      outstanding.delete(messageId)
      await handled()
    },
    close: () =>
      new Promise<void>((resolve) => {
        if (socket.closed) return resolve()
        socket.once("close", () => resolve())
        socket.destroy()
      })
  }
}
