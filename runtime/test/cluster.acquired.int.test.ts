/**
 * `acquired` for every partition a heartbeat gained (Cluster.ts `tick`) on PostgreSQL. A heartbeat
 * claims partitions one after another; when a later statement of it fails (the database cut off
 * for a moment, a statement timeout: a hand-over is when that happens), the partitions gained
 * before it are owned, under their tenure, and the next heartbeat sees nothing new about them.
 * `acquired` is where their pending messages are scheduled, their workflows' timeouts re-armed and
 * partition 0's ingress session taken (layers/Consuming.ts): it must still be called for them.
 * `BATON_PROPERTY_RUNS` sets the number of runs.
 */
import { afterAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import { Effect } from "effect"
import { Log } from "@baton/core"
import { Postgres, type Store } from "@baton/store"
import { freshSchema } from "@baton/testkit/postgres"
import * as Cluster from "../src/Cluster.ts"

const partitions = 6
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
})

/** `store` whose claim statement fails at its `failAt`th run (as a connection cut then would). */
const failingClaim = (store: Store, failAt: number): Store => {
  let n = 0
  return {
    ...store,
    query: (text) => {
      const q = store.query(text)
      if (!text.startsWith("UPDATE cluster_partitions SET owner = ?, epoch = epoch + 1")) return q
      return { ...q, get: (...params) => Effect.suspend(() => (++n === failAt ? Effect.die(new Error("connection reset")) : q.get(...params))) }
    }
  }
}

describe("acquired for every partition a heartbeat gained (Cluster.ts) on PostgreSQL", () => {
  it("for all claims of a heartbeat that fail: every partition owned was handed to `acquired`", async () => {
    const schema = await freshSchema()
    cleanups.push(schema.drop)
    const store = await Postgres.open({ url: schema.url, poolSize: 2 })
    cleanups.push(() => store.close())
    let round = 0
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: partitions }), async (failAt) => {
        const instance = `m${++round}`
        // Each run a new member alone: the partitions free (the last one's released on its stop).
        const acquired = new Set<number>()
        const nothing = () => undefined
        const cluster = await Cluster.make({
          store: failingClaim(store, failAt),
          url: schema.url,
          instance,
          partitions,
          heartbeatMs: 30,
          deadAfterMs: 5_000,
          address: { http: "-", mqtt: "-" },
          logger: Log.silent,
          acquired: async (parts) => void parts.forEach((p) => acquired.add(p)),
          released: nothing,
          pending: nothing,
          adopt: nothing
        })
        try {
          await cluster.start()
          const deadline = Date.now() + 5_000
          while (Array.from({ length: partitions }, (_, p) => p).some((p) => !cluster.owns(p)) && Date.now() < deadline) await sleep(10)
          // A few heartbeats more: whatever the next ones would make up for.
          await sleep(150)
          const owned = Array.from({ length: partitions }, (_, p) => p).filter((p) => cluster.owns(p))
          expect(owned, "every partition owned").toHaveLength(partitions)
          expect([...acquired].sort((a, b) => a - b), `acquired, the claim #${failAt} failing`).toEqual(owned)
        } finally {
          await cluster.stop(async () => undefined)
        }
      }),
      { numRuns: Number(process.env.BATON_PROPERTY_RUNS ?? 12) }
    )
  }, 120_000)
})
