/**
 * The in-flight bound (`Guard.maxInflight`) counts a client's PUBACK only for a message in flight
 * to it (Aedes patch, client.js `_inflightIds`): a PUBACK for an id the broker never sent, or sent
 * and already acknowledged, lowered the count, and a client sending such ones received more than
 * the bound unacknowledged. And a QoS 1 message for a QoS 0 subscription (sent at QoS 0, never
 * acknowledged) is not counted: it was, and such a subscriber got no QoS 1 message past the bound.
 * Nor does the PUBCOMP for a PUBREL sent again at a reconnect (not counted) free a place.
 * Nor is a message counted that never gets a PUBACK or PUBCOMP otherwise: a retained QoS 1 message
 * sent at QoS 0 to a QoS 0 subscription of its own topic (deliverQoS downgraded it after
 * authorizeForward counted it), or a stored message of an earlier persistent session that a clean
 * connection of its client id discards unsent (Aedes cleared it after authorizeForward counted it):
 * each took a place for the connection's life, and past as many as the bound the client got none.
 * Nor a live message held for a connection taking a persistent session over, that the old
 * connection got and acknowledged meanwhile (Aedes does not send it again: "no such packet").
 * And a message left unacknowledged keeps its id past 65535 new ones: none goes out with it while
 * it is in flight [MQTT-2.3.1-2] (one did, and of the client's two PUBACKs, the second freed no place).
 */
import { afterAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import mqtt from "mqtt"
import { EmbeddedBroker } from "@baton/broker-aedes"
import { until, within } from "./waits.ts"
import { aedesPersistence, atNextStoreWill } from "./sessions.ts"

const bound = 3

type Packet = { readonly cmd: string; readonly messageId?: number }
type Inner = { _sendPacket: (packet: Packet, ...rest: Array<unknown>) => void }

let refused = 0
const guard: EmbeddedBroker.Guard = {
  connect: async () => ({ ok: true }),
  publish: () => undefined,
  subscribe: () => undefined,
  maxInflight: bound,
  onRefused: (what) => {
    if (what === "inflight") refused++
  }
}
const broker = await EmbeddedBroker.start({ host: "127.0.0.1", mqttPort: 0, guard })
const url = `mqtt://127.0.0.1:${broker.mqttPort}`
afterAll(() => broker.close())

let clients = 0

/** Publishes one QoS 1 message to `topic`; true when it reached the client (that `received` counts the PUBLISHes of), false when the bound refused it. */
const publishTo = async (topic: string, received: () => number): Promise<boolean> => {
  const [r, before] = [received(), refused]
  await broker.publish(topic, "x", 1)
  await until(() => received() + refused > r + before, 3_000)
  return received() > r
}

/** Keeps back the packets `c` would send whose command is in `cmds` (`kept` told of each); returns its own send, for the test's. */
const keepBack = (c: mqtt.MqttClient, cmds: ReadonlyArray<string>, kept: () => void = () => {}) => {
  const inner = c as unknown as Inner
  const original = inner._sendPacket.bind(c)
  // (Its send callback is called at once: mqtt.js reads its next packet after it.)
  inner._sendPacket = (packet, ...rest) => {
    if (!cmds.includes(packet.cmd)) return original(packet, ...rest)
    kept()
    const done = rest.find((r) => typeof r === "function") as (() => void) | undefined
    done?.()
  }
  return original
}
/** A client whose PUBACKs go only when the test sends them (`ack`), or any id (`send`). */
const holding = async (clean: boolean, qos: 0 | 1 = 1) => {
  const c = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clean, clientId: `stray-${clients++}` })
  const original = keepBack(c, ["puback"])
  const held: Array<number> = []
  let received = 0
  c.on("packetreceive", (p) => {
    const packet = p as Packet & { readonly qos?: number }
    if (packet.cmd !== "publish") return
    received++
    if (packet.qos! > 0) held.push(packet.messageId!)
  })
  await c.subscribeAsync("s/#", { qos })
  const send = (messageId: number) => original({ cmd: "puback", messageId })
  // A PINGRESP after the PUBACKs sent before it: the broker handled them (the memory store's clear
  // is a microtask, before the broker's next read).
  const settled = () =>
    within(
      new Promise<void>((resolve) => {
        const on = (p: Packet) => {
          if (p.cmd !== "pingresp") return
          c.off("packetreceive", on)
          resolve()
        }
        c.on("packetreceive", on)
        original({ cmd: "pingreq" })
      }),
      3_000,
      "PINGRESP"
    )
  const publish = () => publishTo("s/1", () => received)
  return { c, held, send, settled, publish, received: () => received }
}

