/**
 * `Consumer.chain` on PostgreSQL: nothing waits at a chain's end for the chained runs' writes
 * held back (PgPool's pipeline); one that fails surfaces later, at a statement of another item of
 * the root's group commit, at the item's RELEASE or at the COMMIT, and is mapped back to its
 * chain by its tag (`Pipelined.tag`, `chainFailed`). Several roots, each of its own processor (so
 * one group holds them all: run one after another, or side by side with `ownRows`), each chaining
 * into p1 on a key of its own, p1's chained run failing its write at random points (after its
 * run: surfacing later; before its run ends: inside the chain; the done-first check raising 40001).
 * The blame must map to the one chain: a root whose chain failed runs again, its event queued
 * (p1's effect in a transaction of its own); every other root's chain commits with it (p1's
 * effect in the root's transaction); each effect once. Real PostgreSQL, a fresh schema per round.
 */
import { afterAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import { Effect } from "effect"
import type { Processor } from "@baton/core"
import { alone, closeHarness, eventsOf, routedConsumers, settled, within } from "./chainPg.ts"

const partitions = 4
const roots = 4
const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
})

/**
 * What p1's chained runs of a root's event do (every one, until the root runs with p1 refusing): commits (`ok`); writes a row
 * that breaks a CHECK, held back, nothing after it in the run (`late`: it fails a later
 * statement, outside the chain) or a read after it (`early`: it fails in the chain); finds a
 * message of its key pending for p1 (`pending`: its done-first write raises 40001).
 */
type Mode = "ok" | "late" | "early" | "pending"
const modes: ReadonlyArray<Mode> = ["ok", "late", "early", "pending"]

const setUp = async (round: string, ownRows: boolean) => {
  const h = await alone(partitions, cleanups, "CREATE TABLE effects (n BIGSERIAL PRIMARY KEY, consumer TEXT NOT NULL, id TEXT NOT NULL, tx BIGINT NOT NULL, bad INT NOT NULL DEFAULT 0 CHECK (bad = 0))")
  const { store, inbox, router } = h
  const handled = new Map<string, number>()
  /** What p1's runs of a root's event in its root's transaction do (by the root's id). */
  const first = new Map<string, Mode>()
  const rootRuns = new Map<string, number>()
  const effect = (consumer: string, id: string) => store.query("INSERT INTO effects (consumer, id, tx) VALUES (?, ?, txid_current())").run(consumer, id)
  const processors: Array<Processor> = [
    ...Array.from(
      { length: roots },
      (_, r): Processor => ({
        name: `r${r}`,
        consumes: [],
        topics: [`events/in-r${r}`],
        ...(ownRows ? { ownRows: true } : {}),
        handle: (event) =>
          Effect.as(Effect.andThen(Effect.sync(() => void rootRuns.set(event.id, (rootRuns.get(event.id) ?? 0) + 1)), effect(`r${r}`, event.id)), [
            { type: "x", topic: "events/to-p1", key: (event.data as { to: string }).to, id: `${event.id}-to-p1`, data: { root: event.id } }
          ])
      })
    ),
    {
      name: "p1",
      consumes: [],
      topics: ["events/to-p1", "events/in-p1"],
      ...(ownRows ? { ownRows: true } : {}),
      handle: (event) =>
        Effect.gen(function* () {
          const root = (event.data as { root?: string }).root ?? event.id
          // Fails in every run in its root's transaction (chained): until the root runs with p1 refusing it.
          const chained = (yield* store.query("SELECT 1 AS x FROM effects WHERE id = ? AND tx = txid_current()").get(root)) !== undefined
          const mode = chained ? first.get(root) : undefined
          if (mode === "late" || mode === "early") yield* store.query("INSERT INTO effects (consumer, id, tx, bad) VALUES ('p1', ?, 0, 1)").run(root)
          if (mode === "early") yield* store.query("SELECT 1").get()
          yield* effect("p1", root)
          return []
        })
    }
  ]
  const consumers = routedConsumers(h, processors, round, handled, () => true)
  const close = () => closeHarness(h)
  const eventOf = eventsOf(round)
  // A message of a key pending for p1 from before (`pending`): recovered as after a restart.
  const idle = () => settled(h, consumers, () => consumers.get("p1")!.recover())
  return { store, inbox, handled, first, rootRuns, eventOf, router, idle, close }
}

