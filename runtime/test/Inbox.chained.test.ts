/**
 * The inbox writes of a message run in its sender's transaction on PostgreSQL (Consumer's `chain`),
 * fenced as a queued message's done mark is (Cluster's `inboxGuard`): `receiveDone` and
 * `receiveDoneFirst` write nothing for a partition no longer this instance's, and lock the
 * partition's row until the commit, so that another instance's claim of it waits for the commit.
 * `receiveDoneFirst` fails its transaction as a lost conflict when the row cannot be written: a
 * message of its key pending for the processor, or the partition not this instance's.
 */
import { afterAll, describe, expect, it } from "vitest"
import { Effect } from "effect"
import { Inbox, Postgres, type Store } from "@baton/store"
import { freshSchema, query } from "@baton/testkit/postgres"
import * as Cluster from "../src/Cluster.ts"

const partitions = 2
const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
})

/** A key of each partition. */
const keyOf = (part: number): string => {
  for (let i = 0; ; i++) if (Inbox.partitionOf(`k${i}`, partitions) === part) return `k${i}`
}
const entry = (id: string, key: string) => ({ envelopeId: id, topic: "events/x", key, payload: "{}" })

const setUp = async (): Promise<{ readonly store: Store; readonly inbox: Inbox.Inbox; readonly url: string }> => {
  const schema = await freshSchema()
  cleanups.push(schema.drop)
  const store = await Postgres.open({ url: schema.url, poolSize: 4 })
  cleanups.push(() => store.close())
  await store.migrate(Cluster.migrations)
  // Partition 0 is this instance's ("me"), 1 another's.
  await store.transaction(store.query("INSERT INTO cluster_partitions (part, owner, epoch) VALUES (0, 'me', 1), (1, 'other', 1)").run())
  return { store, inbox: await Inbox.make(store, { partitions, guard: Cluster.inboxGuard("me") }), url: schema.url }
}
const rows = (store: Store) => store.run(store.query("SELECT envelope_id, status FROM inbox ORDER BY envelope_id").all())

