/**
 * PUBACKs leave in the order the broker received the PUBLISH packets of a client (MQTT 3.1.1
 * section 4.6, [MQTT-4.6.0-2]), also now that a QoS 1 PUBACK waits for the message's store for
 * the persistent sessions and its forward (`ackStored`, the Aedes patch's lib/handlers/publish.js).
 *
 * Aedes handles the publishes of one socket read side by side: with the PUBACK after the
 * asynchronous store, one stored for many sessions (or with a larger payload) is acknowledged
 * after the next one, stored for none. The publisher writes many QoS 1 PUBLISHes in one write,
 * alternating a topic that many offline persistent sessions subscribe to and one no one does, on
 * a raw socket, and reads the PUBACKs' message ids off the wire. Before the patch's per-client
 * chain of PUBACKs (in receipt order) they went out of order on the disk and Redis stores. The
 * same for QoS 2 and its PUBRECs ([MQTT-4.6.0-3]), which stock Aedes writes after the store too:
 * out of order on disk and Redis before the chain (its own, for PUBRECs), in stock Aedes already.
 */
import { afterAll, describe, expect, it } from "vitest"
import { connect as tcpConnect } from "node:net"
import mqtt from "mqtt"
import { EmbeddedBroker } from "@baton/broker-aedes"
import { MqttWire } from "@baton/testkit"
import { freshSessions } from "./sessions.ts"
import { until } from "./waits.ts"

const cleanup: Array<() => unknown> = []
afterAll(async () => {
  for (const c of cleanup) await c()
})

/** The message ids of the PUBACKs (type 4) or PUBRECs (type 5) read off the wire, in order; `connacked` once the CONNACK came. */
const reader = (ackType: 4 | 5) => {
  const acks: Array<number> = []
  let connacked = false
  const feed = MqttWire.framer((type, _flags, body) => {
    if (type === 2) connacked = true
    if (type === ackType) acks.push(body.readUInt16BE(0))
  })
  return { feed, acks, connacked: () => connacked }
}

const kinds = ["memory", "disk", "redis"] as const

describe.each(kinds)("PUBACK and PUBREC order, %s sessions store", (kind) => {
  it.each([1, 2] as const)("many QoS %s publishes in one write, stored for many sessions or none: acknowledged in receipt order", async (qos) => {
    const broker = await EmbeddedBroker.start({ host: "127.0.0.1", mqttPort: 0, sessions: freshSessions(kind, cleanup) })
    const url = `mqtt://127.0.0.1:${broker.mqttPort}`
    try {
      // Offline persistent sessions on `many/#`: a message there is stored for each of them.
      const sessions = 20
      for (let s = 0; s < sessions; s++) {
        const c = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clean: false, clientId: `order-sub-${s}` })
        await c.subscribeAsync("many/#", { qos: 1 })
        await c.endAsync()
      }
      const r = reader(qos === 1 ? 4 : 5)
      const socket = tcpConnect(broker.mqttPort, "127.0.0.1")
      socket.on("data", r.feed)
      await new Promise<void>((ok, fail) => (socket.once("connect", ok), socket.once("error", fail)))
      socket.write(MqttWire.connectPacket("order-pub", 60))
      await until(r.connacked, 5_000)
      expect(r.connacked()).toBe(true)
      const n = 200
      const big = Buffer.alloc(16 * 1024, 120)
      const small = Buffer.from("x")
      const ids = Array.from({ length: n }, (_, i) => i + 1)
      // One write: Aedes parses it in one read and handles the publishes side by side.
      socket.write(Buffer.concat(ids.map((id) => (id % 2 === 1 ? MqttWire.publishPacket(`many/${id}`, big, qos, id) : MqttWire.publishPacket(`none/${id}`, small, qos, id)))))
      await until(() => r.acks.length >= n, 30_000)
      socket.destroy()
      expect(r.acks).toEqual(ids)
    } finally {
      await broker.close()
    }
  }, 60_000)
})
