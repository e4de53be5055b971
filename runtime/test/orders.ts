/** Generated orders and the causal graph every order must produce (docs/concepts.md, section 1). */
import fc from "fast-check"
import { expect } from "vitest"
import type { MqttClient } from "mqtt"
import { propertyRuns, sleep, type Collector, type Harness, type Received } from "./support.ts"

export const cards = { approved: "4242424242424242", declined: "4000000000000002", invalid: "4242424242424241" } as const
export type CardKind = keyof typeof cards

export interface GeneratedOrder {
  readonly customerId: string
  readonly email: string
  readonly items: ReadonlyArray<{ readonly sku: string; readonly qty: number; readonly price: number }>
  readonly payment: { readonly card: string }
  readonly cardKind: CardKind
  readonly asEnvelope: boolean
}

let counter = 0

export const order: fc.Arbitrary<GeneratedOrder> = fc
  .record({
    name: fc.stringMatching(/^[a-z]{1,8}$/),
    items: fc.array(
      fc.record({
        sku: fc.constantFrom("BOOK-1", "BOOK-2", "BOOK-3", "BOOK-4", "BOOK-5"),
        qty: fc.integer({ min: 1, max: 3 }),
        price: fc.integer({ min: 1, max: 5000 }).map((c) => c / 100)
      }),
      { minLength: 1, maxLength: 5 }
    ),
    cardKind: fc.constantFrom<CardKind>("approved", "approved", "declined", "invalid"),
    asEnvelope: fc.boolean()
  })
  .map((o) => {
    counter++
    return {
      customerId: `cust-${o.name}-${counter}-${Math.random().toString(36).slice(2, 7)}`,
      email: `${o.name}@example.com`,
      items: o.items,
      payment: { card: cards[o.cardKind] },
      cardKind: o.cardKind,
      asEnvelope: o.asEnvelope
    }
  })

export const payload = (o: GeneratedOrder, id: string): string => {
  const data = { customerId: o.customerId, email: o.email, items: o.items, payment: o.payment }
  return JSON.stringify(o.asEnvelope ? { id, type: "place-order", data } : data)
}

/** The order's correlation id: its envelope id, or for a bare order the one its order-created carries. */
export const correlationOf = (o: GeneratedOrder, id: string, all: ReadonlyArray<Received>): string | undefined =>
  o.asEnvelope
    ? id
    : all.find((r) => r.envelope.type === "order-created" && (r.envelope.data as { customerId: string }).customerId === o.customerId)?.envelope
        .correlationId

const chainTypes = new Set(["order-created", "email-sent", "inventory-updated", "payment-applied", "payment-denied", "inventory-released", "order-fulfilled", "order-shipped"])

const expectedCount = (o: GeneratedOrder) => (o.cardKind === "approved" ? 7 : 6)

/** True once every event of the order's chain arrived (stock-reordered aside). */
export const complete = (o: GeneratedOrder, id: string, all: ReadonlyArray<Received>): boolean => {
  const c = correlationOf(o, id, all)
  if (c === undefined) return false
  return all.filter((r) => r.envelope.correlationId === c && chainTypes.has(r.envelope.type)).length >= expectedCount(o)
}

