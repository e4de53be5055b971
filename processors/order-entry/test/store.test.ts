import { afterEach, describe, expect, it } from "vitest"
import { Effect } from "effect"
import type { Envelope, Processor } from "@baton/core"
import { Envelope as E } from "@baton/core"
import { Sqlite, type Store } from "@baton/store"
import * as OrderEntry from "@baton/order-entry"
import type { Mailer } from "@baton/order-entry"

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

const mailer = (): Mailer.Mailer & { readonly sent: Array<Mailer.Mail> } => {
  const sent: Array<Mailer.Mail> = []
  return { transport: "store", sent, send: async (mail) => (sent.push(mail), { messageId: `m${sent.length}`, message: undefined }) }
}

export const flow = (open: () => Promise<{ readonly store: Store; readonly close: () => Promise<void> }>) => {
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
    const app = await OrderEntry.make({ store, mailer: m, clock: E.systemClock })
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
    expect(await run(store, p["notification"]!, oc)).toEqual(mail)
    expect(m.sent).toHaveLength(1)
  })
}

describe("order-entry on SQLite", () => {
  flow(async () => {
    const store = await Sqlite.open({ path: ":memory:" })
    return { store, close: store.close }
  })
})
