/**
 * Review probe (pgstmt): Payment and Shipping (`ownRows`) through the real Consumer on PostgreSQL,
 * several of their messages in one group commit. One order's payment is being recorded meanwhile
 * by another transaction (another instance): that item's held-back insert waits at the group's
 * COMMIT, then raises 40001 (`order_entry_payment_recorded`). The group must run again without
 * it, that message again at once (a lost conflict, never the error path), announcing the decision
 * recorded; every other message once.
 */
import { afterAll, describe, expect, it } from "vitest"
import { Effect } from "effect"
import type { Envelope, Processor } from "@baton/core"
import { Postgres } from "@baton/store"
import * as OrderEntry from "@baton/order-entry"
import * as Apps from "../src/Apps.ts"
import { alone, closeHarness, routedConsumers, settled, within } from "./chainPg.ts"

const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
})

const good = "4242424242424242"
let n = 0
const charge = (orderId: string, card: string): Envelope.Envelope => {
  const id = `g-${++n}`
  const data = { orderId, customerId: "c", email: "a@b.co", items: [{ sku: "BOOK-1", qty: 1, price: 2 }], total: 2, paymentToken: "t", cardLast4: card.slice(-4), card }
  return { id, type: "order-created", correlationId: orderId, causationId: id, key: orderId, occurredAt: new Date().toISOString(), data }
}
const fulfilled = (orderId: string): Envelope.Envelope => {
  const id = `g-${++n}`
  return { id, type: "order-fulfilled", correlationId: orderId, causationId: id, key: orderId, occurredAt: new Date().toISOString(), data: { orderId, customerId: "c", email: "a@b.co", items: [{ sku: "BOOK-1", qty: 1, price: 2 }] } }
}

type H = Awaited<ReturnType<typeof alone>>
/** Whether a connection of the database meets `condition` (on pg_stat_activity), polled up to 5 s. */
const until = async (h: H, condition: string): Promise<boolean> => {
  for (let i = 0; i < 500; i++) {
    if ((await h.store.run(h.store.query(`SELECT 1 AS one FROM pg_stat_activity WHERE datname = current_database() AND ${condition}`).all())).length > 0) return true
    await new Promise((r) => setTimeout(r, 10))
  }
  return false
}
/**
 * Another instance recording order X's payment (declined), its transaction held open; `race` runs
 * while it is, then waits until an insert of X waits for it, and lets it commit: whether one did.
 */
const racingX = async (h: H, race: () => Promise<void>): Promise<boolean> => {
  let release!: () => void
  const released = new Promise<void>((r) => (release = r))
  const other = h.store.transaction(
    Effect.gen(function* () {
      yield* h.store.query(`INSERT INTO payments (order_id, approved, amount, "authorization", reason, at) VALUES ('X', 0, 2, NULL, 'card declined by issuer', 'now')`).run()
      // (A blind write is held back until the next statement on PostgreSQL: sent with this one.)
      yield* h.store.query("SELECT 1 AS one").get()
      yield* Effect.promise(() => released)
    })
  )
  try {
    await until(h, "state = 'idle in transaction'")
    await race()
    return await until(h, "wait_event_type = 'Lock'")
  } finally {
    release()
    await other
  }
}

