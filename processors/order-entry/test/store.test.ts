import { afterEach, describe, expect, it } from "vitest"
import { Effect } from "effect"
import type { Envelope, Processor } from "@baton/core"
import { Envelope as E } from "@baton/core"
import type { Store } from "@baton/store"
import * as OrderEntry from "@baton/order-entry"
import type { Mailer } from "@baton/order-entry"
import { engines, type Opened } from "./stores.ts"

/** Runs processors the way the runtime does: `prepare` outside, `handle` in one transaction. */
const run = async <P>(store: Store, p: Processor<P>, event: Envelope.Envelope) => {
  const prepared = p.prepare === undefined ? (undefined as P) : await Effect.runPromise(p.prepare(event))
  return store.transaction(p.handle(event, prepared))
}

const envelope = (type: string, data: unknown, id = crypto.randomUUID()): Envelope.Envelope => ({
  id,
  type,
  correlationId: id,
  causationId: id,
  key: "k",
  occurredAt: new Date().toISOString(),
  data
})

/** The app module over a store, as the runtime starts it (the environment empty: no SMTP). */
const start = (store: Store, mailer: Mailer.Mailer) =>
  OrderEntry.makeApp({ mailer }).make({ ...store, env: {}, clock: E.systemClock })

const mailer = (transport: Mailer.Mailer["transport"] = "store"): Mailer.Mailer & { readonly sent: Array<Mailer.Mail> } => {
  const sent: Array<Mailer.Mail> = []
  return { transport, sent, send: async (mail) => (sent.push(mail), { messageId: `m${sent.length}`, message: undefined }) }
}

