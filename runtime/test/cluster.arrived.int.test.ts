/**
 * A notification hands over what arrived (Cluster.ts, `arrived`): one read of the owned
 * partitions' pending messages written by transactions that had not ended at the previous read.
 * Transactions of another instance commit in any order (a later one first, one held open across
 * several reads): every message they wrote reaches the owner through notifications alone (no
 * sweep during the test), however its transaction's start, its commit and the reads interleave;
 * and once: a read that returns it again (its transaction had not ended when the previous read
 * took its horizon) does not hand it over twice.
 */
import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { Effect } from "effect"
import { Log } from "@baton/core"
import { Inbox, Postgres, type Store } from "@baton/store"
import { freshSchema } from "@baton/testkit/postgres"
import * as Cluster from "../src/Cluster.ts"

const partitions = 4
const numRuns = Number(process.env.BATON_PROPERTY_RUNS ?? 25)
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Messages sent in transactions begun in order, then committed in `commits` order, with pauses. */
const plan = fc
  .array(fc.record({ key: fc.constantFrom("a", "b", "c", "d", "e", "f"), pause: fc.nat({ max: 15 }) }), { minLength: 1, maxLength: 8 })
  .chain((messages) => fc.record({ messages: fc.constant(messages), commits: fc.shuffledSubarray(messages.map((_, i) => i), { minLength: messages.length }) }))

/** A member's settings: hooks that do nothing (but `arrived`, given per test), the sweep every two heartbeats (at least a second). */
const options = (store: Store, url: string, heartbeatMs: number) => {
  const nothing = () => undefined
  return { store, url, partitions, heartbeatMs, deadAfterMs: heartbeatMs * 50, address: { http: "-", mqtt: "-" }, logger: Log.silent, acquired: nothing, released: nothing, pending: nothing, adopt: nothing }
}

describe("messages another instance writes for this one's partitions (Cluster.ts, arrived)", () => {
  it("for any order of commits of concurrent transactions: every message is handed over by the notifications alone, once", async () => {
    const db = await freshSchema()
    const store = await Postgres.open({ url: db.url, poolSize: 12 })
    const arrived = new Set<string>()
    const twice: Array<string> = []
    // No heartbeat nor sweep during the test: only notifications wake the member.
    const common = options(store, db.url, 60_000)
    const member = await Cluster.make({ ...common, instance: "member", arrived: (entries) => entries.forEach((e) => (arrived.has(e.envelopeId) ? twice.push(e.envelopeId) : arrived.add(e.envelopeId))) })
    const sender = await Cluster.make({ ...common, instance: "sender" })
    const inbox = await Inbox.make(store, { partitions, notify: sender.notify })
    await member.start()
    let sent = 0
    try {
      await fc.assert(
        fc.asyncProperty(plan, async ({ messages, commits }) => {
          const gates = messages.map(() => Promise.withResolvers<void>())
          const begun = messages.map(() => Promise.withResolvers<void>())
          const ids = messages.map(() => `m${++sent}`)
          const transactions = messages.map((m, i) =>
            store.transaction(
              Effect.andThen(
                inbox.receive("p", { envelopeId: ids[i]!, topic: "t", key: m.key, payload: "{}" }),
                Effect.promise(() => (begun[i]!.resolve(), gates[i]!.promise))
              )
            )
          )
          await Promise.all(begun.map((b) => b.promise))
          for (const i of commits) {
            gates[i]!.resolve()
            await transactions[i]
            await sleep(messages[i]!.pause)
          }
          const deadline = Date.now() + 5_000
          while (ids.some((id) => !arrived.has(id)) && Date.now() < deadline) await sleep(10)
          expect(ids.filter((id) => !arrived.has(id))).toEqual([])
          await sleep(20) // a read still under way
          expect(twice).toEqual([])
        }),
        { numRuns }
      )
    } finally {
      await member.abandon()
      await store.close()
      await db.drop()
    }
  })

  it("a message whose notification never came reaches its owner through the sweep's read of what arrived, once; alone, an instance sweeps every pending message", async () => {
    const db = await freshSchema()
    const store = await Postgres.open({ url: db.url, poolSize: 4 })
    const arrived: Array<string> = []
    const swept: Array<ReadonlyArray<number>> = []
    // Heartbeats every 100 ms: a sweep every second.
    const member = await Cluster.make({ ...options(store, db.url, 100), instance: "member", arrived: (entries) => entries.forEach((e) => arrived.push(e.envelopeId)), pending: (parts) => void swept.push(parts) })
    const other = await Cluster.make({ ...options(store, db.url, 100), instance: "other" })
    try {
      await member.start()
      // Alone: its sweeps go through `pending` (what arrived would be its own messages in flight).
      const deadline = Date.now() + 5_000
      while (swept.length === 0 && Date.now() < deadline) await sleep(20)
      expect(swept.length).toBeGreaterThan(0)
      await other.start()
      // The partitions shared out: each owned by one of the two.
      const all = Array.from({ length: partitions }, (_, p) => p)
      const shared = () => all.every((p) => member.owns(p) !== other.owns(p)) && !all.every((p) => member.owns(p))
      while (!shared() && Date.now() < deadline + 10_000) await sleep(20)
      expect(shared()).toBe(true)
      // Two live instances: a key of a partition the member owns, written with no notification at all.
      const key = ["a", "b", "c", "d", "e", "f", "g", "h"].find((k) => member.owns(Inbox.partitionOf(k, partitions)))!
      const silent = await Inbox.make(store, { partitions })
      await store.transaction(silent.receive("p", { envelopeId: "quiet", topic: "t", key, payload: "{}" }))
      while (arrived.length === 0 && Date.now() < deadline + 15_000) await sleep(20)
      await sleep(1_200) // the next sweep does not hand it over again
      expect(arrived).toEqual(["quiet"])
    } finally {
      await other.abandon()
      await member.abandon()
      await store.close()
      await db.drop()
    }
  })
})
