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
import { firsts, until, within } from "./waits.ts"

const dirs: Array<string> = []
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

// Taken over during a disk store's restore, the new connection got none of the session's stored
// messages, in about 1 run in 5 (loop it to see it): its restore stream read, from its snapshot,
// a message that a PUBACK of the old connection, cleared asynchronously, removed meanwhile, and
// the "no such packet" of its update closed the new connection (Aedes patch, connect.js
// emptyQueueFilter: now skipped, it was acknowledged).
const cases = [
  ["memory", "taken over"],
  ["memory", "disconnected"],
  ["disk", "disconnected"],
  ["disk", "taken over"]
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
      const queued = 3000
      for (; i < queued; i++) await broker.publish("k/1", String(i), 1)
      let stop = false
      const publishing = (async () => {
        for (let j = 0; j < 300 && !stop; j++, i++) await within(broker.publish("k/1", String(i), 1), 8_000, `publish ${i}`)
      })()
      // Disconnected: the first connection's socket is destroyed at its first message, then a second
      // one connects. Taken over: each connection stops sending (its socket corked, its PUBACKs
      // wait) at its first message and, after 200, is taken over by the next one, whose CONNECT
      // sent it sends them, so that the broker clears many acknowledged messages while it connects
      // the next one and begins its restore; five times (the race is lost in most).
      const takeovers = how === "taken over" ? 5 : 1
      const got: Array<Array<number>> = []
      const states: Array<string> = []
      let previous: mqtt.MqttClient | undefined
      for (let n = 0; n <= takeovers; n++) {
        const c = mqtt.connect(url, opts)
        clients.push(c)
        c.on("error", () => {})
        const mine: Array<number> = []
        got.push(mine)
        states.push("")
        const before = previous
        if (how === "taken over" && before !== undefined) c.stream.once("connect", () => before.stream.uncork())
        c.on("connect", (ack) => (states[n] += `connack sessionPresent=${ack.sessionPresent}`))
        c.on("close", () => (states[n] += `, closed after ${mine.length}`))
        const cut = new Promise<void>((resolve) => {
          c.on("message", (_t, p) => {
            mine.push(Number(p.toString()))
            if (mine.length === 1 && n < takeovers) {
              if (how === "disconnected") {
                c.stream.destroy()
                resolve()
              } else c.stream.cork()
            }
            if (mine.length === 200) resolve()
          })
        })
        if (n < takeovers) await within(cut, 10_000, `connection ${n}: ${how === "disconnected" ? "first stored message" : "200 stored messages"}`)
        else await within(new Promise((r) => c.once("connect", r)), 10_000, `connection ${n}: CONNACK`)
        previous = c
      }
      try {
        await publishing
      } finally {
        stop = true
      }
      const all = Array.from({ length: i }, (_, k) => k)
      const gotten = () => new Set(got.flat())
      await until(() => gotten().size === i, 15_000)
      const seen = gotten()
      const missing = all.filter((k) => !seen.has(k))
      const inv = (xs: Array<number>) => xs.filter((n, k) => k > 0 && n < xs[k - 1]!).length
      expect(missing, got.map((xs, n) => `connection ${n}: got ${xs.length}, ${states[n]}`).join("; ")).toEqual([])
      for (const xs of got) expect(inv(firsts(xs))).toBe(0)
    } finally {
      for (const c of clients) c.end(true)
      await broker.close()
    }
  }, 90_000)
})
