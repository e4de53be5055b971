/**
 * A persistent session's restore waiting on its window (patches/aedes@1.2.0.patch, qos-packet.js
 * `restoreFull`) with QoS 1 and QoS 2 messages, overlapping subscriptions (p/# at QoS 2, p/+ at
 * QoS 1), live messages from one publisher held while it waits and published while it ends: each
 * once, the stored ones first in order, the live ones per topic and QoS in publish order (a QoS 2
 * one is forwarded at its PUBREL, after a later QoS 1 one maybe), PUBREC/PUBCOMP freeing the
 * window, nothing left for the next connection. (Review of the inflight branch.)
 */
import { afterAll, describe, expect, it } from "vitest"
import mqtt from "mqtt"
import { aedesBroker, aedesPersistence, type Kind } from "./sessions.ts"
import * as Raw from "./rawClient.ts"

const cleanup: Array<() => unknown> = []
afterAll(async () => {
  for (const c of cleanup) await c()
})
const subs = [{ topic: "p/#", qos: 2 as const }, { topic: "p/+", qos: 1 as const }]

describe.each(["memory", "disk", "redis"] as const satisfies ReadonlyArray<Kind>)("a restore waiting on its window, %s sessions store", (kind) => {
  for (let round = 0; round < 4; round++) it(`QoS 1/2 mixed, overlapping subs, live released at the restore's end (round ${round})`, async () => {
    const { aedes, url, close } = await aedesBroker({ persistence: aedesPersistence(kind, cleanup) }, true)
    Object.assign(aedes, { trackInflight: true, restoreInflight: 3 })
    const port = Number(new URL(url).port)
    const published: Array<string> = []
    const pub = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clientId: "pub" })
    const publish = async (qos: 0 | 1 | 2) => {
      const payload = `m${published.length}q${qos}`
      published.push(payload)
      await pub.publishAsync(`p/${published.length % 3}`, payload, { qos })
    }
    try {
      await (await Raw.connect(port, "w", subs)).close()
      for (let i = 0; i < 8; i++) await publish(i % 2 === 0 ? 1 : 2)
      const c = await Raw.connect(port, "w", [])
      await c.quiet(100)
      expect(c.outstanding.size).toBe(3)
      // live during the wait, mixed
      const lives: Array<Promise<void>> = []
      for (let i = 0; i < 6; i++) lives.push(publish(i % 2 === 0 ? 2 : 1))
      await Promise.all(lives)
      // ack to let the restore end while publishing more, concurrently
      const acks = (async () => { for (let i = 0; i < 10; i++) { await c.ack(1 + (round % 3)); await new Promise((r) => setTimeout(r, round)) } })()
      const more = (async () => { for (let i = 0; i < 6; i++) { await publish(i % 2 === 0 ? 1 : 2); await new Promise((r) => setImmediate(r)) } })()
      await Promise.all([acks, more])
      for (let i = 0; i < 50 && c.got.length < published.length; i++) { await c.quiet(30); await c.ack() }
      await c.quiet(100)
      await c.ack()
      await c.quiet(100)
      await c.close()
      const again = await Raw.connect(port, "w", [])
      await again.quiet(150)
      await again.close()
      const payloads = c.got.map((d) => d.payload)
      expect(c.reused).toEqual([])
      const q = (n: string) => (l: ReadonlyArray<string>) => l.filter((x) => x.endsWith(n))
      expect(payloads.slice(0, 8)).toEqual(published.slice(0, 8))
      expect([...payloads].sort()).toEqual([...published].sort())
      const t = (k: number) => (l: ReadonlyArray<string>) => l.filter((x) => (Number(x.slice(1, x.indexOf("q"))) + 1) % 3 === k)
      for (const k of [0, 1, 2]) {
        expect(q("q1")(t(k)(payloads))).toEqual(q("q1")(t(k)(published)))
        expect(q("q2")(t(k)(payloads))).toEqual(q("q2")(t(k)(published)))
      }
      expect(again.got).toEqual([])
    } finally {
      pub.end(true)
      await close()
    }
  }, 30_000)
})
