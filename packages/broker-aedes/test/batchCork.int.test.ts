/**
 * EmbeddedBroker.batch corks the subscribers' connections: none may stay corked once a batch has
 * settled (f threw), and a batch that fills a subscriber's socket buffer (Aedes then waits for
 * 'drain', which a corked socket never emits) must not wait for the drain timeout: the release at
 * the loop's next check phase lets it go (without it, the subscriber was disconnected at 5 s).
 */
import net from "node:net"
import { afterEach, describe, expect, it } from "vitest"
import mqtt, { type MqttClient } from "mqtt"
import { EmbeddedBroker } from "@baton/broker-aedes"

const waitFor = async (cond: () => boolean, ms = 10_000) => {
  const t0 = Date.now()
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error("timed out")
    await new Promise((r) => setTimeout(r, 5))
  }
}

describe("EmbeddedBroker.batch, its corks released", () => {
  let cleanup: Array<() => Promise<void> | void> = []
  afterEach(async () => {
    for (const f of cleanup.reverse()) await f()
    cleanup = []
  })
  const setup = async (n = 1) => {
    const broker = await EmbeddedBroker.start({ host: "127.0.0.1", mqttPort: 0 })
    cleanup.push(() => broker.close())
    const sockets = new Set<net.Socket>()
    const proto = net.Socket.prototype as unknown as { cork: () => void }
    const original = proto.cork
    proto.cork = function (this: net.Socket) {
      if (this.localPort === broker.mqttPort) sockets.add(this)
      return original.apply(this)
    }
    cleanup.push(() => void (proto.cork = original))
    const subs: Array<{ c: MqttClient; got: Array<string> }> = []
    for (let i = 0; i < n; i++) {
      const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.mqttPort}`, { protocolVersion: 4, reconnectPeriod: 0, clientId: `s${i}` })
      cleanup.push(() => c.endAsync(true))
      const got: Array<string> = []
      c.on("message", (_t, p) => got.push(p.toString().slice(0, 10)))
      await c.subscribeAsync("t/#", { qos: 1 })
      subs.push({ c, got })
    }
    const corked = () => [...sockets].filter((s) => !s.destroyed && s.writableCorked > 0).length
    return { broker, subs, corked }
  }

  it("a batch whose f throws leaves no connection corked once it has settled, and what it published is delivered", async () => {
    const { broker, subs, corked } = await setup()
    await expect(broker.batch(async () => {
      await broker.publish("t/x", "a", 1)
      throw new Error("boom")
    })).rejects.toThrow("boom")
    expect(corked()).toBe(0)
    await waitFor(() => subs[0]!.got.length === 1)
  })

  it("a batch that writes past a subscriber's high-water mark (a drain wait while corked) completes without a drain timeout, everything in order", async () => {
    const { broker, subs, corked } = await setup(2)
    const big = "x".repeat(40_000)
    await broker.batch(async () => {
      for (let i = 0; i < 30; i++) await broker.publish("t/x", `${String(i).padStart(3, "0")}${big}`, 1)
    })
    expect(corked()).toBe(0)
    await waitFor(() => subs.every((s) => s.got.length === 30))
    for (const s of subs) expect(s.got.map((g) => Number(g.slice(0, 3)))).toEqual(Array.from({ length: 30 }, (_, i) => i))
  })
})
