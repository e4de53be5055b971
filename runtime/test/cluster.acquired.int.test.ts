/**
 * A heartbeat whose statements fail (Cluster.ts `tick`) on PostgreSQL: `acquired` for every
 * partition it gained, and a new tenure for a partition got back after a failed release. A heartbeat
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
import { Postgres, type Sql, type Store } from "@baton/store"
import { freshSchema } from "@baton/testkit/postgres"
import * as Cluster from "../src/Cluster.ts"

const partitions = 6
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
})

/** `store` whose statement starting `text` fails at the runs `fails` picks (as a connection cut then would). */
const failing = (store: Store, statement: string, fails: (n: number) => boolean): Store => {
  let n = 0
  return {
    ...store,
    query: (text) => {
      const q = store.query(text)
      if (!text.startsWith(statement)) return q
      const cut = <A>(run: () => Sql<A>): Sql<A> => Effect.suspend(() => (fails(++n) ? Effect.die(new Error("connection reset")) : run()))
      return { ...q, get: (...params) => cut(() => q.get(...params)), run: (...params) => cut(() => q.run(...params)) }
    }
  }
}
const failingClaim = (store: Store, failAt: number): Store => failing(store, "UPDATE cluster_partitions SET owner = ?, epoch = epoch + 1", (n) => n === failAt)

describe("a heartbeat whose statements fail (Cluster.ts) on PostgreSQL", () => {
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

  /**
   * A partition this instance let go of in memory (another joined) whose release failed stays its
   * in the store; the joiner dead, it is this instance's again without a claim. Its tenure must be
   * a new one all the same: messages of its keys scheduled before were skipped meanwhile (not
   * owned), and a later one of them, still queued, must not pass the done mark's fence ahead of
   * them (the tenure is the claim's epoch: got back under the same epoch, it would).
   */
  it("a partition got back after its release failed is under a new tenure", async () => {
    const schema = await freshSchema()
    cleanups.push(schema.drop)
    const store = await Postgres.open({ url: schema.url, poolSize: 2 })
    cleanups.push(() => store.close())
    const nothing = () => undefined
    const deadAfterMs = 400
    const cluster = await Cluster.make({
      store: failing(store, "UPDATE cluster_partitions SET owner = NULL", () => true),
      url: schema.url,
      instance: "m1",
      partitions,
      heartbeatMs: 30,
      deadAfterMs,
      address: { http: "-", mqtt: "-" },
      logger: Log.silent,
      acquired: nothing,
      released: nothing,
      pending: nothing,
      adopt: nothing
    })
    try {
      await cluster.start()
      const all = Array.from({ length: partitions }, (_, p) => p)
      const until = async (ok: () => boolean) => {
        const deadline = Date.now() + 5_000
        while (!ok() && Date.now() < deadline) await sleep(5)
      }
      await until(() => all.every((p) => cluster.owns(p)))
      const before = all.map((p) => cluster.tenure(p))
      // m2 joins (one heartbeat, then silent: dead after deadAfterMs); m1 lets go of m2's partitions, their releases failing.
      await store.run(store.query("INSERT INTO cluster_members (instance, pid, http, mqtt, started_at, heartbeat_ms) VALUES ('m2', 0, '-', '-', '-', (extract(epoch from clock_timestamp()) * 1000)::bigint)").run())
      const ofM2 = Cluster.assign(["m1", "m2"], partitions).flatMap((owner, part) => (owner === "m2" ? [part] : []))
      await until(() => !cluster.owns(ofM2[0]!))
      expect(cluster.owns(ofM2[0]!), "let go of").toBe(false)
      await until(() => all.every((p) => cluster.owns(p)))
      expect(cluster.owns(ofM2[0]!), "got back once m2 is dead").toBe(true)
      expect(cluster.tenure(ofM2[0]!), "a new tenure").not.toBe(before[ofM2[0]!])
    } finally {
      await cluster.abandon()
    }
  }, 30_000)
})
