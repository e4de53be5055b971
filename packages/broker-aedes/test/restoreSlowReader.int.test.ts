/**
 * A persistent session with a large stored queue whose client stops reading its socket at the
 * restore: the in-flight bound does not stop the stored stream (restoreInflight), so the drain
 * timeout must: the connection is closed after it, and the stored messages stay for the next one.
 */
import { connect as tcp } from "node:net"
import { describe, expect, it } from "vitest"
import mqtt from "mqtt"
import { EmbeddedBroker } from "@baton/broker-aedes"
import { until } from "./waits.ts"

// CONNECT, MQTT 3.1.1, clean session 0, keepalive 60, client id "stalled".
const connectPacket = (): Buffer => {
  const id = Buffer.from("stalled")
  const body = Buffer.concat([Buffer.from([0, 4]), Buffer.from("MQTT"), Buffer.from([4, 0, 0, 60, 0, id.length]), id])
  return Buffer.concat([Buffer.from([0x10, body.length]), body])
}

describe("a persistent session's restore to a client that stops reading", () => {
  it("is disconnected after the drain timeout, and its stored messages are all there at its next connection", async () => {
    const refused: Array<string> = []
    const guard: EmbeddedBroker.Guard = { connect: async () => ({ ok: true }), publish: () => undefined, subscribe: () => undefined, maxInflight: 3, onRefused: (what) => void refused.push(what) }
    const broker = await EmbeddedBroker.start({ host: "127.0.0.1", mqttPort: 0, sessions: { kind: "memory" }, guard, drainTimeoutMs: 500 })
    const url = `mqtt://127.0.0.1:${broker.mqttPort}`
    const opts = { protocolVersion: 4 as const, reconnectPeriod: 0, clean: false, clientId: "stalled" }
    try {
      const first = await mqtt.connectAsync(url, opts)
      await first.subscribeAsync("k/#", { qos: 1 })
      await first.endAsync()
      await until(() => broker.connections() === 0)
      const n = 3000
      const payload = "x".repeat(16 * 1024)
      for (let i = 0; i < n; i++) await broker.publish("k/1", `${i}:${payload}`, 1)

      // 48 MB stored; the client sends its CONNECT and never reads.
      const socket = tcp(broker.mqttPort, "127.0.0.1")
      socket.on("error", () => {})
      const closed = new Promise<void>((r) => socket.once("close", () => r()))
      socket.write(connectPacket())
      socket.pause()
      await until(() => refused.includes("slow-consumer"), 15_000)
      expect(refused).toContain("slow-consumer")
      await until(() => broker.connections() === 0, 5_000)
      expect(broker.connections()).toBe(0)
      socket.destroy()
      await closed

      const again = mqtt.connect(url, opts)
      again.on("error", () => {})
      const got = new Set<number>()
      again.on("message", (_t, p) => got.add(Number(p.toString().split(":")[0])))
      await until(() => got.size >= n, 20_000)
      again.end(true)
      expect(got.size).toBe(n)
    } finally {
      await broker.close()
    }
  }, 60_000)
})
