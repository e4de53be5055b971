/**
 * A persistent session's QoS 2 message whose PUBREC reached the broker (stored as a PUBREL) must
 * be released again with its own message id after a reconnect [MQTT-4.4.0-1]: the client holds
 * the message under that id until the PUBREL. A message queued before it without an id (dropped
 * for the connection by the in-flight limit, so kept in the session) is restored first and
 * numbered from the new connection's random start: it must not take that id.
 */
import { afterAll, afterEach, describe, expect, it, vi } from "vitest"
import mqtt from "mqtt"
import { EmbeddedBroker } from "@baton/broker-aedes"
import { freshSessions, type Kind } from "./sessions.ts"
import { until, within } from "./waits.ts"

const cleanup: Array<() => unknown> = []
afterAll(async () => {
  for (const c of cleanup) await c()
})
afterEach(() => {
  vi.restoreAllMocks()
})

/** A fresh store of `kind`: the same one for every broker started on it. */
const store = (kind: Kind): EmbeddedBroker.Sessions => freshSessions(kind, cleanup)

type Inner = { _sendPacket: (packet: { cmd: string; messageId?: number }, ...rest: Array<unknown>) => void; stream: NodeJS.ReadableStream }

describe("a persistent session's QoS 2 messages across its connections", () => {
  it.each(["memory", "disk", "redis"] as const)(
    "%s sessions store: a message released before a reconnect reaches the client after it, as does the one queued before it",
    async (kind) => {
      const guard: EmbeddedBroker.Guard = { connect: async () => ({ ok: true }), publish: () => undefined, subscribe: () => undefined, maxInflight: 1 }
      const broker = await EmbeddedBroker.start({ host: "127.0.0.1", mqttPort: 0, sessions: store(kind), guard })
      const url = `mqtt://127.0.0.1:${broker.mqttPort}`
      // The client's own session state (its QoS 2 messages received, not yet released), kept across its connections.
      const incomingStore = new mqtt.Store()
      // (mqtt.js closes a client's stores as it ends: this one is the session's, it stays open.)
      incomingStore.close = (cb) => cb?.()
      const opts = { protocolVersion: 4 as const, reconnectPeriod: 0, clean: false, clientId: "pubrel-ids", incomingStore }
      const open: Array<mqtt.MqttClient> = []
      // Aedes' Client: _nextId = Math.ceil(Math.random() * 65535), set as the server accepts the socket.
      // Records what the client gets from its CONNACK on: its messages, and the PUBLISH and PUBREL packets.
      const connect = async (firstId: number) => {
        const spy = vi.spyOn(Math, "random").mockReturnValue((firstId - 0.5) / 65535)
        const c = mqtt.connect(url, opts)
        open.push(c)
        c.on("error", () => {})
        const got: Array<string> = []
        const wire: Array<string> = []
        c.on("message", (_t, p) => got.push(p.toString()))
        c.on("packetreceive", (p) => {
          if (p.cmd === "publish" || p.cmd === "pubrel") wire.push(`${p.cmd} ${p.messageId}`)
        })
        await within(new Promise((r) => c.once("connect", r)), 10_000, "CONNACK")
        spy.mockRestore()
        return { c, got, wire }
      }
      try {
        const first = await mqtt.connectAsync(url, { ...opts, incomingStore: new mqtt.Store() })
        await first.subscribeAsync("k/#", { qos: 2 })
        await first.endAsync()

        // First connection, numbering from 1: "a" goes as id 1, its PUBREC held (one in flight).
        const { c: one, got: got1, wire: wire1 } = await connect(1)
        const inner = one as unknown as Inner
        const send = inner._sendPacket.bind(one)
        const held: Array<() => void> = []
        let stopAfterPubrec = false
        inner._sendPacket = (packet, ...rest) => {
          if (packet.cmd === "pubrec" && packet.messageId === 1) return void held.push(() => send(packet, ...rest))
          send(packet, ...rest)
          // "c"'s PUBREC sent, the client reads nothing more (its PUBREL is not handled): it stops.
          if (packet.cmd === "pubrec" && stopAfterPubrec) (inner.stream as unknown as { unpipe: () => void }).unpipe()
        }
        await broker.publish("k/1", "a", 2)
        await until(() => held.length === 1)
        // "b": over the in-flight limit, not sent; it stays queued in the session, without an id.
        await broker.publish("k/1", "b", 2)
        held.splice(0).forEach((f) => f())
        await until(() => got1.includes("a"))
        await new Promise((r) => setTimeout(r, 200))
        // "c" goes as id 2; the broker gets its PUBREC (stored as a PUBREL), the client its PUBREL never.
        stopAfterPubrec = true
        await broker.publish("k/1", "c", 2)
        await new Promise((r) => setTimeout(r, 500))
        one.end(true)
        await until(() => broker.connections() === 0)
        expect(got1, JSON.stringify(wire1)).toEqual(["a"])

        // Second connection, numbering from 2: "b" (no id yet) is restored first.
        const { got: got2, wire } = await connect(2)
        await until(() => got2.includes("b") && got2.includes("c"), 5_000)
        // The PUBREL of "c" keeps the id the client acknowledged it with; "b" gets another one.
        expect(wire, JSON.stringify(wire)).toContain("pubrel 2")
        expect(wire.filter((w) => w === "publish 2"), JSON.stringify(wire)).toEqual([])
        expect(got2.sort(), JSON.stringify(wire)).toEqual(["b", "c"])
      } finally {
        for (const c of open) c.end(true)
        await broker.close()
      }
    },
    60_000
  )
})
