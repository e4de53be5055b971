/**
 * A raw MQTT 3.1.1 client (mqtt-packet over TCP) acknowledging only when told: QoS 1 with PUBACK,
 * QoS 2 with PUBREC, then PUBCOMP for the broker's PUBREL (at once).
 */
import { createRequire } from "node:module"
import { connect as tcp } from "node:net"

const mqttPacket = createRequire(createRequire(import.meta.url).resolve("aedes"))("mqtt-packet") as {
  generate: (packet: object) => Buffer
  parser: () => { on: (e: string, f: (p: Record<string, unknown>) => void) => void; parse: (b: Buffer) => number }
}

export interface Delivery {
  readonly payload: string
  readonly messageId: number
  readonly qos: number
}

export const connect = async (port: number, clientId: string, subscriptions: ReadonlyArray<{ topic: string; qos: 0 | 1 | 2 }>) => {
  const socket = tcp(port, "127.0.0.1")
  socket.setNoDelay(true)
  socket.on("error", () => {})
  const parser = mqttPacket.parser()
  const got: Array<Delivery> = []
  /** id -> qos, received and not acknowledged yet (QoS 2: no PUBREC sent yet). */
  const outstanding = new Map<number, number>()
  const reused: Array<Delivery> = []
  let lastAt = Date.now()
  let closed = false
  const waiting = new Map<string, () => void>()
  socket.on("close", () => { closed = true })
  const send = (packet: object) => socket.write(mqttPacket.generate(packet))
  parser.on("packet", (p) => {
    lastAt = Date.now()
    if (p.cmd === "publish") {
      const d = { payload: String(p.payload), messageId: p.messageId as number, qos: p.qos as number }
      got.push(d)
      if (d.qos !== 0) {
        if (outstanding.has(d.messageId)) reused.push(d)
        outstanding.set(d.messageId, d.qos)
      }
    } else if (p.cmd === "pubrel") send({ cmd: "pubcomp", messageId: p.messageId })
    waiting.get(p.cmd as string)?.()
  })
  socket.on("data", (b) => parser.parse(b))
  const reply = (cmd: string) => new Promise<void>((resolve) => waiting.set(cmd, resolve))
  const connack = reply("connack")
  send({ cmd: "connect", protocolId: "MQTT", protocolVersion: 4, clean: false, clientId, keepalive: 0 })
  await connack
  if (subscriptions.length > 0) {
    const suback = reply("suback")
    send({ cmd: "subscribe", messageId: 1, subscriptions })
    await suback
  }
  return {
    got,
    outstanding,
    reused,
    get closed() { return closed },
    quiet: async (quietMs: number) => {
      while (Date.now() - lastAt < quietMs) await new Promise((r) => setTimeout(r, quietMs / 4))
    },
    ack: async (count = Infinity) => {
      for (const [messageId, qos] of [...outstanding].slice(0, count)) {
        send({ cmd: qos === 1 ? "puback" : "pubrec", messageId })
        outstanding.delete(messageId)
      }
      if (closed) return
      const pong = reply("pingresp")
      send({ cmd: "pingreq" })
      await pong
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
