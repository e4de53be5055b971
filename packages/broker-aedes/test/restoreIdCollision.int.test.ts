/**
 * A persistent session restores messages a previous connection was sent (they keep the packet id
 * they went out with, QoSPacket, as MQTT requires [MQTT-4.4.0-1]) and messages never sent (they get
 * the connection's next id, which starts at a random value). When a new id equals a kept one, two
 * messages are in flight with one id, and the client's PUBACK of the first cleared the second from
 * the store (on disk, and in Redis: the store's id-to-message index points at the second). A
 * message the client never acknowledged must come again on the next connection. The test sets the
 * next id onto the first kept one, where in production it lands by chance (per reconnect, about
 * (kept + new ids) / 65535 of the time).
 */
import { afterAll, describe, expect, it } from "vitest"
import mqtt from "mqtt"
import { aedesBroker, aedesPersistence, aedesPublish } from "./sessions.ts"
import { until } from "./waits.ts"

const cleanup: Array<() => unknown> = []
afterAll(async () => {
  for (const c of cleanup) await c()
})

const kinds = ["memory", "disk", "redis"] as const

interface Got {
  readonly payload: string
  readonly messageId: number
}

/**
 * A persistent-session client that records the messages it gets (payload, packet id) and keeps its
 * PUBACKs: `release(ack)` sends those of the ones `ack` chooses, the others are never sent (the
 * client goes on reading: with mqtt.js' handleMessage, a message not acknowledged stops it).
 */
const connect = (url: string, clientId = "id-collide") => {
  const client = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, clean: false, clientId })
  const got: Array<Got> = []
  const kept: Array<{ readonly packet: { cmd: string; messageId: number }; readonly payload: string }> = []
  const send = (client as unknown as { _sendPacket: (packet: { cmd: string; messageId: number }, cb?: () => void) => void })._sendPacket.bind(client)
  const byId = new Map<number, string>()
  ;(client as unknown as { _sendPacket: typeof send })._sendPacket = (packet, cb) => {
    if (packet.cmd !== "puback") return send(packet, cb)
    kept.push({ packet, payload: byId.get(packet.messageId)! })
    cb?.()
  }
  client.on("message", (_t, p, packet) => {
    got.push({ payload: p.toString(), messageId: packet.messageId! })
    byId.set(packet.messageId!, p.toString())
  })
  const release = (ack: (payload: string) => boolean) => {
    for (const k of kept.splice(0)) if (ack(k.payload)) send(k.packet)
  }
  return { client, got, release }
}

describe.each(kinds)("a %s session's restore whose new packet ids meet the ones its stored messages kept", (kind) => {
  it.each(["queued before the reconnect", "published after it"] as const)("messages %s: each in flight has its own packet id, and one the client never acknowledged comes again on the next connection", async (when) => {
    const { aedes, url, clients, close } = await aedesBroker({ persistence: aedesPersistence(kind, cleanup) })
    try {
      const first = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clean: false, clientId: "id-collide" })
      await first.subscribeAsync("k/#", { qos: 1 })
      await first.endAsync()
      for (let i = 0; i < 10; i++) await aedesPublish(aedes, `m${i}`, 1)
      // A connection that gets m0..m9 and acknowledges none of them.
      const a = connect(url)
      clients.push(a.client)
      await until(() => a.got.length === 10, 5_000)
      expect(a.got.map((g) => g.payload)).toEqual(Array.from({ length: 10 }, (_, k) => `m${k}`))
      a.client.stream.destroy()
      await new Promise((r) => setTimeout(r, 200))
      if (when === "queued before the reconnect") for (let i = 10; i < 20; i++) await aedesPublish(aedes, `m${i}`, 1)
      // The next connection's ids start (by chance, here set) at m0's: m10..m19 would get m0..m9's
      // (restored with the stored ones, or live once they are).
      aedes.once("connackSent", (_connack, client) => {
        ;(client as unknown as { _nextId: number })._nextId = a.got[0]!.messageId
      })
      // It gets all 20, acknowledges m0..m9 once it has them all, none of m10..m19, then dies.
      const b = connect(url)
      clients.push(b.client)
      if (when === "published after it") {
        await until(() => b.got.length === 10, 5_000)
        for (let i = 10; i < 20; i++) await aedesPublish(aedes, `m${i}`, 1)
      }
      await until(() => b.got.length === 20, 5_000)
      let acks = 0
      aedes.on("ack", () => acks++)
      b.release((m) => Number(m.slice(1)) < 10)
      await until(() => acks === 10, 5_000)
      b.client.stream.destroy()
      await new Promise((r) => setTimeout(r, 200))
      const c = connect(url)
      clients.push(c.client)
      await until(() => c.got.some((g) => g.payload === "m19"), 3_000)
      const lost = Array.from({ length: 10 }, (_, k) => `m${k + 10}`).filter((m) => !c.got.some((g) => g.payload === m))
      expect({
        // m0..m9 went again with the ids they kept [MQTT-4.4.0-1]
        kept: b.got.slice(0, 10).map((g) => g.messageId),
        // all 20 were in flight at once, each with an id of its own
        distinct: new Set(b.got.map((g) => g.messageId)).size,
        lost
      }, `B got ${JSON.stringify(b.got)}; C got ${JSON.stringify(c.got)}`).toEqual({ kept: a.got.map((g) => g.messageId), distinct: 20, lost: [] })
    } finally {
      await close()
    }
  }, 20_000)
})

/**
 * aedes-persistence-redis keeps a QoS 1 message once for all its subscribers, with the packet id it
 * was last sent with, to any of them: a session's stored message it was never sent comes back with
 * another session's id, which may equal the one another of its stored messages kept.
 */
