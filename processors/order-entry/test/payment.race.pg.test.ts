/**
 * PostgreSQL: instances charging the same order at once. Payment's insert is not waited for (it
 * goes out with the commit); the one that loses the race (another inserted the order's payment
 * first) fails its transaction with a serialization failure (`order_entry_payment_recorded`,
 * migration 003), which the runtime runs again at once (a lost conflict) and which then announces
 * the payment recorded. Whichever card each instance was given (a restarted workflow's corrected
 * card), an order has one payment row and every instance announces its decision. Shipping's
 * insert, not waited for either, needs no such guard: its tracking id is the order's own, the
 * same whichever instance wins. Four instances start at once on a database at the previous
 * release: the migration is applied once.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Effect } from "effect"
import type { SqlClient } from "effect/sql"
import type { Envelope, Processor } from "@baton/core"
import { Envelope as E } from "@baton/core"
import { Postgres, type Store } from "@baton/store"
import { freshSchema } from "@baton/testkit/postgres"
import * as OrderEntry from "@baton/order-entry"

const migration = "order-entry/003-payment-recorded"
const good = "4242424242424242"

interface Instance {
  readonly store: Store
  readonly payment: Processor<unknown>
  readonly shipping: Processor<unknown>
  readonly name: string
}

let ids = 0
const charge = (orderId: string, card: string): Envelope.Envelope => {
  const id = `race-${++ids}`
  const data = { orderId, customerId: "c", email: "a@b.co", items: [{ sku: "BOOK-1", qty: 1, price: 2 }], total: 2, paymentToken: "t", cardLast4: card.slice(-4), card }
  return { id, type: "order-created", correlationId: orderId, causationId: id, key: orderId, occurredAt: new Date(0).toISOString(), data }
}

describe("payment on PostgreSQL, instances charging the same order at once", () => {
  let drop: () => Promise<void>
  let watcher: Store
  let instances: ReadonlyArray<Instance> = []
  /** Transactions that failed as a lost conflict, run again (as the runtime does: `Decision.classify`). */
  let lost = 0
  beforeAll(async () => {
    const schema = await freshSchema()
    drop = schema.drop
    // The database at the previous release.
    const previous = await Postgres.open({ url: schema.url, poolSize: 1 })
    await previous.migrate(OrderEntry.migrations.filter((m) => m.name !== migration))
    await previous.close()
    watcher = await Postgres.open({ url: schema.url, poolSize: 1, applicationName: "race-watcher" })
    // Four instances starting at once, each applying the migrations.
    instances = await Promise.all(
      [0, 1, 2, 3].map(async (i) => {
        const name = `race-${i}`
        const store = await Postgres.open({ url: schema.url, poolSize: 2, applicationName: name })
        const app = await OrderEntry.makeApp({ mailer: OrderEntry.Mailer.make() }).make({ ...store, env: {}, clock: E.systemClock })
        await store.migrate(OrderEntry.migrations)
        const processor = (name: string) => (app.processors as ReadonlyArray<Processor<unknown>>).find((p) => p.name === name)!
        return { store, name, payment: processor("payment"), shipping: processor("shipping") }
      })
    )
  })
  afterAll(async () => {
    for (const i of instances) await i.store.close()
    await watcher?.close()
    await drop?.()
  })

  /** Handles `event` (payment's by default) in a transaction, run again at once while it fails as a lost conflict. */
  const run = async (instance: Instance, event: Envelope.Envelope, hold?: Effect.Effect<void, unknown, SqlClient.SqlClient>, processor = instance.payment) => {
    for (let attempt = 1; ; attempt++) {
      const handled = processor.handle(event, undefined) as Effect.Effect<ReadonlyArray<unknown>, unknown, SqlClient.SqlClient>
      try {
        return await instance.store.transaction(hold === undefined || attempt > 1 ? handled : Effect.tap(handled, () => hold))
      } catch (error) {
        if (!Postgres.isConflict(error) || attempt === 5) throw error
        lost++
      }
    }
  }
  const payments = async (orderId: string) =>
    watcher.run(watcher.query('SELECT approved, "authorization", reason FROM payments WHERE order_id = ?').all(orderId))

  it("four instances starting at once on the previous release's database apply the migration once", async () => {
    expect(await watcher.run(watcher.query("SELECT COUNT(*) AS n FROM baton_migrations WHERE name = ?").get(migration))).toEqual({ n: 1 })
    const raised = await watcher.run(watcher.query("SELECT order_entry_payment_recorded() AS x").get()).catch((e: unknown) => e)
    expect(Postgres.isConflict(raised)).toBe(true)
  })

  it("the loser of a race held open (its insert waiting for the winner's commit) runs again and announces the winner's decision", async () => {
    const select = watcher.query("SELECT 1 AS one")
    for (const [w, l, winnerCard, loserCard] of [
      [0, 1, OrderEntry.Payment.declinedCard, good],
      [2, 3, good, OrderEntry.Payment.declinedCard]
    ] as const) {
      const winner = instances[w]!
      const loser = instances[l]!
      const orderId = `ORD-HELD-${w}`
      // The winner's insert made (the SELECT after it waited for), its transaction held open.
      let release!: () => void
      const held = new Promise<void>((resolve) => (release = resolve))
      const first = run(winner, charge(orderId, winnerCard), Effect.andThen(select.get(), Effect.promise(() => held)))
      for (let i = 0; i < 500 && !(await holding(winner.name)); i++) await new Promise((r) => setTimeout(r, 10))
      const lostBefore = lost
      // The loser saw no payment (the winner's not committed): its insert waits for the winner's.
      const second = run(loser, charge(orderId, loserCard))
      await waiting(loser.name)
      release()
      const [won, announced] = await Promise.all([first, second])
      expect(announced).toEqual(won)
      expect(lost).toBe(lostBefore + 1)
      expect((won[0] as { readonly type: string }).type).toBe(winnerCard === good ? "payment-applied" : "payment-denied")
      expect(await payments(orderId)).toHaveLength(1)
    }
  })

  it("for 60 orders each charged by the four instances at once, each with another card: one payment row, one decision announced by all", async () => {
    const lostBefore = lost
    for (let n = 0; n < 60; n++) {
      const orderId = `ORD-FREE-${n}`
      const announced = await Promise.all(instances.map((instance, i) => run(instance, charge(orderId, (n + i) % 2 === 0 ? good : OrderEntry.Payment.declinedCard))))
      for (const a of announced) expect(a).toEqual(announced[0])
      const rows = await payments(orderId)
      expect(rows).toHaveLength(1)
      expect(Number(rows[0]!.approved) === 1 ? "payment-applied" : "payment-denied").toBe((announced[0]![0] as { readonly type: string }).type)
    }
    // Real races: some instances lost one (measured: most orders).
    expect(lost).toBeGreaterThan(lostBefore)
  })

  it("for 30 orders each shipped by the four instances at once: one shipment row, one tracking id announced by all", async () => {
    for (let n = 0; n < 30; n++) {
      const orderId = `ORD-SHIP-${n}`
      const fulfilled: Envelope.Envelope = { ...charge(orderId, good), type: "order-fulfilled", data: { orderId, customerId: "c", email: "a@b.co", items: [{ sku: "BOOK-1", qty: 1, price: 2 }] } }
      const announced = await Promise.all(instances.map((instance) => run(instance, fulfilled, undefined, instance.shipping)))
      for (const a of announced) expect(a).toEqual(announced[0])
      const rows = await watcher.run(watcher.query("SELECT tracking_id FROM shipments WHERE order_id = ?").all(orderId))
      expect(rows.map((r) => r.tracking_id)).toEqual([(announced[0]![0] as { readonly data: { readonly trackingId: string } }).data.trackingId])
    }
  })

  /** Whether a connection of the instance holds a transaction open (idle in it) that has written (its transaction id taken). */
  const holding = async (name: string) =>
    (
      await watcher.run(
        watcher
          .query("SELECT 1 AS one FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE a.application_name = ? AND l.locktype = 'transactionid' AND l.granted AND a.state = 'idle in transaction'")
          .all(name)
      )
    ).length > 0
  /** Waits until a connection of the instance waits for a lock. */
  const waiting = async (name: string) => {
    for (let i = 0; i < 500; i++) {
      if ((await watcher.run(watcher.query("SELECT 1 AS one FROM pg_stat_activity WHERE application_name = ? AND wait_event_type = 'Lock'").all(name))).length > 0) return
      await new Promise((r) => setTimeout(r, 10))
    }
    throw new Error(`${name}: never waiting for a lock`)
  }
})