describe.each([true, false])("in-flight bound, clean session %s", (clean) => {
  it("stray PUBACKs (ids never sent, or acknowledged already) do not let more than the bound through", async () => {
    const h = await holding(clean)
    try {
      for (let i = 0; i < bound; i++) expect(await h.publish()).toBe(true)
      const inFlight = new Set(h.held)
      // Ids never sent to it.
      for (let id = 1, n = 0; n < 2 * bound; id++) if (!inFlight.has(id)) (h.send(id), n++)
      await h.settled()
      expect(await h.publish()).toBe(false)
      // One acknowledged, then acknowledged again twice: one more goes, not three.
      const first = h.held.shift()!
      h.send(first)
      await h.settled()
      h.send(first)
      h.send(first)
      await h.settled()
      const outcomes = [await h.publish(), await h.publish(), await h.publish()]
      expect({ outcomes, unacknowledged: h.held.length }).toEqual({ outcomes: [true, false, false], unacknowledged: bound })
    } finally {
      await h.c.endAsync(true)
    }
  }, 20_000)

  it("for all sequences of publishes, PUBACKs and stray PUBACKs: a publish reaches the client exactly when fewer than the bound are unacknowledged", async () => {
    // Publishes more often than PUBACKs, so that the bound is reached.
    const action = fc.oneof(
      { weight: 3, arbitrary: fc.constant({ kind: "publish" as const }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant("ack" as const), pick: fc.nat() }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant("stray" as const), id: fc.integer({ min: 1, max: 65535 }), again: fc.boolean() }) }
    )
    await fc.assert(
      fc.asyncProperty(fc.array(action, { minLength: 1, maxLength: 25 }), async (actions) => {
        const h = await holding(clean)
        const acked: Array<number> = []
        try {
          for (const a of actions) {
            if (a.kind === "publish") {
              const expected = h.held.length < bound
              expect(await h.publish()).toBe(expected)
            } else if (a.kind === "ack") {
              if (h.held.length === 0) continue
              const [id] = h.held.splice(a.pick % h.held.length, 1)
              h.send(id!)
              acked.push(id!)
              await h.settled()
            } else {
              // An id acknowledged already, or one not in flight.
              const id = a.again && acked.length > 0 ? acked[a.id % acked.length]! : a.id
              if (h.held.includes(id)) continue
              h.send(id)
              await h.settled()
            }
            expect(h.held.length).toBeLessThanOrEqual(bound)
          }
        } finally {
          await h.c.endAsync(true)
        }
      }),
      { numRuns: 20 }
    )
  }, 60_000)
})

describe("in-flight bound and a QoS 0 subscription", () => {
  it("QoS 1 messages sent at QoS 0 (never acknowledged) are not counted: all of them reach the client", async () => {
    const h = await holding(true, 0)
    try {
      const outcomes: Array<boolean> = []
      for (let i = 0; i < 3 * bound; i++) outcomes.push(await h.publish())
      expect({ outcomes, received: h.received() }).toEqual({ outcomes: outcomes.map(() => true), received: 3 * bound })
    } finally {
      await h.c.endAsync(true)
    }
  }, 20_000)
})

describe("in-flight bound and a persistent session's stored PUBREL", () => {
  it("the PUBCOMP for a PUBREL restored at a reconnect (not counted) does not free a place", async () => {
    const clientId = `pubrel-${clients++}`
    const opts = { protocolVersion: 4 as const, reconnectPeriod: 0, clean: false, clientId }
    // A QoS 2 message received, its PUBREC sent, its PUBCOMP never: the session keeps its PUBREL.
    const a = await mqtt.connectAsync(url, opts)
    await a.subscribeAsync("p/#", { qos: 2 })
    let pubrel = false
    keepBack(a, ["pubcomp"], () => (pubrel = true))
    await broker.publish("p/1", "q2", 2)
    await until(() => pubrel, 3_000)
    a.stream.destroy()
    await until(() => broker.connections() === 0, 3_000)
    // Back: the PUBREL again; PUBACKs and PUBCOMPs go only when the test sends them.
    const b = mqtt.connect(url, opts)
    const sendB = keepBack(b, ["puback", "pubcomp"])
    const pubrels: Array<number> = []
    let received = 0
    b.on("packetreceive", (p) => {
      const packet = p as Packet
      if (packet.cmd === "pubrel") pubrels.push(packet.messageId!)
      if (packet.cmd === "publish") received++
    })
    try {
      await until(() => pubrels.length > 0, 3_000)
      expect(pubrels).toHaveLength(1)
      const publish = () => publishTo("p/1", () => received)
      const outcomes = []
      for (let i = 0; i < bound; i++) outcomes.push(await publish())
      sendB({ cmd: "pubcomp", messageId: pubrels[0]! })
      await new Promise((r) => setTimeout(r, 200))
      outcomes.push(await publish())
      expect(outcomes).toEqual([...Array.from({ length: bound }, () => true), false])
    } finally {
      a.end(true)
      b.end(true)
    }
  }, 20_000)
})