describe("a redis session's stored messages with one packet id (another session's, kept for all in Redis)", () => {
  it("go out with ids of their own, and one the client never acknowledged comes again on the next connection", async () => {
    const { aedes, url, clients, close } = await aedesBroker({ persistence: aedesPersistence("redis", cleanup) })
    const subscribe = async (clientId: string) => {
      const c = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clean: false, clientId })
      await c.subscribeAsync("k/#", { qos: 1 })
      await c.endAsync()
    }
    const session = async (clientId: string, messages: number) => {
      const s = connect(url, clientId)
      clients.push(s.client)
      await until(() => s.got.length === messages, 5_000)
      return s
    }
    const die = async (s: ReturnType<typeof connect>) => {
      s.client.stream.destroy()
      await new Promise((r) => setTimeout(r, 200))
    }
    try {
      await subscribe("q")
      await aedesPublish(aedes, "m0", 1)
      // q is sent m0 (id X) and does not acknowledge it.
      const q1 = await session("q", 1)
      await die(q1)
      await subscribe("p")
      await aedesPublish(aedes, "m1", 1)
      // p is sent m1 with X too (its ids start, by chance, here set, at X), kept for q as well.
      aedes.once("connackSent", (_connack, client) => {
        ;(client as unknown as { _nextId: number })._nextId = q1.got[0]!.messageId
      })
      await die(await session("p", 1))
      // q gets m0 and m1, acknowledges m0 once it has both, then dies; the next q must get m1.
      const q2 = await session("q", 2)
      let acks = 0
      aedes.on("ack", () => acks++)
      q2.release((m) => m === "m0")
      await until(() => acks === 1, 5_000)
      await die(q2)
      const q3 = await session("q", 1)
      expect({
        payloads: q2.got.map((g) => g.payload),
        distinct: new Set(q2.got.map((g) => g.messageId)).size,
        again: q3.got.map((g) => g.payload)
      }, `q got ${JSON.stringify(q2.got)}`).toEqual({ payloads: ["m0", "m1"], distinct: 2, again: ["m1"] })
    } finally {
      await close()
    }
  }, 20_000)
})

/**
 * aedes-persistence-redis moves a QoS 2 message's PUBREL to the end of the session's list when the
 * client's PUBREC comes, behind messages stored meanwhile and never sent (here: not authorized to
 * go then; in production, held for a connection that died before it got them). The next
 * connection must send the PUBREL with the id the client's PUBREC had [MQTT-4.4.0-1], and its new
 * messages must not take that id, though they go out before it.
 */
describe("a redis session's PUBREL stored behind a message never sent", () => {
  it("goes again with its id, and the message before it gets another", async () => {
    let deny = false
    const { aedes, url, clients, close } = await aedesBroker({
      persistence: aedesPersistence("redis", cleanup),
      authorizeForward: (_client: unknown, packet: unknown) => (deny ? null : packet)
    })
    const opts = { protocolVersion: 4 as const, reconnectPeriod: 0, clean: false, clientId: "id-pubrel" }
    /** A client that records the packets it gets and sends none of its PUBRECs and PUBCOMPs until `release`. */
    const connectQoS2 = () => {
      const client = mqtt.connect(url, opts)
      clients.push(client)
      const got: Array<{ cmd: string; messageId: number; payload?: string }> = []
      client.on("packetreceive", (p) => {
        if (p.cmd === "publish" || p.cmd === "pubrel") got.push({ cmd: p.cmd, messageId: p.messageId!, ...(p.cmd === "publish" ? { payload: p.payload.toString() } : {}) })
      })
      const send = (client as unknown as { _sendPacket: (packet: { cmd: string }, cb?: () => void) => void })._sendPacket.bind(client)
      const heldBack: Array<{ cmd: string }> = []
      ;(client as unknown as { _sendPacket: typeof send })._sendPacket = (packet, cb) => {
        if (packet.cmd !== "pubrec" && packet.cmd !== "pubcomp") return send(packet, cb)
        heldBack.push(packet)
        cb?.()
      }
      return { client, got, release: (cmd: string) => heldBack.splice(0).forEach((p) => p.cmd === cmd && send(p)) }
    }
    try {
      const first = await mqtt.connectAsync(url, opts)
      await first.subscribeAsync("k/#", { qos: 2 })
      await first.endAsync()
      const qos2 = (payload: string) => aedesPublish(aedes, payload, 2)
      const a = connectQoS2()
      await new Promise((r) => a.client.once("connect", r))
      await qos2("m0")
      await until(() => a.got.length === 1, 5_000)
      // m1 is stored for the session and not sent; then the client's PUBREC of m0 comes.
      deny = true
      await qos2("m1")
      deny = false
      a.release("pubrec")
      await until(() => a.got.length === 2, 5_000)
      expect(a.got).toEqual([{ cmd: "publish", messageId: a.got[0]!.messageId, payload: "m0" }, { cmd: "pubrel", messageId: a.got[0]!.messageId }])
      a.client.stream.destroy()
      await new Promise((r) => setTimeout(r, 200))
      // The next connection numbers its new messages (by chance, here set) from m0's id.
      const x = a.got[0]!.messageId
      aedes.once("connackSent", (_connack, client) => {
        ;(client as unknown as { _nextId: number })._nextId = x
      })
      const b = connectQoS2()
      await until(() => b.got.length === 2, 5_000)
      const m1 = b.got.find((p) => p.cmd === "publish")
      expect({ pubrel: b.got.find((p) => p.cmd === "pubrel")?.messageId, m1: m1?.payload, m1Id: m1?.messageId === x ? "m0's" : "another" }, JSON.stringify(b.got)).toEqual({
        pubrel: x,
        m1: "m1",
        m1Id: "another"
      })
    } finally {
      await close()
    }
  }, 20_000)
})
