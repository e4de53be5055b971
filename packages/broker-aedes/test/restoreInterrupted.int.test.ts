/**
 * A persistent session whose restore is cut short while live messages for it are held (Aedes
 * patch, connect.js releaseHeld): taken over by a new connection with the same client id, or its
 * socket gone. The publishes held meanwhile still complete, and every QoS 1 message reaches the
 * session (across its connections), each connection's first deliveries in publish order.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import mqtt from "mqtt"
import { EmbeddedBroker } from "@baton/broker-aedes"
import { firsts, until } from "./waits.ts"

const dirs: Array<string> = []
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

const within = <A>(p: Promise<A>, ms: number, what: string): Promise<A> =>
  Promise.race([p, new Promise<A>((_, reject) => setTimeout(() => reject(new Error(`${what}: not done in ${ms} ms`)), ms))])

// A takeover during a disk store's restore is left out: the new connection then sometimes gets
// none of the session's ~1,800 messages within 15 s (1 run in 4-8, on main before the hold too;
// README, "Delivery guarantees", known defects).
const cases = [
  ["memory", "taken over"],
  ["memory", "disconnected"],
  ["disk", "disconnected"]
] as const
describe("a persistent session's restore cut short", () => {
  it.each(cases)("%s sessions store, %s while live messages are held: publishes complete, no QoS 1 message lost", async (kind, how) => {
    const dir = mkdtempSync(join(tmpdir(), "baton-rr-cut-"))
    dirs.push(dir)
    const broker = await EmbeddedBroker.start({ host: "127.0.0.1", mqttPort: 0, sessions: kind === "memory" ? { kind } : { kind, dir } })
    const url = `mqtt://127.0.0.1:${broker.mqttPort}`
    const opts = { protocolVersion: 4 as const, reconnectPeriod: 0, clean: false, clientId: "rr-cut" }
    const clients: Array<mqtt.MqttClient> = []
    try {
      const first = await mqtt.connectAsync(url, opts)
      await first.subscribeAsync("k/#", { qos: 1 })
      await first.endAsync()
      let i = 0
      const queued = 1500
      for (; i < queued; i++) await broker.publish("k/1", String(i), 1)
      const gotA: Array<number> = []
      const gotB: Array<number> = []
      let stop = false
      const publishing = (async () => {
        for (let j = 0; j < 300 && !stop; j++, i++) await within(broker.publish("k/1", String(i), 1), 8_000, `publish ${i}`)
      })()
      const a = mqtt.connect(url, opts)
      clients.push(a)
      a.on("error", () => {})
      const cut = new Promise<void>((resolve) => {
        a.on("message", (_t, p) => {
          gotA.push(Number(p.toString()))
          if (gotA.length === 1) {
            if (how === "disconnected") a.stream.destroy()
            resolve()
          }
        })
      })
      await within(cut, 10_000, "first stored message")
      const b = mqtt.connect(url, opts)
      clients.push(b)
      b.on("message", (_t, p) => gotB.push(Number(p.toString())))
      let bClosed = ""
      b.on("close", () => (bClosed ||= `closed after ${gotB.length}`))
      b.on("connect", (ack) => (bClosed += ` connack sessionPresent=${ack.sessionPresent}`))
      await within(new Promise((r) => b.once("connect", r)), 10_000, "second connection")
      try {
        await publishing
      } finally {
        stop = true
      }
      const all = Array.from({ length: i }, (_, k) => k)
      await until(() => all.every((k) => gotA.includes(k) || gotB.includes(k)), 15_000)
      const missing = all.filter((k) => !gotA.includes(k) && !gotB.includes(k))
      const inv = (xs: Array<number>) => xs.filter((n, k) => k > 0 && n < xs[k - 1]!).length
      expect(missing, `B: ${bClosed}; A got ${gotA.length}, B ${gotB.length}`).toEqual([])
      expect(inv(firsts(gotA))).toBe(0)
      expect(inv(firsts(gotB))).toBe(0)
    } finally {
      for (const c of clients) c.end(true)
      await broker.close()
    }
  }, 90_000)
})
