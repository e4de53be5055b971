/**
 * The outbox's reads on PostgreSQL after many entries were sent: the relay's read (`pending`) and
 * `size` (every `/healthz`) must not go through the heap pages of the entries already sent and
 * deleted. Those pages stay until a VACUUM (this server runs with autovacuum off; on a server with
 * it on, until the next one): a read by sequential scan grew with every entry ever sent (order
 * flow: 70 buffer hits per order at 12,000 orders). Real server, the store's own statement texts
 * (from its breakdown), each run under EXPLAIN (ANALYZE, BUFFERS).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Effect } from "effect"
import { Outbox, Postgres, type Store } from "@baton/store"
import { freshSchema, query } from "@baton/testkit/postgres"

/** Entries sent and deleted before the reads: ~16 to a heap page (these payloads), ~125 pages. */
const sentBefore = 2_000
/** Buffers a read may touch: its index's pages of deleted entries (~200 to a page) and the live entry's; the heap scan touched every page (>= 125). */
const maxBuffers = 40

describe("Outbox reads after many sent entries (PostgreSQL)", () => {
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

  /** Shared buffers (hit or read) of the store's statement whose text matches `pattern`, run with `params` under EXPLAIN (ANALYZE, BUFFERS). */
  const buffersOf = async (pattern: RegExp, params: ReadonlyArray<unknown>): Promise<{ buffers: number; plan: string }> => {
    const text = store.breakdown().find((t) => pattern.test(t.text))?.text
    expect(text, `no statement matching ${pattern} in ${store.breakdown().map((t) => t.text).join("\n")}`).toBeDefined()
    let n = 0
    const numbered = text!.replace(/\?/g, () => `$${++n}`)
    const [row] = await query<{ "QUERY PLAN": ReadonlyArray<{ Plan: Record<string, unknown> }> }>(schema.url, `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${numbered}`, params)
    const plan = row!["QUERY PLAN"][0]!.Plan
    return { buffers: Number(plan["Shared Hit Blocks"]) + Number(plan["Shared Read Blocks"]), plan: JSON.stringify(plan) }
  }

  it(`after ${sentBefore} entries sent and deleted: the relay's read and size touch at most ${maxBuffers} buffers and still find the one unsent entry`, async () => {
    const outbox = await Outbox.make(store, { instance: "a" })
    const payload = JSON.stringify({ order: "x".repeat(360) })
    for (let i = 0; i < sentBefore; i += 100) await store.transaction(Effect.forEach(Array.from({ length: 100 }, (_, j) => j), () => outbox.add("events/e", payload)))
    // As the relay does: read a batch, delete what it read, until nothing is left.
    for (let batch = await outbox.pending(64); batch.length > 0; batch = await outbox.pending(64)) await outbox.sentRuns(Outbox.runs(batch.map((e) => e.seq)))
    expect(await outbox.size()).toBe(0)
    await store.transaction(outbox.add("events/last", payload))
    const unsent = await outbox.pending(64)
    expect(unsent.map((e) => e.topic)).toEqual(["events/last"])
    expect(await outbox.size()).toBe(1)
    // Twice: the first read after the deletes may visit the deleted entries once (and mark them dead in the index).
    for (let i = 0; i < 2; i++) {
      const read = await buffersOf(/FROM outbox WHERE instance = .* ORDER BY seq LIMIT/, ["a", 64])
      const size = await buffersOf(/SELECT COUNT\(\*\) AS n FROM outbox WHERE instance =/, ["a"])
      if (i === 1) {
        expect(read.buffers, read.plan).toBeLessThanOrEqual(maxBuffers)
        expect(size.buffers, size.plan).toBeLessThanOrEqual(maxBuffers)
      }
    }
  }, 60_000)
})
