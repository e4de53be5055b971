/**
 * Review of the aedes microtask patch: a persistent session that reconnects while the runtime
 * publishes (as the outbox relay does: one at a time, each awaited) gets what was queued for it
 * while it was away and what is published meanwhile, in publish order (first occurrences), none
 * missing.
 *
 * On the memory store, green with and without the aedes patch. The disk store is left out: there
 * (before the patch too, found by its review on 2026-12-02) live messages overtake the stored ones
 * being restored (~150 inversions of 500) and ~150 live QoS 1 messages go out only at the next
 * reconnect: a known defect, in the README (Delivery guarantees, the sessions store), not yet fixed.
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

describe.each(["memory"] as const)("a persistent session reconnecting during publishes, %s sessions store", (kind) => {
  it.each([0, 1] as const)("live QoS %s messages after queued QoS 1 ones: in publish order, none missing", async (liveQos) => {
    const dir = mkdtempSync(join(tmpdir(), "baton-rr-restore-"))
    dirs.push(dir)
    const broker = await EmbeddedBroker.start({ host: "127.0.0.1", mqttPort: 0, sessions: kind === "memory" ? { kind } : { kind, dir } })
    const url = `mqtt://127.0.0.1:${broker.mqttPort}`
    const opts = { protocolVersion: 4 as const, reconnectPeriod: 0, clean: false, clientId: "rr-restore" }
    try {
      const first = await mqtt.connectAsync(url, opts)
      await first.subscribeAsync("k/#", { qos: 1 })
      await first.endAsync()
      let i = 0
      const queued = 200
      for (; i < queued; i++) await broker.publish("k/1", String(i), 1)
      const got: Array<number> = []
      // Reconnect while publishing, each awaited.
      const publishing = (async () => {
        for (let j = 0; j < 300; j++, i++) await broker.publish("k/1", String(i), j % 2 === 0 ? liveQos : 1)
      })()
      const again = mqtt.connect(url, opts)
      again.on("message", (_t, p) => got.push(Number(p.toString())))
      await new Promise((r) => again.once("connect", r))
      await publishing
      const t0 = Date.now()
      while (new Set(got).size < i && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 20))
      await again.endAsync()
      const firsts: Array<number> = []
      const seen = new Set<number>()
      for (const n of got) if (!seen.has(n)) (seen.add(n), firsts.push(n))
      const missing = Array.from({ length: i }, (_, k) => k).filter((k) => !seen.has(k) && !(k >= queued && (k - queued) % 2 === 0 && liveQos === 0))
      const inversions = firsts.filter((n, k) => k > 0 && n < firsts[k - 1]!)
      console.log(`${kind} live QoS ${liveQos}: got ${got.length} (${seen.size} distinct), ${missing.length} missing, ${inversions.length} out of order, first: ${JSON.stringify(firsts.slice(0, 8))}`)
      expect(missing).toEqual([])
      expect(inversions).toEqual([])
    } finally {
      await broker.close()
    }
  }, 60_000)
})
