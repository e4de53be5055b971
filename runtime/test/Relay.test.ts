import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { Log } from "@baton/core"
import { Outbox, Sqlite } from "@baton/store"
import * as Relay from "../src/Relay.ts"

describe("Relay", () => {
  it("publishes every entry, in order, at least once, whatever publishes fail, and empties the outbox", async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 40 }), fc.array(fc.boolean(), { maxLength: 60 }), async (n, failures) => {
        const store = Sqlite.open({ path: ":memory:" })
        const outbox = Outbox.make(store)
        store.transaction(() => Array.from({ length: n }, (_, i) => outbox.add("events/e", String(i))))
        const published: Array<number> = []
        let call = 0
        const relay = Relay.make({
          outbox,
          logger: Log.silent,
          batch: 7,
          retryMs: 1,
          publish: async (_t, payload) => {
            if (failures[call++ % Math.max(1, failures.length)] === true && call < 200) throw new Error("broker away")
            published.push(Number(payload))
          }
        })
        relay.poke()
        const until = Date.now() + 5000
        while (outbox.size() > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 2))
        await relay.close()
        expect(outbox.size()).toBe(0)
        // Every entry went out; a retried batch may repeat entries, never reorder what was first sent.
        expect(new Set(published)).toEqual(new Set(Array.from({ length: n }, (_, i) => i)))
        const firsts = published.filter((p, i) => published.indexOf(p) === i)
        expect(firsts).toEqual([...firsts].sort((a, b) => a - b))
      }),
      { numRuns: 30 }
    )
  })
})