/** Checks the causal graph of one order: every edge, every id, and nothing extra. */
export const checkChain = (o: GeneratedOrder, id: string, all: ReadonlyArray<Received>) => {
  const c = correlationOf(o, id, all)
  expect(c, `order of ${o.customerId} has an order-created`).toBeDefined()
  const chain = all.filter((r) => r.envelope.correlationId === c && r.topic.startsWith("events/")).map((r) => r.envelope)
  for (const r of all.filter((x) => x.envelope.correlationId === c && x.topic.startsWith("events/"))) expect(r.topic).toBe(`events/${r.envelope.type}`)
  const ofType = (t: string) => chain.filter((e) => e.type === t)
  const one = (t: string) => {
    const es = ofType(t)
    expect(es.map((e) => e.type), `exactly one ${t} for ${o.customerId}`).toEqual([t])
    return es[0]!
  }
  expect(new Set(chain.map((e) => e.id)).size).toBe(chain.length)
  const created = one("order-created")
  expect(created.causationId).toBe(c)
  const orderId = (created.data as { orderId: string }).orderId
  expect(created.key).toBe(orderId)
  const inventory = one("inventory-updated")
  expect(inventory.causationId).toBe(created.id)
  const emails = ofType("email-sent")
  const emailOf = (cause: string) => emails.filter((e) => e.causationId === cause)
  expect(emailOf(created.id).map((e) => (e.data as { template: string }).template)).toEqual(["order-confirmation"])
  for (const r of ofType("stock-reordered")) expect(r.causationId).toBe(inventory.id)
  if (o.cardKind === "approved") {
    const applied = one("payment-applied")
    expect(applied.causationId).toBe(created.id)
    const fulfilled = one("order-fulfilled")
    expect(fulfilled.causationId).toBe(applied.id)
    const shipped = one("order-shipped")
    expect(shipped.causationId).toBe(fulfilled.id)
    expect((shipped.data as { trackingId: string }).trackingId).toMatch(/^TRK-/)
    expect(emailOf(fulfilled.id).map((e) => (e.data as { template: string }).template)).toEqual(["ready-to-ship"])
    expect(ofType("payment-denied")).toEqual([])
    expect(ofType("inventory-released")).toEqual([])
    expect(emails.length).toBe(2)
  } else {
    const denied = one("payment-denied")
    expect(denied.causationId).toBe(created.id)
    expect((denied.data as { reason: string }).reason).toMatch(o.cardKind === "declined" ? /declined/ : /Luhn/)
    expect(emailOf(denied.id).map((e) => (e.data as { template: string }).template)).toEqual(["payment-method-declined"])
    // The compensating step: the stock the order took is given back, once.
    const released = one("inventory-released")
    expect(released.causationId).toBe(denied.id)
    expect((released.data as { lines: unknown }).lines).toEqual((inventory.data as { lines: unknown }).lines)
    expect(ofType("order-fulfilled")).toEqual([])
    expect(ofType("order-shipped")).toEqual([])
    expect(emails.length).toBe(2)
  }
  return orderId
}

/** Publishes generated orders and checks each order's causal graph and the stock it took. */
export const orderFlowProperty = async (h: Harness, client: MqttClient, events: Collector) => {
  const store = h.runtime.store
  const stock = async () =>
    new Map((await store.run(store.query("SELECT sku, on_hand, backordered FROM stock").all())).map((r) => [String(r.sku), Number(r.on_hand) - Number(r.backordered)]))
  await fc.assert(
    fc.asyncProperty(fc.array(order, { minLength: 1, maxLength: 8 }), async (orders: ReadonlyArray<GeneratedOrder>) => {
      const before = await stock()
      const sent = orders.map((o) => ({ o, id: crypto.randomUUID() }))
      await Promise.all(sent.map(({ o, id }) => client.publishAsync("initiate/place-order", payload(o, id), { qos: 1 })))
      await events.until((all) => sent.every(({ o, id }) => complete(o, id, all)), 20_000, `${sent.length} order chains`)
      await sleep(150) // let any duplicate arrive before checking there is none
      const ids = sent.map(({ o, id }) => checkChain(o, id, events.received))
      expect(new Set(ids).size).toBe(ids.length)
      // Stock decremented once per item of a paid order: on hand minus back-ordered drops by exactly
      // the quantity of the approved orders (a denied order's allocation is given back).
      const after = await stock()
      for (const [sku, units] of before) {
        const ordered = orders.filter((o) => o.cardKind === "approved").flatMap((o) => o.items).filter((i) => i.sku === sku).reduce((n, i) => n + i.qty, 0)
        expect(units - (after.get(sku) ?? 0), sku).toBe(ordered)
      }
    }),
    { numRuns: propertyRuns }
  )
}

