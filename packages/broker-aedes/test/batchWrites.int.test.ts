/**
 * The embedded broker's `batch` (the relay's publishes, awaited one after another): the
 * subscribers' connections are corked while it runs, so a batch's messages to a subscriber go out
 * in one socket write instead of one write each (in the order flow, one write syscall an order
 * fewer). Order and delivery are unchanged, and a batch that outlasts a turn of the event loop
 * holds nothing past the loop's next check phase.
 */
import net from "node:net"
import { afterEach, describe, expect, it } from "vitest"
import mqtt, { type MqttClient } from "mqtt"
import { EmbeddedBroker } from "@baton/broker-aedes"

/** Socket writes (`_writeGeneric`: a `write` or a `writev` of a corked socket) on the broker's side of connections to `port`. */
const countWrites = (port: () => number) => {
  const proto = net.Socket.prototype as unknown as { _writeGeneric: (...args: Array<unknown>) => unknown }
  const original = proto._writeGeneric
  let n = 0
  proto._writeGeneric = function (this: net.Socket, ...args: Array<unknown>) {
    if (this.localPort === port()) n++
    return original.apply(this, args)
  }
  return { count: () => n, restore: () => void (proto._writeGeneric = original) }
}

const waitFor = async (cond: () => boolean, ms = 10_000) => {
  const t0 = Date.now()
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error("timed out")
    await new Promise((r) => setTimeout(r, 5))
  }
}

describe("EmbeddedBroker.batch", () => {
  let cleanup: Array<() => Promise<void> | void> = []
  afterEach(async () => {
    for (const f of cleanup.reverse()) await f()
    cleanup = []
  })
  const setup = async () => {
    const broker = await EmbeddedBroker.start({ host: "127.0.0.1", mqttPort: 0 })
    cleanup.push(() => broker.close())
    const sub: MqttClient = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.mqttPort}`, { protocolVersion: 4, reconnectPeriod: 0 })
    cleanup.push(() => sub.endAsync())
    const got: Array<string> = []
    sub.on("message", (_t, p) => got.push(p.toString()))
    await sub.subscribeAsync("t/#", { qos: 1 })
    const writes = countWrites(() => broker.mqttPort)
    cleanup.push(writes.restore)
    return { broker, got, writes }
  }

  it("writes a batch's publishes to a subscriber in one socket write, all of them, in order", async () => {
    const { broker, got, writes } = await setup()
    const n = 20
    // Without a batch: a write each (what the relay did).
    for (let i = 0; i < n; i++) await broker.publish("t/x", `a${i}`, 1)
    await waitFor(() => got.length === n)
    const alone = writes.count()
    expect(alone).toBeGreaterThanOrEqual(n)
    await broker.batch(async () => {
      for (let i = 0; i < n; i++) await broker.publish("t/x", `b${i}`, 1)
    })
    await waitFor(() => got.length === 2 * n)
    expect(writes.count() - alone).toBe(1)
    expect(got).toEqual([...Array.from({ length: n }, (_, i) => `a${i}`), ...Array.from({ length: n }, (_, i) => `b${i}`)])
  })

  it("holds nothing past the loop's next check phase: a batch that waits lets what it published go", async () => {
    const { broker, got } = await setup()
    let seenBeforeEnd: ReadonlyArray<string> = []
    await broker.batch(async () => {
      await broker.publish("t/x", "first", 1)
      // A publish that waits (a disk session's store, say): the first is not held meanwhile.
      await waitFor(() => got.length === 1, 2_000).catch(() => undefined)
      seenBeforeEnd = [...got]
      await broker.publish("t/x", "second", 1)
    })
    await waitFor(() => got.length === 2)
    expect(seenBeforeEnd).toEqual(["first"])
    expect(got).toEqual(["first", "second"])
  })
})
