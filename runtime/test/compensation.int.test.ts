/**
 * The compensating step (docs/concepts.md, sections 1 and 2): a declined order's stock goes back, and
 * so does a failed order's whose workflow an operator discards. For any mix of approved, declined,
 * failing and unplaceable orders, in each topology, on each store: once everything has settled, the
 * stock taken is exactly the stock of the orders that shipped.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import type { MqttClient } from "mqtt"
import { freshSchema } from "@baton/testkit/postgres"
import { Contract } from "@baton/order-entry"
import type { Config } from "../src/Config.ts"
import { cards } from "./orders.ts"
import { collect, connect, propertyRuns, startRuntime, type Collector, type Harness } from "./support.ts"

const failingCard = "4000000000000119"

/** `failing`: the payment gateway fails every attempt; `unplaceable`: an unknown SKU, refused before any stock is taken. */
type Kind = "approved" | "declined" | "invalid" | "failing" | "unplaceable"

const order = fc.record({
  kind: fc.constantFrom<Kind>("approved", "declined", "invalid", "failing", "unplaceable"),
  items: fc.array(fc.record({ sku: fc.constantFrom("BOOK-1", "BOOK-2", "BOOK-3"), qty: fc.integer({ min: 1, max: 3 }) }), { minLength: 1, maxLength: 3 }),
  // Mediator topology: the card a failed workflow is restarted with, or `discard`: an operator gives up on it.
  replacement: fc.constantFrom<"approved" | "declined" | "discard">("approved", "declined", "discard")
})
type Order = typeof order extends fc.Arbitrary<infer T> ? T : never

const cardOf = (kind: Kind) => (kind === "failing" ? failingCard : kind === "unplaceable" ? cards.approved : cards[kind])

const payload = (o: Order, id: string) =>
  JSON.stringify({
    id,
    type: "place-order",
    data: {
      customerId: `comp-${id.slice(0, 8)}`,
      email: "comp@example.com",
      items: [...o.items.map((i) => ({ ...i, price: 2 })), ...(o.kind === "unplaceable" ? [{ sku: "NOPE-9", qty: 1, price: 1 }] : [])],
      payment: { card: cardOf(o.kind) }
    }
  })

const post = (port: number, path: string, body: string) => fetch(`http://127.0.0.1:${port}${path}`, { method: "POST", body, headers: { "content-type": "application/json" } })

const of = (all: ReadonlyArray<{ envelope: { correlationId: string; type: string; data: unknown } }>, id: string, type: string) =>
  all.filter((r) => r.envelope.correlationId === id && r.envelope.type === type)

const rejected = (events: Collector, id: string) =>
  events.received.some((r) => r.envelope.type === "message-rejected" && String((r.envelope.data as { payload?: string }).payload).includes(`comp-${id.slice(0, 8)}`))

/**
 * Broker topology: the chain's last event. A failing payment ends on the error path (after its
 * attempts), which commits the order's denial with it: what follows is left to `idle` and the
 * assertions, so that a missing release fails on the stock, not by a timeout.
 */
const brokerSettled = (events: Collector, o: Order, id: string) =>
  o.kind === "unplaceable" || o.kind === "failing" ? rejected(events, id) : of(events.received, id, o.kind === "approved" ? "order-shipped" : "inventory-released").length > 0

const discarded = (o: Order) => o.kind === "failing" && o.replacement === "discard"

/**
 * Mediator topology: the outcome; a failed workflow is restarted with the replacement card, or
 * discarded, once. A discarded order has settled once its stock is released (announced: the
 * release is sent fire-and-forget).
 */
