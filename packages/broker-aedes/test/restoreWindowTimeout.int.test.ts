/**
 * A persistent session's restore waiting on its window while more live messages than it holds early
 * (4,096) wait behind it (patches/aedes@1.2.0.patch, client.js `_restoreStalled`): the client is
 * disconnected after the drain timeout ('clientError' "restore timeout"), the publishers go on, and
 * the next connection gets every stored and live QoS 1 message, in order, on every store.
 * (Review of the inflight branch; test/idWrap.int.test.ts has it on memory through EmbeddedBroker.)
 */
import { afterAll, describe, expect, it } from "vitest"
import { aedesBroker, aedesPersistence, aedesPublish, type Kind } from "./sessions.ts"
import * as Raw from "./rawClient.ts"

const cleanup: Array<() => unknown> = []
afterAll(async () => {
  for (const c of cleanup) await c()
})

describe.each(["memory", "disk", "redis"] as const satisfies ReadonlyArray<Kind>)("a restore waiting on its window past the drain timeout, %s sessions store", (kind) => {
  it("restore timeout: disconnect observable, nothing QoS 1 lost, order kept", async () => {
    const { aedes, url, close } = await aedesBroker({ persistence: aedesPersistence(kind, cleanup), drainTimeout: 300 }, true)
    Object.assign(aedes, { trackInflight: true, restoreInflight: 3 })
    const errors: Array<string> = []
    aedes.on("clientError", (_c: unknown, e: Error) => errors.push(e.message))
    const port = Number(new URL(url).port)
    const published: Array<string> = []
    try {
      await (await Raw.connect(port, "w", [{ topic: "p/#", qos: 1 }])).close()
      for (let i = 0; i < 10; i++) { published.push(`s${i}`); await aedesPublish(aedes, `s${i}`, 1, "p/x") }
      const c = await Raw.connect(port, "w", [])
      await c.quiet(100)
      expect(c.outstanding.size).toBe(3)
      const pending: Array<Promise<void>> = []
      for (let i = 0; i < 4200; i++) {
        published.push(`l${i}`)
        const p = aedesPublish(aedes, `l${i}`, 1, "p/x")
        if (i < 4000) await p
        else pending.push(p)
      }
      const t0 = Date.now()
      while (!c.closed && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20))
      expect(c.closed).toBe(true)
      await Promise.all(pending)
      expect(errors.some((e) => /restore timeout/.test(e))).toBe(true)
      Object.assign(aedes, { restoreInflight: 100_000 })
      const c2 = await Raw.connect(port, "w", [])
      for (let i = 0; i < 100 && c2.got.length < published.length; i++) { await c2.quiet(50); await c2.ack() }
      await c2.quiet(100); await c2.ack()
      await c2.close()
      const p2 = c2.got.map((d) => d.payload)
      expect(p2.length).toBe(published.length)
      expect(p2).toEqual(published)
    } finally {
      await close()
    }
  }, 60_000)
})