describe("chained runs' inbox rows on PostgreSQL, under a cluster's guard", () => {
  it("receiveDone writes a row of this instance's partition, done, and nothing of another's", async () => {
    const { store, inbox } = await setUp()
    expect(await store.transaction(inbox.receiveDone("p", entry("a", keyOf(0))))).toBe(true)
    expect(await store.transaction(inbox.receiveDone("p", entry("b", keyOf(1))))).toBe(false)
    expect(await store.transaction(inbox.receiveDone("p", entry("a", keyOf(0))))).toBe(false)
    expect(await rows(store)).toEqual([{ envelope_id: "a", status: "done" }])
  })

  it("receiveDoneFirst: its transaction fails as a lost conflict for another's partition or behind a pending message of its key, and commits otherwise", async () => {
    const { store, inbox } = await setUp()
    const first = inbox.receiveDoneFirst!
    const then = store.query("SELECT 1")
    const attempt = (id: string, key: string) =>
      store.transaction(Effect.andThen(first("p", entry(id, key)), then.get())).then(
        () => "committed",
        (error: unknown) => (Postgres.isConflict(error) ? "conflict" : `failed: ${String(error)}`)
      )
    expect(await attempt("a", keyOf(1)), "another instance's partition").toBe("conflict")
    expect(await store.transaction(inbox.receive("p", entry("pending", keyOf(0))))).toBe(true)
    expect(await attempt("b", keyOf(0)), "behind a pending message of its key").toBe("conflict")
    expect(await store.transaction(inbox.receive("q", entry("other-processor", keyOf(0))))).toBe(true)
    await store.transaction(inbox.settle("p", "pending", "done"))
    expect(await attempt("c", keyOf(0)), "nothing of its key pending for the processor").toBe("committed")
    expect(await attempt("c", keyOf(0)), "there already").toBe("conflict")
    expect((await rows(store)).map((r) => `${r.envelope_id} ${r.status}`)).toEqual(["c done", "other-processor pending", "pending done"])
  })

  for (const how of ["receiveDone", "receiveDoneFirst"] as const)
    it(`${how} locks its partition's row until the commit: another instance's claim waits for it`, async () => {
      const { store, inbox, url } = await setUp()
      const write = how === "receiveDone" ? Effect.asVoid(inbox.receiveDone("p", entry("a", keyOf(0)))) : inbox.receiveDoneFirst!("p", entry("a", keyOf(0)))
      let claimed: string | undefined
      await store.transaction(
        Effect.gen(function* () {
          yield* write
          yield* store.query("SELECT 1").get()
          // A claim meanwhile, on a connection of its own: it waits for this transaction's lock.
          claimed = yield* Effect.promise(() =>
            query(url, "SET lock_timeout = '200ms'; UPDATE cluster_partitions SET owner = 'other' WHERE part = 0").then(
              () => "claimed",
              (error: unknown) => String((error as { code?: string }).code)
            )
          )
        })
      )
      expect(claimed, "the claim timed out waiting for the lock").toBe("55P03")
    })

  for (const doneFirst of ["runtime/015-inbox-done-first", "runtime/017-inbox-not-first"])
    it(`migration ${doneFirst} (receiveDoneFirst's function): on a fresh schema by several instances starting at once, and on a schema the previous version migrated (with messages pending), applied once and working`, async () => {
      // The previous version: without this migration and those after it.
      const previous = Inbox.migrations.slice(0, Inbox.migrations.findIndex((m) => m.name === doneFirst))
      expect(previous.length, `${doneFirst} is among the inbox's migrations`).toBeGreaterThan(0)
      const check = async (store: Store, inbox: Inbox.Inbox) => {
        const then = store.query("SELECT 1")
        const key = keyOf(0)
        const outcome = (id: string) =>
          store.transaction(Effect.andThen(inbox.receiveDoneFirst!("p", entry(id, key)), then.get())).then(
            () => "committed",
            (error: unknown) => (Postgres.isConflict(error) ? "conflict" : `failed: ${String(error)}`)
          )
        expect(await outcome(`first-${Math.random()}`), "behind the pending message of its key").toBe("conflict")
        await store.transaction(store.query("UPDATE inbox SET status = 'done' WHERE processor = 'p' AND status = 'pending'").run())
        expect(await outcome(`second-${Math.random()}`)).toBe("committed")
        expect(Number((await store.run(store.query("SELECT COUNT(*) AS n FROM baton_migrations WHERE name = ?").get(doneFirst)))?.n)).toBe(1)
      }
      const open = async (url: string) => {
        const store = await Postgres.open({ url, poolSize: 2 })
        cleanups.push(() => store.close())
        return store
      }
      // Fresh: three instances at once (each runs the cluster's and the inbox's migrations).
      const fresh = await freshSchema()
      cleanups.push(fresh.drop)
      const stores = await Promise.all([0, 1, 2].map(() => open(fresh.url)))
      const inboxes = await Promise.all(stores.map(async (store) => (await store.migrate(Cluster.migrations), Inbox.make(store, { partitions, guard: Cluster.inboxGuard("me") }))))
      await stores[0]!.transaction(stores[0]!.query("INSERT INTO cluster_partitions (part, owner, epoch) VALUES (0, 'me', 1), (1, 'other', 1)").run())
      expect(await stores[1]!.transaction(inboxes[1]!.receive("p", entry("pending-fresh", keyOf(0))))).toBe(true)
      await check(stores[2]!, inboxes[2]!)
      // Migrated by the previous version, a message pending; then two instances of this one at once.
      const old = await freshSchema()
      cleanups.push(old.drop)
      const before = await open(old.url)
      await before.migrate(Cluster.migrations)
      await before.migrate(previous)
      await before.transaction(before.query("INSERT INTO cluster_partitions (part, owner, epoch) VALUES (0, 'me', 1), (1, 'other', 1)").run())
      await before.transaction(before.query("INSERT INTO inbox (processor, envelope_id, topic, key, payload, status, received_at, part) VALUES ('p', 'pending-old', 'events/x', ?, '{}', 'pending', ?, 0)").run(keyOf(0), new Date().toISOString()))
      const upgraded = await Promise.all([0, 1].map(async () => {
        const store = await open(old.url)
        return { store, inbox: await Inbox.make(store, { partitions, guard: Cluster.inboxGuard("me") }) }
      }))
      await check(upgraded[0]!.store, upgraded[1]!.inbox)
    })
})
