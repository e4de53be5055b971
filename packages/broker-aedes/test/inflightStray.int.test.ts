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
 */
import { afterAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import mqtt from "mqtt"
import { EmbeddedBroker } from "@baton/broker-aedes"
import { until, within } from "./waits.ts"

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