describe.each([false, true])("Consumer.chain on PostgreSQL (processors say ownRows: %s): a chained write failing after its chain's end", (ownRows) => {
  it("for any roots in one group commit whose chained runs fail at any point (a held-back write failing a later statement, the COMMIT or a RELEASE; in the chain; 40001): only the failing chains' roots run again unchained, every other chain commits with its root, each effect once", async () => {
    let round = 0
    await fc.assert(
      fc.asyncProperty(fc.array(fc.constantFrom(...modes), { minLength: roots, maxLength: roots }), fc.integer({ min: 1, max: roots }), async (steps, size) => {
        round++
        const h = await setUp(`b${round}${ownRows ? "o" : ""}`, ownRows)
        try {
          const taken = steps.slice(0, size)
          const events = taken.map((mode, r) => {
            const key = `k${r}`
            const root = h.eventOf(`root${r}`, { to: key })
            h.first.set(root.id, mode)
            return { r, mode, root, key }
          })
          // A message of the key pending for p1, not in memory (arrived a moment ago): its chained row cannot be written first.
          for (const { mode, key } of events) {
            if (mode !== "pending") continue
            const before = h.eventOf(key)
            expect(await h.store.transaction(h.inbox.receive("p1", { envelopeId: before.id, topic: "events/in-p1", key, payload: JSON.stringify(before) }))).toBe(true)
          }
          // Every root received in one transaction and scheduled at once: one group commit takes them.
          const deliveries = await h.store.transaction(
            Effect.map(
              Effect.forEach(events, ({ r, root }) => h.router.route(`events/in-r${r}`, root, JSON.stringify(root))),
              (all) => all.flat()
            )
          )
          for (const d of deliveries) d()
          await within(h.idle(), 20_000, "the roots and their events")
          const rows = await h.store.run(h.store.query("SELECT consumer, id, tx FROM effects ORDER BY n").all())
          for (const { r, mode, root } of events) {
            const mine = rows.filter((row) => row.consumer === `r${r}` && row.id === root.id)
            const chained = rows.filter((row) => row.consumer === "p1" && row.id === root.id)
            expect(mine, `r${r}'s root applied once`).toHaveLength(1)
            expect(chained, `p1 applied r${r}'s event once`).toHaveLength(1)
            // Its chain committed with it (p1's effect in its transaction) exactly when it did not fail.
            expect(chained[0]!.tx === mine[0]!.tx, `r${r} (${mode}): p1's effect ${mode === "ok" ? "in" : "not in"} the root's transaction`).toBe(mode === "ok")
            if (mode !== "ok") expect(h.rootRuns.get(root.id), `r${r} (${mode}): the root ran again`).toBeGreaterThanOrEqual(2)
          }
          for (const [what, count] of h.handled) if (what.endsWith(" failed")) expect(count, what).toBe(0)
          const inbox = await h.store.run(h.store.query("SELECT status, COUNT(*) AS n FROM inbox GROUP BY status").all())
          expect(inbox.every((row) => row.status === "done"), JSON.stringify(inbox)).toBe(true)
        } finally {
          await h.close()
        }
      }),
      {
        numRuns: Number(process.env.BATON_PROPERTY_RUNS ?? 4) * 3,
        endOnFailure: true,
        examples: [
          [["late", "ok", "ok", "ok"], 4],
          [["ok", "late", "ok", "ok"], 4],
          [["ok", "ok", "ok", "late"], 4],
          [["late", "ok", "early", "pending"], 4],
          [["late", "ok", "ok", "ok"], 1]
        ]
      }
    )
  }, 300_000)
})