const mediatorSettle = async (h: Harness, events: Collector, sent: ReadonlyArray<{ o: Order; id: string }>) => {
  const handled = new Set<string>()
  await events.until(
    (all) => {
      for (const { o, id } of sent)
        if (o.kind === "failing" && !handled.has(id) && of(all, id, "workflow-failed").length > 0) {
          handled.add(id)
          if (o.replacement === "discard") void post(h.runtime.httpPort, `/workflows/${id}/discard`, JSON.stringify({ reason: "the card is never fixed" }))
          else void post(h.runtime.httpPort, `/workflows/${id}/restart`, JSON.stringify({ payment: { card: cards[o.replacement] } }))
        }
      return sent.every(({ o, id }) =>
        o.kind === "unplaceable"
          ? of(all, id, "workflow-failed").length > 0
          : discarded(o)
            ? of(all, id, "workflow-discarded").length > 0 && of(all, id, "inventory-released").length > 0
            : of(all, id, "workflow-completed").length > 0
      )
    },
    30_000,
    "every workflow's outcome"
  )
}

const shipped = (o: Order, topology: string) => o.kind === "approved" || (topology === "mediator" && o.kind === "failing" && o.replacement === "approved")

const setups: ReadonlyArray<readonly [string, "broker" | "mediator", boolean]> = [
  ["broker topology, SQLite", "broker", false],
  ["mediator topology, SQLite", "mediator", false],
  ["broker topology, PostgreSQL", "broker", true],
  ["mediator topology, PostgreSQL", "mediator", true]
]

