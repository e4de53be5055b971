/**
 * A persistent session's restore waits while its window of messages in flight is full
 * (patches/aedes@1.2.0.patch, qos-packet.js `restoreFull`), and goes on as the client acknowledges
 * them (test/idWrap.int.test.ts for why). The property: for all stored messages (random keys), all
 * windows, and all interleavings of slow acknowledgements (the oldest few at a time, in the order
 * received [MQTT-4.6.0-2]) with live publishes (QoS 0 or 1, after the CONNACK), the client holds no
 * more than the window unacknowledged before the first live one, gets every message once, per key
 * in publish order, the live ones after the stored ones, no id in flight twice, and nothing is left
 * for its next connection. `BATON_PROPERTY_RUNS` (default 5 per store) for more runs.
 */
import { afterAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import { aedesBroker, aedesPersistence, aedesPublish, type Kind } from "./sessions.ts"
import * as Raw from "./rawClient.ts"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 5)

const cleanup: Array<() => unknown> = []
afterAll(async () => {
  for (const c of cleanup) await c()
})
/** The session's subscription, made by its first connection (the next ones subscribe to nothing). */
const subs = [{ topic: "p/#", qos: 1 as const }]

type Step = { readonly kind: "ack"; readonly count: number } | { readonly kind: "live"; readonly key: number; readonly qos: 0 | 1 }

const key = fc.integer({ min: 0, max: 3 })
const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant("ack" as const), count: fc.integer({ min: 1, max: 3 }) }),
  fc.record({ kind: fc.constant("live" as const), key, qos: fc.constantFrom(0 as const, 1 as const) })
)

/** Per key, the numbers of `payloads` (`key:n`) in their order. */
const byKey = (payloads: ReadonlyArray<string>) => {
  const out = new Map<string, Array<number>>()
  for (const p of payloads) {
    const [k, n] = p.split(":") as [string, string]
    out.set(k, [...(out.get(k) ?? []), Number(n)])
  }
  return out
}

describe.each(["memory", "disk", "redis"] as const satisfies ReadonlyArray<Kind>)("a persistent session's restore with slow acknowledgements, %s sessions store", (kind) => {
  it("for all stored messages, windows and interleavings of acks and live publishes: each once, per key in publish order, stored first", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(key, { minLength: 1, maxLength: 40 }), fc.integer({ min: 1, max: 6 }), fc.array(step, { maxLength: 30 }), async (offline, window, steps) => {
        const { aedes, url, close } = await aedesBroker({ persistence: aedesPersistence(kind, cleanup) }, true)
        Object.assign(aedes, { trackInflight: true, restoreInflight: window })
        const port = Number(new URL(url).port)
        const published: Array<string> = []
        const publish = async (k: number, qos: 0 | 1) => {
          const payload = `${k}:${published.length}`
          published.push(payload)
          await aedesPublish(aedes, payload, qos, `p/${k}`)
        }
        try {
          await (await Raw.connect(port, "window", subs)).close()
          for (const k of offline) await publish(k, 1)
          const stored = published.length

          const c = await Raw.connect(port, "window", [])
          await c.quiet(100)
          // The restore waits with its window full (or everything sent).
          expect(c.outstanding.size).toBe(Math.min(window, stored))
          for (const s of steps) {
            if (s.kind === "live") await publish(s.key, s.qos)
            else {
              await c.ack(s.count)
              await c.quiet(15)
            }
          }
          let received = -1
          while (c.got.length > received || c.got.length < published.length) {
            received = c.got.length
            await c.quiet(received < published.length ? 30 : 100)
            if (c.outstanding.size === 0 && c.got.length === received) break
            await c.ack()
          }
          await c.ack()
          await c.close()
          const again = await Raw.connect(port, "window", [])
          await again.quiet(100)
          await again.close()

          const payloads = c.got.map((d) => d.payload)
          expect(c.reused).toEqual([])
          expect(new Set(payloads).size).toBe(payloads.length)
          expect([...payloads].sort()).toEqual([...published].sort())
          expect(byKey(payloads)).toEqual(byKey(published))
          expect(payloads.slice(0, stored)).toEqual(published.slice(0, stored))
          expect(again.got).toEqual([])
        } finally {
          await close()
        }
      }),
      { numRuns: runs }
    )
  }, 120_000)
})
