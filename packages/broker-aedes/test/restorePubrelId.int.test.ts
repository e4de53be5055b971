/**
 * QoS 2 across a reconnect: the stored PUBREL goes again with the id of the client's PUBREC
 * [MQTT-4.4.0-1], and no other message is in flight with that id while it is (a PUBACK or PUBCOMP
 * of the other then clears the wrong stored message).
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
  readonly cmd: string
  readonly messageId: number
  readonly payload?: string
}

/** A persistent-session client that records the PUBLISH/PUBREL it gets and holds every PUBACK, PUBREC and PUBCOMP it would send until `release`. */
const holding = (url: string, clientId: string, clients: Array<mqtt.MqttClient>) => {
  const client = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, clean: false, clientId })
  clients.push(client)
  const got: Array<Got> = []
  client.on("packetreceive", (p) => {
    if (p.cmd === "publish" || p.cmd === "pubrel") got.push({ cmd: p.cmd, messageId: p.messageId!, ...(p.cmd === "publish" ? { payload: p.payload.toString() } : {}) })
  })
  const send = (client as unknown as { _sendPacket: (packet: { cmd: string; messageId: number }, cb?: () => void) => void })._sendPacket.bind(client)
  const held: Array<{ cmd: string; messageId: number }> = []
  ;(client as unknown as { _sendPacket: typeof send })._sendPacket = (packet, cb) => {
    if (packet.cmd !== "puback" && packet.cmd !== "pubrec" && packet.cmd !== "pubcomp") return send(packet, cb)
    held.push(packet)
    cb?.()
  }
  const release = (which: (p: { cmd: string; messageId: number }) => boolean) => {
    for (let i = 0; i < held.length; ) {
      if (which(held[i]!)) send(held.splice(i, 1)[0]!)
      else i++
    }
  }
  const die = async () => {
    client.stream.destroy()
    await new Promise((r) => setTimeout(r, 200))
  }
  return { client, got, release, die }
}

const subscribe = async (url: string, clientId: string, qos: 1 | 2, filter = "k/#") => {
  const c = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clean: false, clientId })
  await c.subscribeAsync(filter, { qos })
  await c.endAsync()
}

describe.each(kinds)("a %s session's QoS 2 message across a reconnect", (kind) => {
  it("PUBREC received, PUBREL stored, reconnect: the PUBREL comes again with its id, its PUBCOMP ends it, and a new message is never given that id while it is in flight", async () => {
    const { aedes, url, clients, close } = await aedesBroker({ persistence: aedesPersistence(kind, cleanup) })
    try {
      await subscribe(url, "q2", 2)
      const a = holding(url, "q2", clients)
      await new Promise((r) => a.client.once("connect", r))
      await aedesPublish(aedes, "m0", 2)
      await until(() => a.got.length === 1, 5_000)
      const x = a.got[0]!.messageId
      a.release((p) => p.cmd === "pubrec")
      await until(() => a.got.length === 2, 5_000)
      expect(a.got[1]).toEqual({ cmd: "pubrel", messageId: x })
      await a.die()
      // The next connection numbers its new messages (by chance, here set) from x.
      aedes.once("connackSent", (_c, client) => {
        ;(client as unknown as { _nextId: number })._nextId = x
      })
      const b = holding(url, "q2", clients)
      await until(() => b.got.length === 1, 5_000)
      await aedesPublish(aedes, "m1", 2)
      await until(() => b.got.length === 2, 5_000)
      expect(b.got[0]).toEqual({ cmd: "pubrel", messageId: x })
      expect(b.got[1]!.payload).toBe("m1")
      expect(b.got[1]!.messageId).not.toBe(x)
      // PUBCOMP of m0 ends it; m1 is still unacknowledged and must come again.
      let acks = 0
      aedes.on("ack", () => acks++)
      b.release((p) => p.cmd === "pubcomp" && p.messageId === x)
      await until(() => acks === 1, 5_000)
      await b.die()
      const c = holding(url, "q2", clients)
      await until(() => c.got.length >= 1, 5_000)
      await new Promise((r) => setTimeout(r, 300))
      expect(c.got.map((g) => g.payload ?? g.cmd)).toEqual(["m1"])
    } finally {
      await close()
    }
  }, 20_000)
})