describe.each(setups)("compensation: %s", (_name, topology, postgres) => {
  const ctx = {} as { h: Harness; client: MqttClient; events: Collector; drop?: () => Promise<void> }
  beforeAll(async () => {
    const db = postgres ? await freshSchema() : undefined
    if (db !== undefined) ctx.drop = db.drop
    const overrides: Partial<Config> = { topology, maxAttempts: 2, ...(db?.url === undefined ? {} : { databaseUrl: db.url }) }
    // Failing payments crash their actor on every attempt: a higher restart limit than production's.
    ctx.h = await startRuntime(overrides, { policy: { maxRestarts: 1000 } })
    ctx.client = await connect(ctx.h.url)
    ctx.events = await collect(ctx.client, ["events/#", "errors/#"])
  })
  afterAll(async () => {
    await ctx.client?.endAsync()
    await ctx.h?.stop()
    await ctx.drop?.()
  })

  it("takes exactly the stock of the orders that shipped, and releases every other order's once", async () => {
    const store = ctx.h.runtime.store
    const read = async (sql: string, ...params: ReadonlyArray<unknown>) => store.run(store.query(sql).all(...params))
    const units = async () => new Map((await read("SELECT sku, on_hand - backordered AS units FROM stock")).map((r) => [String(r.sku), Number(r.units)]))
    await fc.assert(
      fc.asyncProperty(fc.array(order, { minLength: 1, maxLength: 8 }), async (orders) => {
        const before = await units()
        const sent = orders.map((o) => ({ o, id: crypto.randomUUID() }))
        await Promise.all(sent.map(({ o, id }) => ctx.client.publishAsync("initiate/place-order", payload(o, id), { qos: 1 })))
        if (topology === "broker") await ctx.events.until(() => sent.every(({ o, id }) => brokerSettled(ctx.events, o, id)), 30_000, "every order's last event")
        else await mediatorSettle(ctx.h, ctx.events, sent)
        await ctx.h.runtime.idle()

        const after = await units()
        for (const [sku, was] of before) {
          const ofShipped = sent.filter(({ o }) => shipped(o, topology)).flatMap(({ o }) => o.items).filter((i) => i.sku === sku).reduce((n, i) => n + i.qty, 0)
          expect(was - after.get(sku)!, `units of ${sku} taken: those of the shipped orders only`).toBe(ofShipped)
        }
        for (const { o, id } of sent) {
          const [placed] = await read("SELECT id FROM orders WHERE correlation_id = ?", id)
          if (o.kind === "unplaceable") {
            expect(placed, "an unplaceable order is not placed").toBeUndefined()
            continue
          }
          const orderId = String(placed!.id)
          const count = async (table: string) => (await read(`SELECT order_id FROM ${table} WHERE order_id = ?`, orderId)).length
          expect(await count("shipments"), `shipments of ${orderId} (${o.kind})`).toBe(shipped(o, topology) ? 1 : 0)
          expect(await count("stock_releases"), `releases of ${orderId} (${o.kind})`).toBe(shipped(o, topology) ? 0 : 1)
          expect(await count("stock_allocations"), `allocations of ${orderId}`).toBe(1)
          if (topology === "mediator" && discarded(o)) expect(of(ctx.events.received, id, "inventory-released"), `${orderId}'s release on discard`).toHaveLength(1)
        }
        expect((await read("SELECT envelope_id FROM inbox WHERE status = 'pending'")).length, "nothing left pending").toBe(0)
      }),
      { numRuns: propertyRuns }
    )
    // The seeded catalogue is the bound of what can ever be given back.
    for (const [sku, left] of await units()) expect(left, sku).toBeLessThanOrEqual(Contract.catalogue.find((c) => c.sku === sku)!.units)
  }, 240_000)

  if (topology === "mediator")
    it("gives a failed order's stock back once when its workflow is discarded over HTTP; an order never placed has nothing to give back", async () => {
      const { h, client, events } = ctx
      const store = h.runtime.store
      const read = async (sql: string, ...params: ReadonlyArray<unknown>) => store.run(store.query(sql).all(...params))
      const stock = async () => read("SELECT sku, on_hand, backordered FROM stock ORDER BY sku")
      const discard = (id: string, reason: string) => post(h.runtime.httpPort, `/workflows/${id}/discard`, JSON.stringify({ reason }))
      await h.runtime.idle()
      const before = await stock()

      const failing: Order = { kind: "failing", items: [{ sku: "BOOK-1", qty: 2 }, { sku: "BOOK-3", qty: 1 }], replacement: "discard" }
      const unplaceable: Order = { ...failing, kind: "unplaceable" }
      const [id, never] = [crypto.randomUUID(), crypto.randomUUID()]
      await client.publishAsync("initiate/place-order", payload(failing, id), { qos: 1 })
      await client.publishAsync("initiate/place-order", payload(unplaceable, never), { qos: 1 })
      await events.until((all) => of(all, id, "workflow-failed").length > 0 && of(all, never, "workflow-failed").length > 0, 30_000, "both workflows to fail")
      await h.runtime.idle()
      const [placed] = await read("SELECT id FROM orders WHERE correlation_id = ?", id)
      const orderId = String(placed!.id)
      const taken = await stock()
      expect(taken, "the failed order still holds its stock (it could be restarted)").not.toEqual(before)

      const answer = await discard(id, "the customer gave up")
      expect(answer.status).toBe(200)
      expect(await answer.json()).toMatchObject({ id, status: "discarded", discarded: { reason: "the customer gave up", compensations: ["release-inventory"] } })
      await events.until((all) => of(all, id, "inventory-released").length > 0, 15_000, "the discarded order's inventory-released")
      // Nothing after: a second discard and a restart are refused, and send nothing again.
      expect((await discard(id, "twice")).status).toBe(409)
      expect((await post(h.runtime.httpPort, `/workflows/${id}/restart`, "{}")).status).toBe(409)

      const none = await discard(never, "never placed")
      expect(none.status).toBe(200)
      expect(await none.json()).toMatchObject({ status: "discarded", discarded: { compensations: [] } })
      await events.until((all) => of(all, never, "workflow-discarded").length > 0, 15_000, "the unplaced order's workflow-discarded")
      await h.runtime.idle()

      expect(await stock(), "stock after == stock before").toEqual(before)
      const released = of(events.received, id, "inventory-released")
      expect(released, "one inventory-released").toHaveLength(1)
      expect(released[0]!.envelope.data).toMatchObject({ orderId, lines: [expect.objectContaining({ sku: "BOOK-1", qty: 2 }), expect.objectContaining({ sku: "BOOK-3", qty: 1 })] })
      expect((await read("SELECT order_id FROM stock_releases WHERE order_id = ?", orderId)).length, "one release recorded").toBe(1)
      expect(of(events.received, never, "inventory-released"), "nothing released for an order never placed").toHaveLength(0)
      expect((await read("SELECT envelope_id FROM inbox WHERE status = 'pending'")).length, "nothing left pending").toBe(0)
    }, 60_000)
})