describe("in-flight bound and retained QoS 1 messages for a QoS 0 subscription", () => {
  it("retained QoS 1 messages sent at QoS 0 to subscriptions of their own topic take no place: the next QoS 1 messages reach the client", async () => {
    const publisher = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clientId: "retainer" })
    const c = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clientId: "retained-q0" })
    try {
      for (let i = 0; i < bound; i++) await publisher.publishAsync(`r/${i}`, `kept ${i}`, { qos: 1, retain: true })
      const got: Array<{ topic: string; qos: number }> = []
      c.on("message", (topic, _p, packet) => got.push({ topic, qos: packet.qos }))
      // Each retained message goes at QoS 0 (mqtt.js acknowledges every QoS 1 message it gets).
      for (let i = 0; i < bound; i++) await c.subscribeAsync(`r/${i}`, { qos: 0 })
      await until(() => got.length >= bound, 3_000)
      expect(got.map((g) => g.qos)).toEqual(Array.from({ length: bound }, () => 0))
      await c.subscribeAsync("s/#", { qos: 1 })
      const before = refused
      for (let i = 0; i < bound; i++) {
        await broker.publish(`s/${i}`, `live ${i}`, 1)
        await until(() => got.length >= bound + i + 1 || refused > before, 3_000)
      }
      expect({ live: got.slice(bound).map((g) => g.topic), refused: refused - before }).toEqual({ live: ["s/0", "s/1", "s/2"], refused: 0 })
    } finally {
      await publisher.endAsync(true)
      await c.endAsync(true)
    }
  }, 20_000)
})

describe("in-flight bound and a clean connection after a persistent session", () => {
  it("the stored messages of the earlier persistent session, discarded unsent, take no place: the next QoS 1 messages reach the clean connection", async () => {
    const clientId = "persistent-then-clean"
    const first = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clean: false, clientId })
    await first.subscribeAsync("q/#", { qos: 1 })
    await first.endAsync()
    for (let i = 0; i < bound; i++) await broker.publish(`q/${i}`, `stored ${i}`, 1)
    const c = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clean: true, clientId })
    try {
      const got: Array<string> = []
      c.on("message", (topic) => got.push(topic))
      await c.subscribeAsync("s/#", { qos: 1 })
      await new Promise((r) => setTimeout(r, 200))
      const before = refused
      for (let i = 0; i < bound; i++) {
        await broker.publish(`s/${i}`, `live ${i}`, 1)
        await until(() => got.length >= i + 1 || refused > before, 3_000)
      }
      expect({ got, refused: refused - before }).toEqual({ got: ["s/0", "s/1", "s/2"], refused: 0 })
    } finally {
      await c.endAsync(true)
    }
  }, 20_000)
})

describe("in-flight bound and a takeover of a persistent session", () => {
  it("live messages held for the new connection that the old one got and acknowledged (not sent again) take no place: the next QoS 1 messages reach the new connection", async () => {
    const cleanup: Array<() => unknown> = []
    const persistence = aedesPersistence("disk", cleanup)
    const b = await EmbeddedBroker.start({ host: "127.0.0.1", mqttPort: 0, guard, aedes: { persistence } as never })
    const burl = `mqtt://127.0.0.1:${b.mqttPort}`
    const opts = { protocolVersion: 4 as const, reconnectPeriod: 0, clean: false, clientId: "takeover-held" }
    const old = await mqtt.connectAsync(burl, opts)
    old.on("error", () => {})
    const gotOld: Array<string> = []
    old.on("message", (_t, p) => gotOld.push(p.toString()))
    let next: mqtt.MqttClient | undefined
    try {
      await old.subscribeAsync("k/#", { qos: 1 })
      // The new connection's storeWill (after its subscriptions' restore, before the takeover closes
      // the old one): live messages go to both, held for the new one; the old one acknowledges them.
      atNextStoreWill(persistence, async () => {
        for (let i = 0; i < bound; i++) await b.publish("k/1", `live ${i}`, 1)
        await until(() => gotOld.length >= bound, 3_000)
        await new Promise((r) => setTimeout(r, 200))
      })
      next = mqtt.connect(burl, opts)
      next.on("error", () => {})
      const got: Array<string> = []
      next.on("message", (_t, p) => got.push(p.toString()))
      await within(new Promise((r) => next!.once("connect", r)), 5_000, "CONNACK")
      expect(gotOld).toHaveLength(bound)
      await new Promise((r) => setTimeout(r, 300))
      const before = refused
      for (let i = 0; i < bound; i++) {
        await b.publish("k/1", `next ${i}`, 1)
        await until(() => got.includes(`next ${i}`) || refused > before, 3_000)
      }
      expect({ got: got.filter((m) => m.startsWith("next")), refused: refused - before }).toEqual({ got: ["next 0", "next 1", "next 2"], refused: 0 })
    } finally {
      old.end(true)
      next?.end(true)
      await b.close()
      for (const c of cleanup) await c()
    }
  }, 20_000)
})

