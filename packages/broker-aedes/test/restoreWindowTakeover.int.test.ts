/**
 * A persistent session's restore waiting on its window (patches/aedes@1.2.0.patch, qos-packet.js
 * `restoreFull`) when its connection is taken over by the same client id, or disconnects: the old
 * one gets nothing more, the next one gets what the old one did not acknowledge, once each, in
 * order, with the live messages published meanwhile; nothing is left after. (Review of the inflight branch.)
 * The full order is checked on disk as on the other stores: the disk store settles one client id's
 * operations in submission order (patches/aedes-persistence-level@9.2.0.patch, #inOrder). Before
 * the fix the live messages there went out in the order LevelDB's writes completed: the restore
 * window's review saw this test fail on disk about 1 run in 10, and it checked there only "each
 * once, the stored ones in order" (28 runs of it in the session of the fix were all green on the old
 * code: liveOrder.int.test.ts is the one that reproduces the defect, in about half its runs).
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
const drainAll = async (c: Awaited<ReturnType<typeof Raw.connect>>, total: () => number) => {
  for (let i = 0; i < 80; i++) { await c.quiet(30); await c.ack(); if (c.outstanding.size === 0 && c.got.length >= total()) break }
  await c.quiet(100); await c.ack(); await c.quiet(50)
}

describe.each(["memory", "disk", "redis"] as const satisfies ReadonlyArray<Kind>)("a restore waiting on its window, %s sessions store", (kind) => {
  for (const mode of ["takeover", "disconnect"] as const) for (let round = 0; round < 3; round++) it(`${mode} while the restore waits (round ${round})`, async () => {
    const { aedes, url, close } = await aedesBroker({ persistence: aedesPersistence(kind, cleanup) }, true)
    Object.assign(aedes, { trackInflight: true, restoreInflight: 3 })
    const port = Number(new URL(url).port)
    const pub = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clientId: "pub" })
    const published: Array<string> = []
    const publish = async (qos: 1 | 2) => {
      const payload = `m${published.length}q${qos}`
      published.push(payload)
      await pub.publishAsync("p/x", payload, { qos })
    }
    try {
      await (await Raw.connect(port, "w", subs)).close()
      for (let i = 0; i < 10; i++) await publish(1)
      const c1 = await Raw.connect(port, "w", [])
      await c1.quiet(100)
      expect(c1.outstanding.size).toBe(3)
      await c1.ack(1 + round)
      await c1.quiet(50)
      for (let i = 0; i < 4; i++) await publish(1)
      const acked = c1.got.length - c1.outstanding.size
      const ackedPayloads = c1.got.slice(0, acked).map((d) => d.payload)
      if (mode === "disconnect") await c1.close()
      const c2 = await Raw.connect(port, "w", [])
      for (let i = 0; i < 3; i++) await publish(1)
      await drainAll(c2, () => published.length - acked)
      await c2.close()
      await c1.close()
      const again = await Raw.connect(port, "w", [])
      await again.quiet(150)
      await again.close()
      const p2 = c2.got.map((d) => d.payload)
      expect(c2.reused).toEqual([])
      expect(new Set(p2).size).toBe(p2.length)
      // In publish order on every store, on disk too (see the header).
      expect([...ackedPayloads, ...p2]).toEqual(published)
      expect(again.got).toEqual([])
      expect(c1.got.length).toBe(acked + c1.outstanding.size)
      // c1 got nothing more after the takeover than its window
      expect(c1.got.length).toBeLessThanOrEqual(acked + 3)
    } finally {
      pub.end(true)
      await close()
    }
  }, 30_000)
})