describe("payment and shipping in one group commit on PostgreSQL, one payment losing its race at the COMMIT", () => {
  it("the loser runs again and announces the recorded decision; every other message once; nothing rejected", async () => {
    const h = await alone(4, cleanups, "CREATE TABLE effects (n INT)")
    try {
      await h.store.migrate(OrderEntry.migrations)
      const ctx = Apps.context(h.store)
      const mailer = OrderEntry.Mailer.make()
      const payment: Processor = { ...OrderEntry.Payment.make({ ...ctx, mailer }), topics: ["events/charge"] }
      const shipping: Processor = { ...OrderEntry.Shipping.make({ ...ctx, mailer }), topics: ["events/ship"] }
      const handled = new Map<string, number>()
      const consumers = routedConsumers(h, [payment, shipping], "g", handled, () => true, { actors: 4 })
      const events: Array<readonly [string, Envelope.Envelope]> = [
        ["events/charge", charge("A", good)],
        ["events/charge", charge("X", good)],
        ["events/ship", fulfilled("S1")],
        ["events/charge", charge("B", good)],
        ["events/ship", fulfilled("S2")],
        ["events/charge", charge("C", OrderEntry.Payment.declinedCard)]
      ]
      // X's insert waits for the other's (at the group's COMMIT): then the other commits.
      const waited = await racingX(h, async () => {
        const deliveries = await h.store.transaction(Effect.map(Effect.forEach(events, ([topic, e]) => h.router.route(topic, e, JSON.stringify(e))), (all) => all.flat()))
        for (const d of deliveries) d()
      })
      expect(waited, "X's insert waited for the other's").toBe(true)
      await within(settled(h, consumers), 20_000, "the messages")
      const out = await h.store.run(h.store.query("SELECT payload FROM outbox ORDER BY seq").all())
      const announced = out.map((r) => JSON.parse(String(r.payload)) as { type: string; data: { orderId: string; reason?: string } })
      const byOrder = (id: string) => announced.filter((e) => e.data.orderId === id).map((e) => e.type)
      expect(byOrder("A")).toEqual(["payment-applied"])
      expect(byOrder("B")).toEqual(["payment-applied"])
      expect(byOrder("C")).toEqual(["payment-denied"])
      expect(byOrder("S1")).toEqual(["order-shipped"])
      expect(byOrder("S2")).toEqual(["order-shipped"])
      // X: the other's decision (declined), not its own card's.
      expect(byOrder("X")).toEqual(["payment-denied"])
      expect(announced.find((e) => e.data.orderId === "X")!.data.reason).toBe("card declined by issuer")
      const rows = await h.store.run(h.store.query("SELECT order_id, COUNT(*) AS n FROM payments GROUP BY order_id ORDER BY order_id").all())
      expect(rows.map((r) => [r.order_id, Number(r.n)])).toEqual([["A", 1], ["B", 1], ["C", 1], ["X", 1]])
      const ships = await h.store.run(h.store.query("SELECT COUNT(*) AS n FROM shipments").get())
      expect(Number(ships!.n)).toBe(2)
      for (const [what, count] of handled) if (!what.endsWith(" done")) expect(count, what).toBe(0)
      const rejected = await h.store.run(h.store.query("SELECT COUNT(*) AS n FROM inbox WHERE status <> 'done'").get())
      expect(Number(rejected!.n)).toBe(0)
      // The group ran again without X (its other items in savepoints), X once more on its own.
      expect(h.store.breakdown().find((b) => b.text === "SAVEPOINT baton_item")?.count ?? 0).toBeGreaterThan(0)
    } finally {
      await closeHarness(h)
    }
  }, 60_000)

  it("payment chained into its root's transaction (one instance), losing its race at the root's COMMIT: the root runs again once, payment queued announces the recorded decision", async () => {
    const h = await alone(4, cleanups, "CREATE TABLE effects (n BIGSERIAL PRIMARY KEY, id TEXT NOT NULL)")
    try {
      await h.store.migrate(OrderEntry.migrations)
      const ctx = Apps.context(h.store)
      const mailer = OrderEntry.Mailer.make()
      const payment: Processor = { ...OrderEntry.Payment.make({ ...ctx, mailer }), topics: ["events/charge"] }
      let rootRuns = 0
      const chained: Array<string> = []
      const root: Processor = {
        name: "root",
        consumes: [],
        topics: ["events/in-root"],
        handle: (event) =>
          Effect.as(
            Effect.andThen(Effect.sync(() => void rootRuns++), h.store.query("INSERT INTO effects (id) VALUES (?)").run(event.id)),
            [{ type: "order-created", topic: "events/charge", key: "X", id: `${event.id}-charge`, data: charge("X", good).data }]
          )
      }
      const handled = new Map<string, number>()
      const consumers = routedConsumers(h, [root, payment], "c", handled, () => true, { onChained: (e) => void chained.push(e.id) })
      const event = charge("R", good)
      const waited = await racingX(h, async () => {
        const deliveries = await h.store.transaction(h.router.route("events/in-root", event, JSON.stringify(event)))
        for (const d of deliveries) d()
      })
      expect(waited, "the chained insert waited for the other's").toBe(true)
      await within(settled(h, consumers), 20_000, "the messages")
      expect(chained.length, "payment ran chained in the root's transaction").toBeGreaterThan(0)
      expect(rootRuns, "the root ran again after its chain failed").toBe(2)
      expect(await h.store.run(h.store.query("SELECT COUNT(*) AS n FROM effects").get())).toEqual({ n: 1 })
      const out = await h.store.run(h.store.query("SELECT payload FROM outbox ORDER BY seq").all())
      const announced = out.map((r) => JSON.parse(String(r.payload)) as { type: string; data: { orderId: string; reason?: string } }).filter((e) => e.type.startsWith("payment"))
      expect(announced.map((e) => [e.type, e.data.reason])).toEqual([["payment-denied", "card declined by issuer"]])
      expect(await h.store.run(h.store.query("SELECT COUNT(*) AS n FROM payments").get())).toEqual({ n: 1 })
      for (const [what, count] of handled) if (!what.endsWith(" done")) expect(count, what).toBe(0)
      expect(await h.store.run(h.store.query("SELECT COUNT(*) AS n FROM inbox WHERE status <> 'done'").get())).toEqual({ n: 0 })
    } finally {
      await closeHarness(h)
    }
  }, 60_000)

  it("40 orders charged through group commits while another instance charges each at once with the other card: one row each, the consumer announces it, nothing rejected", async () => {
    const h = await alone(4, cleanups, "CREATE TABLE effects (n INT)")
    try {
      await h.store.migrate(OrderEntry.migrations)
      const ctx = Apps.context(h.store)
      const mailer = OrderEntry.Mailer.make()
      const made = OrderEntry.Payment.make({ ...ctx, mailer })
      const payment: Processor = { ...made, topics: ["events/charge"] }
      const handled = new Map<string, number>()
      const consumers = routedConsumers(h, [payment], "f", handled, () => true, { actors: 4 })
      const racer = async (event: Envelope.Envelope) => {
        for (let attempt = 1; ; attempt++) {
          try {
            return await h.store.transaction(made.handle(event, undefined) as Effect.Effect<ReadonlyArray<unknown>, unknown, never>)
          } catch (error) {
            if (!Postgres.isConflict(error) || attempt === 5) throw error
          }
        }
      }
      for (let round = 0; round < 3; round++) {
        const ids = Array.from({ length: 40 }, (_, i) => `F${round}-${i}`)
        const cardOf = (i: number, racing: boolean) => ((i % 2 === 0) === racing ? good : OrderEntry.Payment.declinedCard)
        const events = ids.map((id, i) => ["events/charge", charge(id, cardOf(i, false))] as const)
        const deliveries = await h.store.transaction(Effect.map(Effect.forEach(events, ([topic, e]) => h.router.route(topic, e, JSON.stringify(e))), (all) => all.flat()))
        for (const d of deliveries) d()
        // The other instance's charges spread over the consumer's groups.
        const raced = Promise.all(ids.map((id, i) => new Promise((r) => setTimeout(r, (i * 7) % (round * 10 + 5))).then(() => racer(charge(id, cardOf(i, true))))))
        await raced
        await within(settled(h, consumers), 20_000, "the messages")
        const out = await h.store.run(h.store.query("SELECT payload FROM outbox ORDER BY seq").all())
        const announced = new Map<string, Array<string>>()
        for (const r of out) {
          const e = JSON.parse(String(r.payload)) as { type: string; data: { orderId: string } }
          announced.set(e.data.orderId, [...(announced.get(e.data.orderId) ?? []), e.type])
        }
        for (const id of ids) {
          const rows = await h.store.run(h.store.query("SELECT approved FROM payments WHERE order_id = ?").all(id))
          expect(rows, id).toHaveLength(1)
          expect(announced.get(id), id).toEqual([Number(rows[0]!.approved) === 1 ? "payment-applied" : "payment-denied"])
        }
      }
      for (const [what, count] of handled) if (!what.endsWith(" done")) expect(count, what).toBe(0)
      expect(handled.get("payment done")).toBe(120)
      expect(await h.store.run(h.store.query("SELECT COUNT(*) AS n FROM inbox WHERE status <> 'done'").get())).toEqual({ n: 0 })
    } finally {
      await closeHarness(h)
    }
  }, 60_000)
})