export const flow = (open: () => Promise<Opened>) => {
  let close: (() => Promise<void>) | undefined
  afterEach(async () => {
    await close?.()
    close = undefined
  })

  it("places, charges, allocates, re-orders, fulfils, ships and e-mails once per event", async () => {
    const opened = await open()
    close = opened.close
    const { store } = opened
    const m = mailer()
    const app = await start(store, m)
    await store.migrate(OrderEntry.migrations)
    const p = Object.fromEntries(app.processors.map((x) => [x.name, x])) as Record<string, Processor<unknown>>

    const place = envelope("place-order", { customerId: "c1", email: "a@b.co", items: [{ sku: "BOOK-2", qty: 950, price: 10 }, { sku: "BOOK-1", qty: 2, price: 12.5 }], payment: { card: "4242424242424242" } })
    const [created] = await run(store, p["order-placement"]!, place)
    expect(created!.type).toBe("order-created")
    const order = created!.data as OrderEntry.Contract.OrderCreated
    expect(order.orderId).toMatch(/^ORD-\d{6}$/)
    expect(order.total).toBe(9525)
    expect((await run(store, p["order-placement"]!, place))[0]!.data).toEqual(order)
    await expect(run(store, p["order-placement"]!, envelope("place-order", { customerId: "c1", email: "a@b.co", items: [{ sku: "NOPE", qty: 1, price: 1 }], payment: { card: "4242424242424242" } }))).rejects.toThrow("unknown SKU NOPE")

    const oc = envelope("order-created", order)
    const paid = await run(store, p["payment"]!, oc)
    expect(paid[0]!.type).toBe("payment-applied")
    expect(await run(store, p["payment"]!, oc)).toEqual(paid)
    await expect(run(store, p["payment"]!, envelope("order-created", { ...order, orderId: "ORD-X", card: OrderEntry.Payment.failingCard }))).rejects.toBeInstanceOf(OrderEntry.Payment.GatewayError)
    // A charge that failed for good denies the order (broker topology), without the error's card number.
    expect(p["payment"]!.failed!(envelope("order-created", { ...order, orderId: "ORD-X" }), `payment failed after 3 attempt(s): test card ${OrderEntry.Payment.failingCard}`)).toEqual([
      { type: "payment-denied", data: { orderId: "ORD-X", customerId: "c1", email: "a@b.co", amount: 9525, reason: "the payment could not be processed" } }
    ])
    const denied = await run(store, p["payment"]!, envelope("order-created", { ...order, orderId: "ORD-Y", card: OrderEntry.Payment.declinedCard }))
    expect(denied[0]).toMatchObject({ type: "payment-denied", data: { reason: "card declined by issuer" } })

    const inv = await run(store, p["inventory"]!, oc)
    const updated = inv[0]!.data as OrderEntry.Contract.InventoryUpdated
    expect(updated.lines.map((l) => [l.sku, l.remaining])).toEqual([["BOOK-2", 50], ["BOOK-1", 998]])
    expect(await run(store, p["inventory"]!, oc)).toEqual(inv)
    expect(Number((await store.run(store.query("SELECT on_hand FROM stock WHERE sku = ?").get("BOOK-2")))!.on_hand)).toBe(50)

    const iu = envelope("inventory-updated", updated)
    const reordered = await run(store, p["warehouse"]!, iu)
    expect(reordered).toEqual([{ type: "stock-reordered", key: "BOOK-2", data: { sku: "BOOK-2", qty: 500, level: 50, threshold: 100, orderId: order.orderId } }])
    expect(await run(store, p["warehouse"]!, iu)).toEqual([])
    expect(await run(store, p["warehouse"]!, envelope("inventory-updated", { ...updated, orderId: "ORD-Z" }))).toEqual([])

    const fulfilled = await run(store, p["order-fulfillment"]!, envelope("payment-applied", paid[0]!.data))
    expect(fulfilled[0]!.type).toBe("order-fulfilled")
    const of = envelope("order-fulfilled", fulfilled[0]!.data)
    const shipped = await run(store, p["shipping"]!, of)
    expect(shipped[0]!.data).toMatchObject({ orderId: order.orderId, method: "freight", trackingId: expect.stringMatching(/^TRK-/) })
    expect(await run(store, p["shipping"]!, of)).toEqual(shipped)

    const mail = await run(store, p["notification"]!, oc)
    expect(mail).toEqual([{ type: "email-sent", data: { orderId: order.orderId, to: "a@b.co", template: "order-confirmation", messageId: "m1" } }])
    // Again: without SMTP rendered again, and dropped: the mail recorded once, the same one announced.
    expect(await run(store, p["notification"]!, oc)).toEqual(mail)
    expect(await store.run(store.query("SELECT message_id FROM emails WHERE cause_id = ?").all(oc.id))).toEqual([{ message_id: "m1" }])
    // Through SMTP: not sent again.
    const smtp = mailer("smtp")
    const notification = (await start(store, smtp)).processors.find((x) => x.name === "notification")!
    const of2 = envelope("order-fulfilled", fulfilled[0]!.data)
    const ready = await run(store, notification, of2)
    expect(ready).toEqual([{ type: "email-sent", data: { orderId: order.orderId, to: "a@b.co", template: "ready-to-ship", messageId: "m1" } }])
    expect(await run(store, notification, of2)).toEqual(ready)
    expect(smtp.sent).toHaveLength(1)
  })

  it("gives a denied order's allocation back once, and takes nothing for an order whose denial came first", async () => {
    const opened = await open()
    close = opened.close
    const { store } = opened
    const app = await start(store, mailer())
    const inventory = app.processors.find((x) => x.name === "inventory")!
    const units = async () =>
      Object.fromEntries((await store.run(store.query("SELECT sku, on_hand, backordered FROM stock WHERE sku IN ('BOOK-3', 'BOOK-4')").all())).map((r) => [String(r.sku), [Number(r.on_hand), Number(r.backordered)]]))
    const before = await units()
    const order = (orderId: string) => ({ orderId, customerId: "c", email: "a@b.co", items: [{ sku: "BOOK-3", qty: 4, price: 1 }, { sku: "BOOK-4", qty: 1500, price: 1 }], total: 1504, paymentToken: "t", cardLast4: "0002" })
    const denied = (orderId: string) => envelope("payment-denied", { orderId, customerId: "c", email: "a@b.co", amount: 1504, reason: "card declined by issuer" })

    // Allocated (BOOK-4 partly back-ordered), then denied: stock and back-orders as before.
    const [updated] = await run(store, inventory, envelope("order-created", order("ORD-D1")))
    expect(updated!.data).toMatchObject({ shortfall: 500 })
    expect(await units()).toEqual({ "BOOK-3": [before["BOOK-3"]![0]! - 4, 0], "BOOK-4": [0, 500] })
    const first = denied("ORD-D1")
    const [released] = await run(store, inventory, first)
    expect(released).toEqual({ type: "inventory-released", data: { orderId: "ORD-D1", lines: (updated!.data as OrderEntry.Contract.InventoryUpdated).lines } })
    expect(await units()).toEqual(before)
    // The same denial again, or another one for the order: the same release announced, nothing given back twice.
    expect(await run(store, inventory, first)).toEqual([released])
    expect(await run(store, inventory, denied("ORD-D1"))).toEqual([released])
    expect(await units()).toEqual(before)

    // The denial first (the two run in parallel): a tombstone; the order then takes nothing, also when redelivered.
    expect(await run(store, inventory, denied("ORD-D2"))).toEqual([{ type: "inventory-released", data: { orderId: "ORD-D2", lines: [] } }])
    const late = envelope("order-created", order("ORD-D2"))
    expect(await run(store, inventory, late)).toEqual([{ type: "inventory-updated", data: { orderId: "ORD-D2", lines: [], shortfall: 0 } }])
    expect(await run(store, inventory, late)).toEqual([{ type: "inventory-updated", data: { orderId: "ORD-D2", lines: [], shortfall: 0 } }])
    expect(await units()).toEqual(before)
  })
}

for (const [engine, open] of engines) describe(`order-entry on ${engine}`, () => flow(open))