describe("in-flight bound and message ids wrapping past 65535", () => {
  it("a message left unacknowledged while 65535 others go keeps its id to itself: its late PUBACK and the others' free every place", async () => {
    const wide = 64
    const b = await EmbeddedBroker.start({ host: "127.0.0.1", mqttPort: 0, guard: { ...guard, maxInflight: wide } })
    const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${b.mqttPort}`, { protocolVersion: 4, reconnectPeriod: 0, clientId: "wrap" })
    // (Nagle's algorithm held each batch's last small write for the broker's delayed TCP ACK, ~40 ms.)
    ;(c.stream as unknown as { setNoDelay: (on: boolean) => void }).setNoDelay(true)
    try {
      // The first message's PUBACK, and every one once `holdAll`, go only when the test sends them.
      let first: number | undefined
      let holdAll = false
      const ids: Array<number> = []
      let pong = () => {}
      c.on("packetreceive", (p) => {
        const packet = p as Packet
        if (packet.cmd === "publish") ids.push(packet.messageId!)
        if (packet.cmd === "pingresp") pong()
      })
      // `acked(n)`: once the client sent n PUBACKs and the broker handled them (a PINGRESP after
      // them). (Polling every 20 ms, 2,000 batches took 40 s.)
      let pubacks = 0
      let waiting: { n: number; resolve: () => void } | undefined
      const acked = async (n: number) => {
        await within(new Promise<void>((resolve) => (pubacks >= n ? resolve() : (waiting = { n, resolve }))), 3_000, `${n} PUBACKs`)
        await within(new Promise<void>((resolve) => ((pong = resolve), send({ cmd: "pingreq" }))), 3_000, "PINGRESP")
      }
      const inner = c as unknown as Inner
      const send = inner._sendPacket.bind(c)
      inner._sendPacket = (packet, ...rest) => {
        if (packet.cmd === "puback" && (holdAll || first === undefined)) {
          if (first === undefined) first = packet.messageId
          const done = rest.find((r) => typeof r === "function") as (() => void) | undefined
          return done?.()
        }
        if (packet.cmd === "puback" && ++pubacks >= (waiting?.n ?? Infinity)) (waiting!.resolve(), (waiting = undefined))
        return send(packet, ...rest)
      }
      await c.subscribeAsync("w/#", { qos: 1 })
      const before = refused
      await b.publish("w/1", "first", 1)
      await until(() => first !== undefined, 3_000)
      // 65535 more, acknowledged as they come, a batch at a time below the bound.
      for (let sent = 0; sent < 65535; ) {
        const n = Math.min(wide - 1, 65535 - sent)
        await Promise.all(Array.from({ length: n }, () => b.publish("w/1", "x", 1)))
        sent += n
        await acked(sent)
      }
      expect({ received: ids.length, refused: refused - before }).toEqual({ received: 65536, refused: 0 })
      const last = ids[ids.length - 1]
      // The first one's PUBACK, late; then all places free: `wide` more go, held.
      send({ cmd: "puback", messageId: first! })
      holdAll = true
      await new Promise((r) => setTimeout(r, 200))
      for (let i = 0; i < wide; i++) await b.publish("w/1", "after", 1)
      await until(() => ids.length >= 65536 + wide || refused > before, 3_000)
      await new Promise((r) => setTimeout(r, 100))
      expect({ reused: last === first, after: ids.length - 65536, refused: refused - before }).toEqual({ reused: false, after: wide, refused: 0 })
    } finally {
      await c.endAsync(true)
      await b.close()
    }
  }, 120_000)
})