/**
 * In Redis a QoS 1 message is stored once for all its sessions, with the id it was last sent with
 * to any of them; a QoS 2 message's PUBREL is moved to the end of the session's list. A session's
 * stored QoS 1 message, never sent to it, can so carry the very id of its stored PUBREL (another
 * session's id), ahead of it.
 */
describe("a redis session's stored PUBREL and a stored message carrying its id (another session's)", () => {
  it("go out with distinct ids, and a message published after the PUBCOMP is not lost when the other's PUBACK comes", async () => {
    let deny = false
    const { aedes, url, clients, close } = await aedesBroker({
      persistence: aedesPersistence("redis", cleanup),
      authorizeForward: (client: { id: string }, packet: unknown) => (deny && client.id === "q" ? null : packet)
    })
    try {
      await subscribe(url, "q", 2)
      await subscribe(url, "p", 1, "k/2")
      // q is sent m0 (QoS 2, id X) and its PUBREC is held.
      const a = holding(url, "q", clients)
      await new Promise((r) => a.client.once("connect", r))
      await aedesPublish(aedes, "m0", 2)
      await until(() => a.got.length === 1, 5_000)
      const x = a.got[0]!.messageId
      // m1 (QoS 1) is stored for q and p, not sent to q (not authorized then); p gets it offline.
      deny = true
      await aedesPublish(aedes, "m1", 1, "k/2")
      deny = false
      // q's PUBREC: its PUBREL is stored at the end of q's list, behind m1.
      a.release((p) => p.cmd === "pubrec")
      await until(() => a.got.length === 2, 5_000)
      await a.die()
      // p is sent m1 with X (its ids start, by chance, here set, at X): m1's record now says X.
      aedes.once("connackSent", (_c, client) => {
        ;(client as unknown as { _nextId: number })._nextId = x
      })
      const p = holding(url, "p", clients)
      await until(() => p.got.length === 1, 5_000)
      expect(p.got[0]).toEqual({ cmd: "publish", messageId: x, payload: "m1" })
      await p.die()
      // q reconnects: m1 and the PUBREL of m0 are restored.
      aedes.once("connackSent", (_c, client) => {
        ;(client as unknown as { _nextId: number })._nextId = x
      })
      const b = holding(url, "q", clients)
      await until(() => b.got.length === 2, 5_000)
      const pubrel = b.got.find((g) => g.cmd === "pubrel")
      const m1 = b.got.find((g) => g.payload === "m1")
      // The PUBCOMP of m0 first, then m2 live, then the PUBACK of m1; m2 is never acknowledged.
      let acks = 0
      aedes.on("ack", () => acks++)
      b.release((g) => g.cmd === "pubcomp")
      await until(() => acks === 1, 5_000)
      await aedesPublish(aedes, "m2", 1)
      await until(() => b.got.some((g) => g.payload === "m2"), 5_000)
      b.release((g) => g.cmd === "puback" && g.messageId === m1?.messageId)
      await until(() => acks === 2, 5_000)
      await b.die()
      const c = holding(url, "q", clients)
      await until(() => c.got.some((g) => g.payload === "m2"), 3_000)
      expect({ pubrel: pubrel?.messageId, m1Distinct: m1 !== undefined && m1.messageId !== pubrel?.messageId, m2Again: c.got.some((g) => g.payload === "m2") }, `B got ${JSON.stringify(b.got)}; C got ${JSON.stringify(c.got)}`).toEqual({
        pubrel: x,
        m1Distinct: true,
        m2Again: true
      })
    } finally {
      await close()
    }
  }, 30_000)
})
