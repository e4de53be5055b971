/**
 * `Outbox.sentRuns` on PostgreSQL, where a cluster's instances share the outbox's numbering: the
 * runs one relay batch published go in one statement, and for any interleaving of two instances'
 * entries it deletes exactly the listed entries of its own instance: none of the other instance's,
 * none of its own in a gap between two runs (an entry read later, or committed late).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import { Outbox, Postgres, type Store } from "@baton/store"
import { freshSchema } from "@baton/testkit/postgres"

const numRuns = Number(process.env.BATON_PROPERTY_RUNS ?? 50)

describe("Outbox.sentRuns (PostgreSQL)", () => {
  let schema: Awaited<ReturnType<typeof freshSchema>>
  let store: Store
  beforeAll(async () => {
    schema = await freshSchema()
    store = await Postgres.open({ url: schema.url, poolSize: 2 })
  })
  afterAll(async () => {
    await store.close()
    await schema.drop()
  })

  it("for any interleaving of two instances' entries and any published subset: deletes exactly the published entries of its instance, in one statement", async () => {
    const a = await Outbox.make(store, { instance: "a" })
    const b = await Outbox.make(store, { instance: "b" })
    await fc.assert(
      fc.asyncProperty(fc.array(fc.record({ mine: fc.boolean(), published: fc.boolean() }), { minLength: 1, maxLength: 40 }), async (entries) => {
        await store.run(store.query("DELETE FROM outbox").run())
        // The entries in numbering order, each instance's interleaved with the other's.
        const written: Array<{ readonly seq: number; readonly mine: boolean; readonly published: boolean }> = []
        for (const e of entries) {
          const added = await store.transaction((e.mine ? a : b).added("events/e", "{}", 1))
          written.push({ seq: added().seq, ...e })
        }
        const published = written.filter((e) => e.mine && e.published).map((e) => e.seq)
        const before = statements(store)
        await a.sentRuns(Outbox.runs(published))
        if (published.length > 0) expect(statements(store) - before).toBe(1)
        const left = (await store.run(store.query("SELECT seq FROM outbox ORDER BY seq").all())).map((r) => Number(r.seq))
        expect(left).toEqual(written.filter((e) => !(e.mine && e.published)).map((e) => e.seq))
      }),
      { numRuns }
    )
  })
})

/** The statements the store has run so far. */
const statements = (store: Store): number => store.statements()

