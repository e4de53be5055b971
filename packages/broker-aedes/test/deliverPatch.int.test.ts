/**
 * The patch of aedes (`patches/aedes@1.2.0.patch`): a message for a subscriber is written to its
 * socket in a microtask, not at the event loop's next check phase, and a write's callback comes
 * in a tick (after mqtt-packet's uncork, so that a close right after it loses nothing: the
 * refused CONNACKs of security.int.test.ts, lost with a microtask). So an in-process publish (the outbox relay's, one at a time, each awaited)
 * reaches a clean subscriber's socket and completes without waiting for a turn of the loop, in
 * which the runtime may run a whole group commit first: a reply, or a run of outbox entries, left
 * one turn (or two) per message behind whatever else the loop had. For all runs of publishes,
 * QoS 0 and 1, on the memory and the disk sessions store: every one completes before a
 * `setImmediate` queued at the first, and the subscribers get each message, once and in order.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it, vi } from "vitest"
import fc from "fast-check"
import mqtt from "mqtt"
import { EmbeddedBroker } from "@baton/broker-aedes"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 20)
const dirs: Array<string> = []
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

/** A clean subscriber on `filter` at `qos`, collecting each message as `topic payload`. */
const subscriber = async (b: EmbeddedBroker.EmbeddedBroker, filter: string, qos: 0 | 1) => {
  const got: Array<string> = []
  const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${b.mqttPort}`, { protocolVersion: 4, reconnectPeriod: 0 })
  c.on("message", (topic, payload) => got.push(`${topic} ${payload.toString()}`))
  await c.subscribeAsync(filter, { qos })
  return { c, got }
}

const publishes = fc.array(fc.record({ topic: fc.constantFrom("t/a", "t/b"), qos: fc.constantFrom(0 as const, 1 as const), text: fc.string({ maxLength: 40 }) }), { minLength: 1, maxLength: 8 })

describe.each(["memory", "disk"] as const)("in-process publishes to clean subscribers (a persistent one on disk waits on LevelDB), %s sessions store", (kind) => {
  it("for all runs of publishes, each awaited: all complete before the loop's next check phase, and each subscriber gets its messages once, in order", async () => {
    const dir = mkdtempSync(join(tmpdir(), "baton-deliver-"))
    dirs.push(dir)
    const broker = await EmbeddedBroker.start({ host: "127.0.0.1", mqttPort: 0, sessions: kind === "memory" ? { kind } : { kind, dir } })
    const all = await subscriber(broker, "t/#", 1)
    const onA = await subscriber(broker, "t/a", 0)
    try {
      let run = 0
      await fc.assert(
        fc.asyncProperty(publishes, async (ps) => {
          run++
          all.got.length = 0
          onA.got.length = 0
          const sent = ps.map((p, i) => ({ ...p, line: `${p.topic} ${run}:${i}:${p.text}` }))
          let turned = false
          setImmediate(() => {
            turned = true
          })
          // As the outbox relay publishes: one at a time, each awaited.
          for (const p of sent) await broker.publish(p.topic, p.line.slice(p.topic.length + 1), p.qos)
          expect(turned).toBe(false)
          const wanted = sent.map((p) => p.line)
          const wantedOnA = sent.filter((p) => p.topic === "t/a").map((p) => p.line)
          await vi.waitFor(() => expect([all.got.length, onA.got.length]).toEqual([wanted.length, wantedOnA.length]), { timeout: 10_000, interval: 5 })
          // Nothing more trails in (a duplicate would).
          await new Promise((r) => setTimeout(r, 20))
          expect(all.got).toEqual(wanted)
          expect(onA.got).toEqual(wantedOnA)
        }),
        { numRuns: runs }
      )
    } finally {
      await Promise.all([all.c.endAsync(), onA.c.endAsync()])
      await broker.close()
    }
  })
})

describe("a connection closed right after a write", () => {
  it("for any refused client: the CONNACK refusing it arrives before the close", async () => {
    const broker = await EmbeddedBroker.start({
      host: "127.0.0.1",
      mqttPort: 0,
      guard: { connect: async () => ({ ok: false, reason: "no" }), publish: () => undefined, subscribe: () => undefined }
    })
    try {
      await fc.assert(
        fc.asyncProperty(fc.stringMatching(/^[a-z0-9-]{1,20}$/), async (clientId) => {
          const refused = mqtt.connectAsync(`mqtt://127.0.0.1:${broker.mqttPort}`, { protocolVersion: 4, clientId, reconnectPeriod: 0 })
          // Closed without the CONNACK, the client would wait for ever.
          const lost = new Promise<never>((_, reject) => setTimeout(() => reject(new Error("no CONNACK before the close")), 5000).unref())
          await expect(Promise.race([refused, lost])).rejects.toThrow(/Not authorized/i)
        }),
        { numRuns: Math.min(runs, 10) }
      )
    } finally {
      await broker.close()
    }
  })
})

