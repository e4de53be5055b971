/**
 * The broker's filter announcements (option `filters`, Announcements.ts): a SUBACK of a filter the
 * broker does not hold yet waits for `added` (so that a mirror kept elsewhere knows the filter
 * before the client is told it is subscribed, docs/front-thread.md 4.3), and a filter is dropped
 * only once nothing can still need it.
 */
import { describe, expect, it } from "vitest"
import mqtt from "mqtt"
import { EmbeddedBroker } from "@baton/broker-aedes"
import { until } from "./waits.ts"

const deferred = () => {
  let resolve!: () => void
  let reject!: (error: Error) => void
  const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)))
  return { promise, resolve, reject }
}

/** A broker whose announcements wait for the test: each `added` call recorded with its deferred. */
const announcing = async () => {
  const calls: Array<{ readonly op: "added" | "dropped"; readonly filter: string; readonly persistent?: boolean }> = []
  const pending = new Map<string, ReturnType<typeof deferred>>()
  const broker = await EmbeddedBroker.start({
    host: "127.0.0.1",
    mqttPort: 0,
    filters: {
      added: (filter, persistent) => {
        calls.push({ op: "added", filter, persistent })
        const d = deferred()
        pending.set(filter, d)
        return d.promise
      },
      dropped: (filter) => void calls.push({ op: "dropped", filter })
    }
  })
  /** The deferred of `filter`'s announcement, once the broker made it. */
  const announced = async (filter: string) => {
    await until(() => pending.has(filter))
    return pending.get(filter)!
  }
  const connect = (clientId: string, clean = true) => mqtt.connectAsync(`mqtt://127.0.0.1:${broker.mqttPort}`, { protocolVersion: 4, clientId, clean, reconnectPeriod: 0 })
  return { broker, calls, announced, connect }
}

/** Whether `p` settled within `ms`. */
const settledWithin = (p: Promise<unknown>, ms: number) =>
  Promise.race([p.then(() => true, () => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))])

describe("EmbeddedBroker filter announcements", () => {
  it("holds the SUBACK of a new filter until added's promise resolves, and a known filter's waits for nothing", async () => {
    const { broker, calls, announced, connect } = await announcing()
    try {
      const a = await connect("a")
      const suback = a.subscribeAsync("events/shipped", { qos: 1 })
      expect(await settledWithin(suback, 300)).toBe(false)
      expect(calls).toEqual([{ op: "added", filter: "events/shipped", persistent: false }])
      const shipped = await announced("events/shipped")
      shipped.resolve()
      expect((await suback).map((g) => g.qos)).toEqual([1])

      const b = await connect("b")
      expect((await b.subscribeAsync("events/shipped", { qos: 1 })).map((g) => g.qos)).toEqual([1])
      expect(calls).toHaveLength(1)
      await a.endAsync()
      await b.endAsync()
      await until(() => calls.length === 2)
      expect(calls[1]).toEqual({ op: "dropped", filter: "events/shipped" })
    } finally {
      await broker.close()
    }
  })

  it("announces a reply filter without waiting, refuses a filter whose announcement failed, and marks a persistent session's", async () => {
    const { broker, calls, announced, connect } = await announcing()
    try {
      const a = await connect("a")
      // The promise never settles: a reply goes out whoever subscribed.
      expect((await a.subscribeAsync("reply/a/1", { qos: 0 })).map((g) => g.qos)).toEqual([0])
      const refused = a.subscribeAsync("events/denied", { qos: 1 })
      const denied = await announced("events/denied")
      denied.reject(new Error("not known"))
      // SUBACK 0x80: MQTT.js rejects the subscribe.
      await expect(refused).rejects.toThrow(/Subscribe error/)
      const p = await connect("p", false)
      const persistent = p.subscribeAsync("events/kept", { qos: 1 })
      const kept = await announced("events/kept")
      kept.resolve()
      await persistent
      await p.endAsync()
      await a.endAsync()
      await until(() => calls.filter((c) => c.op === "dropped").length === 2)
      await new Promise((r) => setTimeout(r, 100))
      expect(calls).toEqual([
        { op: "added", filter: "reply/a/1", persistent: false },
        { op: "added", filter: "events/denied", persistent: false },
        { op: "dropped", filter: "events/denied" },
        { op: "added", filter: "events/kept", persistent: true },
        { op: "dropped", filter: "reply/a/1" }
      ])
    } finally {
      await broker.close()
    }
  })

  it("holds a second SUBACK of a filter until its announcement settles, and does not drop the filter while the first still waits", async () => {
    const { broker, calls, announced, connect } = await announcing()
    try {
      const a = await connect("a")
      const c = await connect("c")
      const first = a.subscribeAsync("events/x", { qos: 1 })
      const x = await announced("events/x")
      // Announced but not yet held by the mirror: c's SUBACK waits for the same announcement
      // (granted at once, it would come while the mirror still said no for c).
      let second = false
      const subscribed = c.subscribeAsync("events/x", { qos: 1 }).then(() => (second = true))
      await new Promise((r) => setTimeout(r, 100))
      expect(second).toBe(false)
      expect(calls.map((x) => x.op)).toEqual(["added"])
      x.resolve()
      await first
      await subscribed
      // c leaves, a still holds the filter: not dropped.
      await c.unsubscribeAsync("events/x")
      await new Promise((r) => setTimeout(r, 100))
      expect(calls.map((x) => x.op)).toEqual(["added"])
      await a.unsubscribeAsync("events/x")
      await until(() => calls.length === 2)
      expect(calls.map((x) => x.op)).toEqual(["added", "dropped"])
      await a.endAsync()
      await c.endAsync()
    } finally {
      await broker.close()
    }
  })
})
