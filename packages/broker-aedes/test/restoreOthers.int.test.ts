/**
 * While a persistent session restores a long queue (disk store), the live messages for it wait
 * (Aedes patch, connect.js releaseHeld). The broker's other publishes must not: a publish for
 * another, clean, subscriber completes while the restore still runs, even after many concurrent
 * publishes for the restoring session (more than Aedes' concurrency, 100, of mqemitter).
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import mqtt from "mqtt"
import { EmbeddedBroker } from "@baton/broker-aedes"

const dirs: Array<string> = []
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

describe("a persistent session restoring a long queue, disk sessions store", () => {
  it("does not hold up publishes for other subscribers", async () => {
    const dir = mkdtempSync(join(tmpdir(), "baton-rr-others-"))
    dirs.push(dir)
    const broker = await EmbeddedBroker.start({ host: "127.0.0.1", mqttPort: 0, sessions: { kind: "disk", dir } })
    const url = `mqtt://127.0.0.1:${broker.mqttPort}`
    const opts = { protocolVersion: 4 as const, reconnectPeriod: 0, clean: false, clientId: "rr-others" }
    const clients: Array<mqtt.MqttClient> = []
    try {
      const first = await mqtt.connectAsync(url, opts)
      await first.subscribeAsync("s/#", { qos: 1 })
      await first.endAsync()
      const queued = 4000
      for (let i = 0; i < queued; i++) await broker.publish("s/1", String(i), 1)
      const other = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clean: true, clientId: "rr-other" })
      clients.push(other)
      await other.subscribeAsync("o/#", { qos: 1 })
      let stored = 0
      const s = mqtt.connect(url, opts)
      clients.push(s)
      const restoring = new Promise<void>((resolve) =>
        s.on("message", () => {
          stored++
          if (stored === 1) resolve()
        })
      )
      await restoring
      // Many publishes for the restoring session at once (as many publishers do), then one for another.
      const live = Array.from({ length: 150 }, (_, k) => broker.publish("s/1", `live ${k}`, 1))
      // Their enqueueing on disk done, they are at the subscribers.
      await new Promise((r) => setTimeout(r, 200))
      const before = stored
      await broker.publish("o/1", "x", 1)
      const atOther = stored
      await Promise.all(live)
      expect(before).toBeLessThan(queued)
      expect(atOther).toBeLessThan(queued)
    } finally {
      for (const c of clients) c.end(true)
      await broker.close()
    }
  }, 90_000)
})
