/**
 * The inbox's guard fenced on the claim's epoch (Cluster.ts `inboxGuard`, `tenure`) on PostgreSQL:
 * a message scheduled while this instance ("me") held its partition under one claim marks done
 * only while that claim stands. Whatever claims and releases follow (another instance's, its own
 * again), the done mark given the message's tenure commits exactly when the partition is this
 * instance's under the same epoch; without a tenure, when it is this instance's at all (as
 * before). Owner-only fencing passes a partition lost and claimed back, so a run begun before the
 * cycle committed ahead of its key's older messages (cluster.handover-order.int.test.ts).
 * `BATON_PROPERTY_RUNS` sets the number of runs.
 */
import { afterAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import { Effect } from "effect"
import { Inbox, Postgres } from "@baton/store"
import { freshSchema } from "@baton/testkit/postgres"
import * as Cluster from "../src/Cluster.ts"

const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
})

/** What happens to the partition after the message was scheduled: a claim (epoch + 1) by either instance, or a release. */
const step = fc.constantFrom("me", "other", "release")

describe("the inbox's guard fenced on the claim's epoch (Cluster.ts) on PostgreSQL", () => {
  it("for all claims and releases after a message was scheduled: its done mark commits exactly when the partition is still this instance's under the claim it was scheduled in", async () => {
    const schema = await freshSchema()
    cleanups.push(schema.drop)
    const store = await Postgres.open({ url: schema.url, poolSize: 2 })
    cleanups.push(() => store.close())
    await store.migrate(Cluster.migrations)
    await store.transaction(store.query("INSERT INTO cluster_partitions (part, owner, epoch) VALUES (0, NULL, 0)").run())
    const inbox = await Inbox.make(store, { partitions: 1, guard: Cluster.inboxGuard("me") })
    const claim = store.query("UPDATE cluster_partitions SET owner = ?, epoch = epoch + 1 WHERE part = 0 RETURNING epoch")
    const release = store.query("UPDATE cluster_partitions SET owner = NULL WHERE part = 0")
    const row = store.query("SELECT owner, epoch FROM cluster_partitions WHERE part = 0")
    const then = store.query("SELECT 1")
    let n = 0
    await fc.assert(
      fc.asyncProperty(fc.array(step, { maxLength: 4 }), fc.constantFrom("settle", "settleFirst"), fc.boolean(), async (steps, how, fenced) => {
        const id = `m${++n}`
        await store.transaction(inbox.receive("p", { envelopeId: id, topic: "events/x", key: "k", payload: "{}" }))
        // Scheduled under this instance's claim: its tenure is that claim's epoch.
        const tenure = Number((await store.transaction(claim.get("me")))!.epoch)
        for (const s of steps) await store.transaction(s === "release" ? release.run() : claim.run(s))
        const now = (await store.run(row.get()))!
        const fence = fenced ? tenure : undefined
        const committed =
          how === "settle"
            ? await store.transaction(inbox.settle("p", id, "done", undefined, fence))
            : await store.transaction(Effect.andThen(inbox.settleFirst("p", id, "done", undefined, fence), then.get())).then(
                () => true,
                (error: unknown) => (Inbox.isNotPending(error) ? false : Promise.reject(error))
              )
        const ours = now.owner === "me" && (!fenced || Number(now.epoch) === tenure)
        expect(committed, `after ${steps.join(", ") || "nothing"} (${how}, ${fenced ? "fenced on the epoch" : "no tenure"})`).toBe(ours)
      }),
      { numRuns: Number(process.env.BATON_PROPERTY_RUNS ?? 100) }
    )
  }, 120_000)
})
