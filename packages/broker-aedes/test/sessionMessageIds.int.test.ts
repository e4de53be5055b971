/**
 * A persistent session's messages sent and not acknowledged keep their message id in the store
 * (Aedes' QoSPacket reuses a stored one), and the next connection numbers the messages it sends
 * first from a random id (Aedes' Client): the two can meet. Two messages in flight with one id
 * break the PUBACK's meaning: acknowledging the one the client got must never clear the other,
 * unacknowledged, from the session (it would never be delivered again).
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

/** A fresh store of `kind`: the same one for every broker started on it. */
const store = (kind: Kind): EmbeddedBroker.Sessions => freshSessions(kind, cleanup)
afterEach(() => {
  vi.restoreAllMocks()
})

/**
 * Connects (the broker's side numbering its messages from `firstId`, as Aedes' random start may),
 * and acknowledges a message only if `ack` says so (the others: as if the client stopped first).
 */
const connect = async (url: string, opts: mqtt.IClientOptions, firstId: number, ack: (n: number) => boolean, later = false) => {
  // Aedes' Client: _nextId = Math.ceil(Math.random() * 65535), set as the server accepts the socket.
  const spy = vi.spyOn(Math, "random").mockReturnValue((firstId - 0.5) / 65535)
  const c = mqtt.connect(url, opts)
  c.on("error", () => {})
  const got: Array<{ n: number; id: number }> = []
  const inner = c as unknown as { _sendPacket: (packet: { cmd: string; messageId?: number }, ...rest: Array<unknown>) => void }
  const send = inner._sendPacket.bind(c)
  let last = -1
  const held: Array<() => void> = []
  c.on("message", (_t, p, packet) => {
    last = Number(p.toString())
    got.push({ n: last, id: packet.messageId! })
  })
  // mqtt.js sends a message's PUBACK after its "message" event; its callback lets it read the next.
  inner._sendPacket = (packet, ...rest) => {
    if (packet.cmd !== "puback" || (ack(last) && !later)) return send(packet, ...rest)
    if (ack(last)) held.push(() => send(packet))
    const cb = rest[0]
    if (typeof cb === "function") cb()
  }
  await within(new Promise((r) => c.once("connect", r)), 10_000, "CONNACK")
  spy.mockRestore()
  /** Sends the acknowledgements held (`later`). */
  const release = () => held.splice(0).forEach((f) => f())
  return { c, got, release }
}

describe("a persistent session's message ids across its connections", () => {
  it.each(["memory", "disk", "redis"] as const)(
    "%s sessions store: acknowledging a message never clears another one that has the same message id",
    async (kind) => {
      const broker = await EmbeddedBroker.start({ host: "127.0.0.1", mqttPort: 0, sessions: store(kind) })
      const url = `mqtt://127.0.0.1:${broker.mqttPort}`
      const opts = { protocolVersion: 4 as const, reconnectPeriod: 0, clean: false, clientId: "ids" }
      const open: Array<mqtt.MqttClient> = []
      try {
        const first = await mqtt.connectAsync(url, opts)
        await first.subscribeAsync("k/#", { qos: 1 })
        await first.endAsync()
        const n = 10
        for (let i = 0; i < n; i++) await broker.publish("k/1", String(i), 1)
        // A connection gets 0..9 as ids 1..10 and acknowledges none: they keep those ids.
        const one = await connect(url, opts, 1, () => false)
        open.push(one.c)
        await until(() => one.got.length >= n)
        expect(one.got.map((g) => g.id)).toEqual(Array.from({ length: n }, (_, k) => k + 1))
        one.c.end(true)
        await until(() => broker.connections() === 0)
        // 10..19 queued meanwhile, without ids.
        for (let i = n; i < 2 * n; i++) await broker.publish("k/1", String(i), 1)
        // The next connection starts at id 1 too: 0..9 go with their ids 1..10, 10..19 get 1..10.
        // Its client acknowledges 0..9 (its PUBACKs sent once it got 10..19 too: a slow consumer),
        // and stops before 10..19 are handled.
        const two = await connect(url, opts, 1, (m) => m < n, true)
        open.push(two.c)
        await until(() => two.got.length >= 2 * n)
        two.release()
        expect(two.got.length).toBe(2 * n)
        // Never two messages in flight with one id [MQTT-2.3.1-4].
        expect(new Set(two.got.map((g) => g.id)).size, JSON.stringify(two.got)).toBe(2 * n)
        await new Promise((r) => setTimeout(r, 300))
        two.c.end(true)
        await until(() => broker.connections() === 0)
        // 10..19 were never acknowledged: the next connection gets them.
        const three = await connect(url, opts, 30_000, () => true)
        open.push(three.c)
        const unacked = Array.from({ length: n }, (_, k) => n + k)
        await until(() => unacked.every((m) => three.got.some((g) => g.n === m)), 5_000)
        const missing = unacked.filter((m) => !three.got.some((g) => g.n === m))
        expect(missing, `second connection: ${JSON.stringify(two.got)}`).toEqual([])
      } finally {
        for (const c of open) c.end(true)
        await broker.close()
      }
    },
    60_000
  )
})
