/**
 * Review of `Consumer.chain` on PostgreSQL (no awaited statement at a chain's end, failures mapped
 * back to their chain by tag): failures that are not the chain's must not be taken as its own.
 *
 * 1. A root alone in its transaction (a group of one: no owner on the connection) whose own
 *    `settleFirst` (issued before `tagged`, so untagged and unblamed) fails, surfacing at the first
 *    awaited statement of its chained run: `ofChain` takes an untagged, unblamed statement failure
 *    for the chain's, so p1 refuses the root and the root re-runs unchained (RunElsewhere) instead
 *    of failing a plain attempt with its chain allowed again.
 * 2. A lost connection in a group run one item after another, surfacing with a chained write held
 *    back (the first statement of the batch that the server never ran): the connection error
 *    carries the chain's tag, so `chainFailed` makes it the chain's failure (p1 refuses the root;
 *    the root runs unchained) rather than an unavailable store, retried with its chain.
 */
import { afterAll, describe, expect, it } from "vitest"
import { Effect } from "effect"
import type { Envelope, Processor } from "@baton/core"
import type { Sql } from "@baton/store"
import { alone, closeHarness, eventsOf, routedConsumers, settled, within } from "./chainPg.ts"

const partitions = 4
const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
})

const setUp = async (round: string, r1: (event: Envelope.Envelope) => Sql<unknown, unknown>, p1Extra: Sql<unknown, unknown>) => {
  const h = await alone(partitions, cleanups, "CREATE TABLE effects (n BIGSERIAL PRIMARY KEY, consumer TEXT NOT NULL, id TEXT NOT NULL, tx BIGINT NOT NULL)")
  const { store, router } = h
  const handled = new Map<string, number>()
  /** p1's runs of a root's event inside the root's transaction (chained). */
  const chainedRuns = new Map<string, number>()
  /** p1's runs of a root's event (its first statement may fail): in the root's transaction while the root never commits (test 1). */
  const chainAttempts = new Map<string, number>()
  const effect = (consumer: string, id: string) => store.query("INSERT INTO effects (consumer, id, tx) VALUES (?, ?, txid_current())").run(consumer, id)
  const processors: Array<Processor> = [
    {
      name: "r0",
      consumes: [],
      topics: ["events/in-r0"],
      handle: (event) => Effect.as(effect("r0", event.id), [{ type: "x", topic: "events/to-p1", key: "k1", id: `${event.id}-to-p1`, data: { root: event.id } }])
    },
    {
      name: "r1",
      consumes: [],
      topics: ["events/in-r1"],
      handle: (event) => Effect.as(Effect.andThen(r1(event), effect("r1", event.id)), [])
    },
    {
      name: "p1",
      consumes: [],
      topics: ["events/to-p1"],
      handle: (event) =>
        Effect.gen(function* () {
          const root = (event.data as { root: string }).root
          chainAttempts.set(root, (chainAttempts.get(root) ?? 0) + 1)
          // An awaited statement first: what is held back before it goes out with it.
          const chained = (yield* store.query("SELECT 1 AS x FROM effects WHERE id = ? AND tx = txid_current()").get(root)) !== undefined
          if (chained) chainedRuns.set(root, (chainedRuns.get(root) ?? 0) + 1)
          if (chained) yield* p1Extra
          yield* effect("p1", root)
          return []
        })
    }
  ]
  const consumers = routedConsumers(h, processors, round, handled, () => true)
  const close = () => closeHarness(h)
  const eventOf = eventsOf(round)
  const idle = () => settled(h, consumers)
  const deliver = async (roots: ReadonlyArray<readonly [string, Envelope.Envelope]>) => {
    const deliveries = await store.transaction(Effect.map(Effect.forEach(roots, ([topic, e]) => router.route(topic, e, JSON.stringify(e))), (all) => all.flat()))
    for (const d of deliveries) d()
  }
  return { h, store, handled, chainedRuns, chainAttempts, eventOf, idle, deliver, close }
}

describe("Consumer.chain on PostgreSQL: failures that are not the chain's", () => {
  it("a lone root whose own settle fails (surfacing in its chained run) fails its own attempts, its chain not refused (p1 chains it on every attempt)", async () => {
    const t = await setUp("lone", () => Effect.void, Effect.void)
    try {
      // r0's own inbox row cannot be settled done (its own failure, every attempt).
      await t.store.transaction(
        t.store.query("CREATE FUNCTION refuse_r0() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'r0 cannot be settled'; END $$ LANGUAGE plpgsql").run()
      )
      await t.store.transaction(t.store.query("CREATE TRIGGER refuse_r0 BEFORE UPDATE ON inbox FOR EACH ROW WHEN (OLD.processor = 'r0' AND NEW.status = 'done') EXECUTE FUNCTION refuse_r0()").run())
      const root = t.eventOf("a")
      await t.deliver([["events/in-r0", root]])
      await within(t.idle(), 20_000, "the root")
      const status = await t.store.run(t.store.query("SELECT status FROM inbox WHERE processor = 'r0' AND envelope_id = ?").get(root.id))
      expect(status?.status).toBe("failed")
      // Its attempts (3) each chained p1 (the failure is r0's own, not p1's): p1 does not refuse it after the first.
      expect(t.chainAttempts.get(root.id) ?? 0, "p1's runs of r0's event in r0's transaction").toBeGreaterThanOrEqual(2)
    } finally {
      await t.close()
    }
  }, 60_000)

  it("a connection lost in a group run one after another, with a chain's write held back, is not that chain's failure (the root runs again chained)", async () => {
    let pid: number | undefined
    let killed = false
    let store!: Awaited<ReturnType<typeof setUp>>["store"]
    const t = await setUp(
      "cut",
      // r1 (the next item of the group): the connection cut under it, once.
      () =>
        Effect.suspend((): Sql<unknown, unknown> => {
          if (killed || pid === undefined) return Effect.void
          killed = true
          const victim = pid
          return Effect.andThen(
            Effect.promise(() => store.run(store.query("SELECT pg_terminate_backend(CAST(? AS INT)) AS ok").get(victim))),
            Effect.andThen(Effect.promise(() => new Promise((r) => setTimeout(r, 50))), store.query("SELECT 1 AS one").get())
          )
        }),
      // p1 (chained from r0): notes its connection's backend, then its write is held back.
      Effect.suspend((): Sql<unknown, unknown> => (killed ? Effect.void : Effect.map(store.query("SELECT pg_backend_pid() AS pid").get(), (row) => void (pid = Number(row?.pid)))))
    )
    store = t.store
    try {
      const r0 = t.eventOf("a")
      const r1 = t.eventOf("b")
      // Both roots received in one transaction, scheduled at once: one group (r0's lane first).
      await t.deliver([
        ["events/in-r0", r0],
        ["events/in-r1", r1]
      ])
      await within(t.idle(), 20_000, "the roots")
      expect(killed, "the connection was cut in the group's transaction").toBe(true)
      const rows = await t.store.run(t.store.query("SELECT consumer, id, tx FROM effects ORDER BY n").all())
      const mine = rows.filter((r) => r.consumer === "r0")
      const chained = rows.filter((r) => r.consumer === "p1")
      expect(mine).toHaveLength(1)
      expect(chained).toHaveLength(1)
      // Not the chain's failure: r0 retried with its chain, p1's effect in r0's transaction.
      expect(chained[0]!.tx, "p1's effect in r0's transaction (chained again after the lost connection)").toBe(mine[0]!.tx)
    } finally {
      await t.close()
    }
  }, 60_000)
})
