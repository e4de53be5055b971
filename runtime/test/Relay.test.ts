import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { Effect } from "effect"
import { Log } from "@baton/core"
import { Outbox, Sqlite } from "@baton/store"
import * as Relay from "../src/Relay.ts"

describe("Relay", () => {
  it("publishes every entry, in order, at least once, whatever publishes fail, and empties the outbox", async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 40 }), fc.array(fc.boolean(), { maxLength: 60 }), async (n, failures) => {
        const store = await Sqlite.open({ path: ":memory:" })
        const outbox = await Outbox.make(store)
        await store.transaction(Effect.forEach(Array.from({ length: n }, (_, i) => i), (i) => outbox.add("events/e", String(i)), { discard: true }))
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
        while ((await outbox.size()) > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 2))
        await relay.close()
        expect(await outbox.size()).toBe(0)
        // Every entry went out; a retried batch may repeat entries, never reorder what was first sent.
        expect(new Set(published)).toEqual(new Set(Array.from({ length: n }, (_, i) => i)))
        const firsts = published.filter((p, i) => published.indexOf(p) === i)
        expect(firsts).toEqual([...firsts].sort((a, b) => a - b))
        await store.close()
      }),
      { numRuns: 30 }
    )
  })

  it("runs: splits sequence numbers into maximal runs of consecutive numbers", () => {
    expect(Relay.runs([])).toEqual([])
    expect(Relay.runs([5])).toEqual([[5, 5]])
    expect(Relay.runs([1, 2, 3])).toEqual([[1, 3]])
    expect(Relay.runs([1, 3])).toEqual([
      [1, 1],
      [3, 3]
    ])
    expect(Relay.runs([1, 2, 4, 5, 6, 9])).toEqual([
      [1, 2],
      [4, 6],
      [9, 9]
    ])
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: 200 }), { maxLength: 60 }), (raw) => {
        const seqs = [...raw].sort((a, b) => a - b)
        const rs = Relay.runs(seqs)
        // Together the runs cover exactly the input, in order ...
        expect(rs.flatMap(([first, last]) => Array.from({ length: last - first + 1 }, (_, i) => first + i))).toEqual(seqs)
        // ... and are maximal: no run ends right before the next begins.
        for (let i = 1; i < rs.length; i++) expect(rs[i]![0]).toBeGreaterThan(rs[i - 1]![1] + 1)
      })
    )
  })

  it("does not delete an entry that became visible inside a published batch's range after the batch was read", async () => {
    const store = await Sqlite.open({ path: ":memory:" })
    try {
      const outbox = await Outbox.make(store)
      const insert = store.query("INSERT INTO outbox (seq, topic, payload, qos, created_at) VALUES (?, ?, ?, ?, ?)")
      const at = new Date().toISOString()
      await store.transaction(Effect.all([insert.run(1, "events/e", "1", 1, at), insert.run(3, "events/e", "3", 1, at)], { discard: true }))
      const seqs = async () => (await store.run(store.query("SELECT seq FROM outbox ORDER BY seq").all())).map((r) => Number(r.seq))
      // What the table holds each time the relay reads a batch.
      const seen: Array<ReadonlyArray<number>> = []
      const published: Array<string> = []
      let late = false
      const relay = Relay.make({
        outbox: { ...outbox, pending: async (limit) => (seen.push(await seqs()), outbox.pending(limit)) },
        logger: Log.silent,
        batch: 10,
        retryMs: 1,
        publish: async (_t, payload) => {
          // The lower sequence number commits late, while the batch [1, 3] is being published (as a
          // concurrent transaction can on PostgreSQL).
          if (!late) {
            late = true
            await store.transaction(insert.run(2, "events/e", "2", 1, at))
          }
          published.push(payload)
        }
      })
      relay.poke()
      await relay.idle()
      await relay.close()
      // The batch read was [1, 3]; after it was sent, 2 is still there (not deleted unsent), and
      // the next batch publishes it.
      expect(seen).toEqual([[1, 3], [2], []])
      expect(published).toEqual(["1", "3", "2"])
      expect(await seqs()).toEqual([])
      expect(await outbox.size()).toBe(0)
    } finally {
      await store.close()
    }
  })
})
