/**
 * Aedes' dedupe window (patches/aedes@1.2.0.patch, client.js `dedupe`) keeps the counters a client
 * got recently from each broker id. The broker's counter is a JavaScript number that keeps growing
 * (past 2^32 after 4.3 billion messages: half a day at 100k messages a second): a counter must be
 * told apart from one 2^32 lower, and from the window's initial slots. A QoS 1 message overtaken by
 * a QoS 0 one (its emit waits for a store step) must still arrive, whatever its counter.
 */
import { createServer, type AddressInfo } from "node:net"
import { describe, expect, it } from "vitest"
import mqtt from "mqtt"
import { Aedes } from "aedes"
import { until } from "./waits.ts"

const publish = (aedes: Aedes, topic: string, payload: string, qos: 0 | 1) =>
  new Promise<void>((resolve, reject) =>
    aedes.publish({ cmd: "publish", topic, payload: Buffer.from(payload), qos, retain: false, dup: false } as never, (err) => (err ? reject(err) : resolve()))
  )

/** What these tests set inside Aedes: its message counter and its persistence (not in its types). */
const internal = (aedes: object) =>
  aedes as unknown as {
    counter: number
    persistence: { putWill: (client: never, packet: never) => Promise<unknown>; getWill: (client: never) => Promise<unknown> }
  }

describe("Aedes dedupe with broker counters past 2^32", () => {
  it.each([
    // The overtaken QoS 1 message's counter is 2^32: the window's unwritten slot (0) read as seen.
    [2 ** 32 - 1, 0],
    // Its counter is 2^32 + 7 and the client got 7 (2^32 counters earlier) from this broker id.
    [2 ** 32 + 6, 7]
  ])("a QoS 1 message overtaken by a QoS 0 one still arrives (counter before it %d, earlier counter %d)", async (before, earlier) => {
    const aedes = await Aedes.createBroker()
    const server = createServer(aedes.handle)
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
    const port = (server.address() as AddressInfo).port
    const sub = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0, clean: true })
    const got: Array<string> = []
    sub.on("message", (_t, p) => got.push(p.toString()))
    try {
      await sub.subscribeAsync({ "p/#": { qos: 1 } })
      if (earlier > 0) {
        internal(aedes).counter = earlier - 1
        await publish(aedes, "p/1", "early", 0)
        await until(() => got.includes("early"))
      }
      internal(aedes).counter = before
      await Promise.all([publish(aedes, "p/0", "a", 1), publish(aedes, "p/1", "b", 0)])
      await until(() => got.includes("a") && got.includes("b"))
      expect(got.filter((m) => m !== "early").sort()).toEqual(["a", "b"])
    } finally {
      await sub.endAsync()
      await new Promise<void>((r) => aedes.close(() => r()))
      await new Promise<void>((r) => server.close(() => r()))
    }
  })
})

describe("Aedes dedupe and the wills of another broker's clients", () => {
  // In a cluster, a broker publishes the will of a client of a broker that died (_clearWills):
  // the will keeps the dead broker's id and takes a counter of the publishing broker's, unrelated to
  // the dead one's: a client that got the dead broker's message with that counter dropped the will.
  it("a will published for a dead broker's client arrives to a client that got that broker's messages", async () => {
    const aedes = await Aedes.createBroker({ heartbeatInterval: 50 })
    const server = createServer(aedes.handle)
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
    const port = (server.address() as AddressInfo).port
    const sub = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0, clean: true })
    const got: Array<string> = []
    sub.on("message", (_t, p) => got.push(p.toString()))
    try {
      await sub.subscribeAsync({ "p/#": { qos: 1 } })
      // Messages from the other broker (its id, its counters 1 to 300), as mqemitter-redis brings them.
      for (let c = 1; c <= 300; c++) {
        await new Promise<void>((resolve, reject) =>
          aedes.publish({ cmd: "publish", topic: "p/1", payload: Buffer.from(`d${c}`), qos: 0, retain: false, dup: false, brokerId: "dead", brokerCounter: c } as never, (err) =>
            err ? reject(err) : resolve()
          )
        )
      }
      await until(() => got.includes("d300"))
      // That broker's client's will, left in the shared store; ours publishes it with a counter of
      // its own (about 100: heartbeats take some), one the client got from the dead broker.
      internal(aedes).counter = 100
      const will = { cmd: "publish", topic: "p/will", payload: Buffer.from("will"), qos: 1, retain: false }
      await internal(aedes).persistence.putWill({ id: "gone", broker: { id: "dead" } } as never, will as never)
      ;(await internal(aedes).persistence.getWill({ id: "gone" } as never) as { brokerId: string }).brokerId = "dead"
      await until(() => got.includes("will"), 1_000)
      expect(got.filter((m) => !m.startsWith("d"))).toEqual(["will"])
    } finally {
      await sub.endAsync()
      await new Promise<void>((r) => aedes.close(() => r()))
      await new Promise<void>((r) => server.close(() => r()))
    }
  })
})

describe("Aedes dedupe windows, per client and broker id", () => {
  // One window (2 KB) per client and broker id it got a message from: in a cluster, every broker
  // incarnation (a restart gives a new id) added one for the connection's lifetime. Now a client
  // keeps the 16 most recently used; a broker id heard from again starts a new window.
  it("a client keeps at most 16, and gets every message once from 40 broker ids in turn, each heard from again", async () => {
    const aedes = await Aedes.createBroker()
    const server = createServer(aedes.handle)
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
    const port = (server.address() as AddressInfo).port
    const sub = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0, clean: true, clientId: "windows" })
    const got: Array<string> = []
    sub.on("message", (_t, p) => got.push(p.toString()))
    try {
      // Overlapping filters: each message reaches the client twice, and dedupe keeps one.
      await sub.subscribeAsync({ "p/#": { qos: 0 }, "p/+": { qos: 0 } })
      const sent: Array<string> = []
      for (const round of [0, 1]) {
        for (let b = 0; b < 40; b++) {
          for (let c = 1; c <= 3; c++) {
            const counter = round * 3 + c
            const payload = `b${b}:${counter}`
            sent.push(payload)
            await new Promise<void>((resolve, reject) =>
              aedes.publish({ cmd: "publish", topic: "p/1", payload: Buffer.from(payload), qos: 0, retain: false, dup: false, brokerId: `b${b}`, brokerCounter: counter } as never, (err) =>
                err ? reject(err) : resolve()
              )
            )
          }
        }
      }
      await until(() => got.length >= sent.length)
      await new Promise((r) => setTimeout(r, 50))
      expect(got).toEqual(sent)
      const windows = (aedes as unknown as { clients: Record<string, { duplicates: Map<string, unknown> | Record<string, unknown> }> }).clients["windows"]!.duplicates
      const kept = windows instanceof Map ? windows.size : Object.keys(windows).length
      expect(kept).toBeGreaterThan(0)
      expect(kept).toBeLessThanOrEqual(16)
    } finally {
      await sub.endAsync()
      await new Promise<void>((r) => aedes.close(() => r()))
      await new Promise<void>((r) => server.close(() => r()))
    }
  })
})
