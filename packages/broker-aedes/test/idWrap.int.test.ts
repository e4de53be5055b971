/**
 * A persistent session restored with more stored QoS 1 messages than there are packet ids (65,535)
 * to a client that acknowledges none of them until it has them all. Aedes 1.2 sent them all: past
 * 65,535 a message took an id still in flight [MQTT-2.3.1-2], and the client's PUBACK for one of the
 * two then cleared the other from the store, lost for the session. The restore writes its next
 * stored message only while fewer than a window of messages are in flight to the client
 * (patches/aedes@1.2.0.patch, qos-packet.js `restoreFull`), and goes on as they are acknowledged;
 * a publisher is acknowledged meanwhile, and its messages for the session come after the stored ones.
 */
import { afterAll, describe, expect, it } from "vitest"
import mqtt from "mqtt"
import { EmbeddedBroker } from "@baton/broker-aedes"
import { freshSessions, type Kind } from "./sessions.ts"
import * as Raw from "./rawClient.ts"
import { firsts, until, within } from "./waits.ts"

const cleanup: Array<() => unknown> = []
afterAll(async () => {
  for (const c of cleanup) await c()
})
/** The session's subscription, made by its first connection (the next ones subscribe to nothing). */
const subs = [{ topic: "k/#", qos: 1 as const }]

// As the runtime's guard, with its default bound (BATON_MAX_INFLIGHT).
const guard: EmbeddedBroker.Guard = { connect: async () => ({ ok: true }), publish: () => undefined, subscribe: () => undefined, maxInflight: 10_000 }
const stored = 65_535 + 1_000

describe("a persistent session's restore of more stored messages than packet ids", () => {
  // Redis is left out: its 66,535 stored messages take more than a minute (restoreWindow.int.test.ts has it).
  it.each(["memory", "disk"] as const satisfies ReadonlyArray<Kind>)(
    "%s sessions store: no id given twice while in flight, every message delivered once, in order, none left",
    async (kind) => {
      const broker = await EmbeddedBroker.start({ host: "127.0.0.1", mqttPort: 0, sessions: freshSessions(kind, cleanup), guard })
      const publisher = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.mqttPort}`, { protocolVersion: 4, reconnectPeriod: 0, clientId: "publisher" })
      try {
        const first = await Raw.connect(broker.mqttPort, "wrap", subs)
        await first.close()
        const published: Array<string> = []
        for (let i = 0; i < stored; i++) {
          published.push(`s${i}`)
          await broker.publish("k/1", `s${i}`, 1)
        }

        const c = await Raw.connect(broker.mqttPort, "wrap", [])
        // (Redis: the restore reads the kept ids first, one GET a stored message.)
        await until(() => c.got.length > 0, 30_000)
        let rounds = 0
        let received = -1
        while (c.got.length > received) {
          received = c.got.length
          // Nothing acknowledged until the broker stops sending: a second the first time (Aedes
          // unpatched sent all of them at once, with a pause of ~100 ms now and then).
          await c.quiet(rounds === 0 ? 1_000 : 100)
          if (rounds++ === 0) {
            // The restore waits for acknowledgements: a publisher is acknowledged meanwhile, for the
            // session's topic (its messages held behind the stored ones) as for another one.
            for (let i = 0; i < 5; i++) {
              published.push(`live${i}`)
              await within(publisher.publishAsync("k/1", `live${i}`, { qos: 1 }), 2_000, `PUBACK of live${i}`)
              await within(publisher.publishAsync("other/1", `o${i}`, { qos: 1 }), 2_000, `PUBACK of o${i}`)
            }
            await c.quiet(100)
          }
          await c.ack()
        }
        await c.close()
        // Everything was acknowledged: nothing is left for the session, nothing comes again.
        const again = await Raw.connect(broker.mqttPort, "wrap", [])
        await again.quiet(300)
        await again.close()
        const payloads = c.got.map((d) => d.payload)
        console.log(`${kind}: ${c.got.length} deliveries in ${rounds} rounds of acknowledgements, ${c.reused.length} with an id in flight, ${again.got.length} again at the next connection`)
        expect(c.reused.slice(0, 3)).toEqual([])
        expect(payloads.length).toBe(published.length)
        expect(firsts(payloads)).toEqual(published)
        expect(again.got).toEqual([])
      } finally {
        await publisher.endAsync()
        await broker.close()
      }
    },
    // 32-42 s on disk with other tests beside it on 2 cores: room for a loaded CI machine.
    150_000
  )

  it("a restore waiting for PUBACKs while more live messages than it holds early (4,096) wait behind it: the client is disconnected after the drain timeout, the publisher goes on, nothing is lost", async () => {
    const refused: Array<string> = []
    const broker = await EmbeddedBroker.start({ host: "127.0.0.1", mqttPort: 0, sessions: freshSessions("memory", cleanup), guard: { ...guard, onRefused: (what, _c, reason) => void refused.push(`${what}: ${reason}`) }, drainTimeoutMs: 500 })
    const url = `mqtt://127.0.0.1:${broker.mqttPort}`
    const publisher = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clientId: "publisher" })
    try {
      await (await Raw.connect(broker.mqttPort, "stall", subs)).close()
      const published: Array<string> = []
      for (let i = 0; i < 1_100; i++) {
        published.push(`s${i}`)
        await broker.publish("k/1", `s${i}`, 1)
      }
      const c = await Raw.connect(broker.mqttPort, "stall", [])
      await c.quiet(300)
      expect(c.got.length).toBeLessThan(1_100)
      for (let i = 0; i < 4_096 + 100; i++) {
        published.push(`live${i}`)
        await within(publisher.publishAsync("k/1", `live${i}`, { qos: 1 }), 3_000, `PUBACK of live${i}`)
      }
      expect(refused.filter((r) => r.startsWith("slow-consumer"))).toHaveLength(1)
      await c.close()
      // The next connection, acknowledging as they come, gets them all, in order.
      // (Its listener before the CONNACK: stored messages come right behind it.)
      const next = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, clean: false, clientId: "stall" })
      const got: Array<string> = []
      next.on("message", (_t, p) => got.push(p.toString()))
      await until(() => got.length >= published.length, 20_000)
      await next.endAsync()
      expect(firsts(got)).toEqual(published)
    } finally {
      publisher.end(true)
      await broker.close()
    }
  }, 60_000)
})
