/**
 * The in-flight bound (`Guard.maxInflight`: unacknowledged QoS 1/2 messages to one client) and a
 * persistent session's stored messages at its restore. Aedes clears a stored message that
 * `authorizeForward` refuses at a restore, so with the bound the messages a session had kept past
 * it were deleted: a client slow to acknowledge lost them at its reconnect. They are all sent,
 * in order (the stored stream writes one at a time, each after the previous write; a client that
 * stops reading is disconnected after the drain timeout), and the bound applies to live messages
 * (a refused one is kept for the session's next connection, in each of the three stores: the
 * memory store's seeming loss was this test's listener, attached after the CONNACK it was behind).
 */
import { afterAll, describe, expect, it } from "vitest"
import mqtt from "mqtt"
import { EmbeddedBroker } from "@baton/broker-aedes"
import { freshSessions, type Kind } from "./sessions.ts"
import { until, within } from "./waits.ts"

const cleanup: Array<() => unknown> = []
afterAll(async () => {
  for (const c of cleanup) await c()
})

/** A fresh store of `kind`: the same one for every broker started on it. */
const store = (kind: Kind): EmbeddedBroker.Sessions => freshSessions(kind, cleanup)

type Inner = { _sendPacket: (packet: { cmd: string; messageId?: number }, ...rest: Array<unknown>) => void }

describe("a persistent session's stored messages and the in-flight bound", () => {
  it.each(["memory", "disk", "redis"] as const)(
    "%s sessions store: a client that does not acknowledge gets every stored message at its reconnect, in order, and the bound still refuses live ones",
    async (kind) => {
      const refused: Array<string> = []
      const guard: EmbeddedBroker.Guard = { connect: async () => ({ ok: true }), publish: () => undefined, subscribe: () => undefined, maxInflight: 3, onRefused: (what, _c, _r, topic) => void refused.push(`${what} ${topic}`) }
      const broker = await EmbeddedBroker.start({ host: "127.0.0.1", mqttPort: 0, sessions: store(kind), guard })
      const url = `mqtt://127.0.0.1:${broker.mqttPort}`
      const opts = { protocolVersion: 4 as const, reconnectPeriod: 0, clean: false, clientId: "slow-acker" }
      const open: Array<mqtt.MqttClient> = []
      try {
        const first = await mqtt.connectAsync(url, opts)
        open.push(first)
        await first.subscribeAsync("k/#", { qos: 1 })
        await first.endAsync()
        await until(() => broker.connections() === 0)
        // Ten messages kept for the session while it is away.
        for (let i = 0; i < 10; i++) await broker.publish("k/1", `m${i}`, 1)

        // It comes back and acknowledges nothing (its PUBACKs are held back).
        const c = mqtt.connect(url, opts)
        open.push(c)
        c.on("error", () => {})
        const got: Array<string> = []
        c.on("message", (_t, p) => got.push(p.toString()))
        const inner = c as unknown as Inner
        const send = inner._sendPacket.bind(c)
        const acks: Array<() => void> = []
        // (Its send callback is called at once: mqtt.js reads its next packet after it.)
        inner._sendPacket = (packet, ...rest) => {
          if (packet.cmd !== "puback") return send(packet, ...rest)
          acks.push(() => send(packet))
          const done = rest.find((r) => typeof r === "function") as (() => void) | undefined
          done?.()
        }
        await within(new Promise((r) => c.once("connect", r)), 10_000, "CONNACK")
        await until(() => got.length >= 10, 5_000)
        expect(got, `refused: ${JSON.stringify(refused)}`).toEqual(Array.from({ length: 10 }, (_, i) => `m${i}`))
        expect(refused).toEqual([])

        // A live message while ten are unacknowledged: over the bound, refused (kept in the session).
        await broker.publish("k/1", "live", 1)
        await until(() => refused.length > 0, 2_000)
        expect(refused).toEqual(["inflight k/1"])
        expect(got).not.toContain("live")
        // Acknowledged: the ten restored ones leave the count, so a live message goes again
        // (its PUBACK held back too: it stays in the session).
        acks.splice(0).forEach((f) => f())
        await new Promise((r) => setTimeout(r, 300))
        await broker.publish("k/1", "after", 1)
        await until(() => got.includes("after"), 2_000)
        expect(refused).toEqual(["inflight k/1"])
        // Gone, back: the refused live one then, the unacknowledged one, and none of the ten again.
        c.end(true)
        await until(() => broker.connections() === 0)
        // Its listener before the CONNACK: a stored message can come right behind it.
        const again = mqtt.connect(url, opts)
        open.push(again)
        again.on("error", () => {})
        const got2: Array<string> = []
        again.on("message", (_t, p) => got2.push(p.toString()))
        await until(() => got2.length >= 2, 5_000)
        await new Promise((r) => setTimeout(r, 300))
        expect(got2).toEqual(["live", "after"])
      } finally {
        for (const c of open) c.end(true)
        await broker.close()
      }
    },
    60_000
  )
})
