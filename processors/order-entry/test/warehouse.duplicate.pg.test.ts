/**
 * PostgreSQL: the same order's stock update delivered twice at once (two envelopes of one order:
 * the inventory announces an order again when it is handled again), the second while the first's
 * transaction is still open, and a later order of the SKU in between. The second delivery waits
 * for the first and changes nothing (its `warehouse_seen` row): the level is the later order's,
 * never set back to the duplicate's (a guard kept from a measured and dropped change, 2026-12-02,
 * that sent the update without its `warehouse_seen` row first and failed it).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Effect } from "effect"
import type { Envelope, Processor } from "@baton/core"
import { Envelope as E } from "@baton/core"
import { Postgres, type Store } from "@baton/store"
import { freshSchema } from "@baton/testkit/postgres"
import * as OrderEntry from "@baton/order-entry"

let ids = 0
const update = (orderId: string, sku: string, remaining: number): Envelope.Envelope => {
  const id = `wh-dup-${++ids}`
  return {
    id,
    type: "inventory-updated",
    correlationId: orderId,
    causationId: id,
    key: orderId,
    occurredAt: new Date(0).toISOString(),
    data: { orderId, lines: [{ sku, qty: 1, taken: 1, backordered: 0, remaining }], shortfall: 0 }
  }
}

describe("warehouse on PostgreSQL, an order delivered twice at once", () => {
  let store: Store
  let drop: () => Promise<void>
  let watcher: Store
  let warehouse: Processor<unknown>
  beforeAll(async () => {
    const schema = await freshSchema()
    const url = schema.url
    store = await Postgres.open({ url, poolSize: 4, applicationName: "wh-dup" })
    drop = schema.drop
    const app = (await OrderEntry.makeApp({ mailer: OrderEntry.Mailer.make() }).make({ ...store, env: {}, clock: E.systemClock })) as unknown as { readonly processors: ReadonlyArray<Processor<unknown>> }
    await store.migrate(OrderEntry.migrations)
    warehouse = app.processors.find((p) => p.name === "warehouse")!
    watcher = await Postgres.open({ url, poolSize: 1, applicationName: "wh-dup-watcher" })
  })
  afterAll(async () => {
    await watcher?.close()
    await store?.close()
    await drop?.()
  })

  /** Waits until `n` of the store's connections wait for a lock. */
  const waiting = async (n: number) => {
    for (let i = 0; i < 500; i++) {
      const r = await watcher.run(watcher.query("SELECT COUNT(*) AS n FROM pg_stat_activity WHERE application_name = 'wh-dup' AND wait_event_type = 'Lock'").get())
      if (Number(r!.n) >= n) return
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    throw new Error(`${n} waiting for a lock: never`)
  }

  it("a duplicate of an order, waiting on its first delivery, does not set back the level a later order set meanwhile", async () => {
    const sku = "BOOK-4"
    const level = async () => Number((await store.run(store.query("SELECT level FROM warehouse_stock WHERE sku = ?").get(sku)))!.level)
    // The SKU's row read once in this process (its threshold, 100): its next updates at or above it answer nothing.
    await store.transaction(warehouse.handle(update("wh-dup-o0", sku, 200), undefined))
    expect(await level()).toBe(200)

    // The first delivery of order 1: its level written, its transaction held open.
    let release!: () => void
    const held = new Promise<void>((resolve) => (release = resolve))
    const select = store.query("SELECT 1 AS one")
    const first = store.transaction(Effect.andThen(warehouse.handle(update("wh-dup-o1", sku, 150), undefined), Effect.andThen(select.get(), Effect.promise(() => held))))
    for (let i = 0; i < 500 && (await watcher.run(watcher.query("SELECT 1 AS one FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'wh-dup' AND l.locktype = 'transactionid' AND l.granted AND a.state = 'idle in transaction'").all())).length === 0; i++)
      await new Promise((resolve) => setTimeout(resolve, 10))
    // A later order of the SKU: it waits for the first's row lock.
    const later = store.transaction(warehouse.handle(update("wh-dup-o2", sku, 140), undefined))
    await waiting(1)
    // Order 1 again (another envelope of it): it waits too.
    const again = store.transaction(warehouse.handle(update("wh-dup-o1", sku, 150), undefined))
    await waiting(2)
    release()
    await Promise.all([first, later, again])
    // Order 2 came after order 1: its level stands.
    expect(await level()).toBe(140)
  })
})
