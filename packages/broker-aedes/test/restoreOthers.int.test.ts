/**
 * While a persistent session restores a long queue (disk store), the live messages for it wait
 * (Aedes patch, connect.js releaseHeld). The broker's other publishes must not: a publish for
 * another, clean, subscriber completes while the restore still runs, even after many concurrent
 * publishes for the restoring session (more than Aedes' concurrency, 100, of mqemitter), at QoS 1
 * (in the session's store) or at QoS 0 (not in it: held until the stored stream's messages are
 * fixed, from its first one on). The restoring client stops reading at its first message, so its
 * restore cannot end before it reads again.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import mqtt from "mqtt"
import { EmbeddedBroker } from "@baton/broker-aedes"
import { until, within } from "./waits.ts"

const dirs: Array<string> = []
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

describe("a persistent session restoring a long queue, disk sessions store", () => {
  it.each([1, 0] as const)("does not hold up publishes for other subscribers (publishes for the restoring session at QoS %i)", async (qos) => {
    const dir = mkdtempSync(join(tmpdir(), "baton-rr-others-"))
    dirs.push(dir)
    // The restoring client's full socket is not cut off meanwhile.
    const broker = await EmbeddedBroker.start({ host: "127.0.0.1", mqttPort: 0, sessions: { kind: "disk", dir }, drainTimeoutMs: 60_000 })
    const url = `mqtt://127.0.0.1:${broker.mqttPort}`
    const opts = { protocolVersion: 4 as const, reconnectPeriod: 0, clean: false, clientId: "rr-others" }
    const clients: Array<mqtt.MqttClient> = []
    try {
      const first = await mqtt.connectAsync(url, opts)
      await first.subscribeAsync("s/#", { qos: 1 })
      await first.endAsync()
      // 8 MB: more than the socket's buffers hold, so the restore waits for the client's reads.
      const queued = 4000
      const payload = "x".repeat(2048)
      for (let i = 0; i < queued; i++) await broker.publish("s/1", payload, 1)
      const other = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clean: true, clientId: "rr-other" })
      clients.push(other)
      await other.subscribeAsync("o/#", { qos: 1 })
      let stored = 0
      let read = () => {}
      const reading = new Promise<void>((resolve) => (read = resolve))
      const s = mqtt.connect(url, opts)
      clients.push(s)
      const restoring = new Promise<void>((resolve) => {
        // mqtt.js reads the next packet once this one's callback is called: held, the socket fills.
        s.handleMessage = (_packet, callback) => {
          stored++
          if (stored === 1) resolve()
          void reading.then(() => callback())
        }
      })
      await restoring
      // Many publishes for the restoring session at once (as many publishers do), then one for another.
      const live = Array.from({ length: 150 }, (_, k) => broker.publish("s/1", `live ${k}`, qos))
      try {
        await within(broker.publish("o/1", "x", 1), 10_000, "a publish for another subscriber during the restore")
        expect(stored).toBe(1)
      } finally {
        read()
      }
      await within(Promise.all(live), 30_000, "the publishes for the restoring session")
      await until(() => stored >= queued + 150, 30_000)
      expect(stored).toBe(queued + 150)
    } finally {
      for (const c of clients) c.end(true)
      await broker.close()
    }
  }, 90_000)
})
