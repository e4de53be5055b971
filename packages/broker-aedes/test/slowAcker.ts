/**
 * A raw MQTT 3.1.1 subscriber (mqtt-packet over TCP) that acknowledges nothing by itself: the test
 * says when, so it can hold many QoS 1 messages unacknowledged and see every packet id they came with.
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
}

/** Connects `clientId` with a persistent session (subscribed to `filter` at QoS 1 unless `subscribe` is false). */
export const connect = async (port: number, clientId: string, filter: string, subscribe = true) => {
  const socket = tcp(port, "127.0.0.1")
  socket.setNoDelay(true)
  socket.on("error", () => {})
  const parser = mqttPacket.parser()
  /** Every PUBLISH received, in order. */
  const got: Array<Delivery> = []
  /** Message ids received and not acknowledged yet. */
  const outstanding = new Set<number>()
  /** PUBLISHes that came with an id still outstanding [MQTT-2.3.1-2]. */
  const reused: Array<Delivery> = []
  let lastAt = Date.now()
  const waiting = new Map<string, () => void>()
  parser.on("packet", (p) => {
    if (p.cmd === "publish") {
      const d = { payload: String(p.payload), messageId: p.messageId as number }
      got.push(d)
      lastAt = Date.now()
      if (p.qos !== 0) {
        if (outstanding.has(d.messageId)) reused.push(d)
        outstanding.add(d.messageId)
      }
    }
    waiting.get(p.cmd as string)?.()
  })
  socket.on("data", (b) => parser.parse(b))
  const reply = (cmd: string) => new Promise<void>((resolve) => waiting.set(cmd, resolve))
  const send = (packet: object) => socket.write(mqttPacket.generate(packet))
  const connack = reply("connack")
  send({ cmd: "connect", protocolId: "MQTT", protocolVersion: 4, clean: false, clientId, keepalive: 0 })
  await connack
  if (subscribe) {
    const suback = reply("suback")
    send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: filter, qos: 1 }] })
    await suback
  }
  return {
    got,
    outstanding,
    reused,
    /** Resolves once nothing arrived for `quietMs` (since the last `ack`, too). */
    quiet: async (quietMs: number) => {
      while (Date.now() - lastAt < quietMs) await new Promise((r) => setTimeout(r, quietMs / 4))
    },
    /**
     * Acknowledges the `count` oldest outstanding messages (all by default), in the order they came
     * [MQTT-4.6.0-2]; resolves once the broker handled the PUBACKs (it answers the PINGREQ after them).
     */
    ack: async (count = Infinity) => {
      for (const messageId of [...outstanding].slice(0, count)) {
        send({ cmd: "puback", messageId })
        outstanding.delete(messageId)
      }
      const pong = reply("pingresp")
      send({ cmd: "pingreq" })
      await pong
      // `quiet` from now on: what the acknowledgements let the broker send comes after them.
      lastAt = Date.now()
    },
    close: () =>
      new Promise<void>((resolve) => {
        if (socket.closed) return resolve()
        socket.once("close", () => resolve())
        socket.destroy()
      })
  }
}
