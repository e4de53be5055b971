/**
 * The references an order's events carry: a shipment's tracking id and a payment's authorization.
 * For any orders handled within one window of time (the ids' clock part the same), each order's
 * are its own, and handling an order again, on another store (a rerun), gives the same ones. They
 * were the first 8 digits of a UUIDv7, its clock: every order within ~65 s had the same.
 */
import { createHash } from "node:crypto"
import fc from "fast-check"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { Envelope, Processor } from "@baton/core"
import { Envelope as E } from "@baton/core"
import type { Store } from "@baton/store"
import * as OrderEntry from "@baton/order-entry"
import * as Reference from "../src/Reference.ts"
import { engines, type Opened } from "./stores.ts"

const orders = 400

const envelope = (type: string, orderId: string, data: unknown): Envelope.Envelope => {
  const id = `${type}-${orderId}`
  return { id, type, correlationId: orderId, causationId: id, key: orderId, occurredAt: new Date(0).toISOString(), data }
}
const fulfilled = (orderId: string) => envelope("order-fulfilled", orderId, { orderId, customerId: "c", email: "a@b.co", items: [{ sku: "BOOK-1", qty: 1, price: 2 }] })
const created = (orderId: string) =>
  envelope("order-created", orderId, { orderId, customerId: "c", email: "a@b.co", items: [{ sku: "BOOK-1", qty: 1, price: 2 }], total: 2, paymentToken: "t", cardLast4: "4242", card: "4242424242424242" })

/** The field `field` of the one event each order's handling announces, by order. */
const references = async (store: Store, processor: Processor<unknown>, make: (orderId: string) => Envelope.Envelope, field: string, ids: ReadonlyArray<string>) => {
  const out: Array<string> = []
  for (const id of ids) {
    const [event] = await store.transaction(processor.handle(make(id), undefined))
    out.push(String((event!.data as Record<string, unknown>)[field]))
  }
  return out
}

for (const [engine, open] of engines)
  describe(`tracking ids and authorizations on ${engine}`, () => {
    const opened: Array<Opened> = []
    const processors: Array<Record<string, Processor<unknown>>> = []
    beforeAll(async () => {
      for (let i = 0; i < 2; i++) {
        const o = await open()
        opened.push(o)
        const app = await OrderEntry.makeApp({ mailer: OrderEntry.Mailer.make() }).make({ ...o.store, env: {}, clock: E.systemClock })
        await o.store.migrate(OrderEntry.migrations)
        processors.push(Object.fromEntries((app.processors as ReadonlyArray<Processor<unknown>>).map((p) => [p.name, p])))
      }
    })
    afterAll(async () => {
      for (const o of opened) await o.close()
    })

    const ids = Array.from({ length: orders }, (_, i) => `ORD-${String(i + 1).padStart(6, "0")}`)
    const cases = [
      ["shipping", fulfilled, "trackingId", /^TRK-[0-9A-F]{16}$/],
      ["payment", created, "authorization", /^auth_[0-9a-f]{16}$/]
    ] as const
    for (const [name, make, field, shape] of cases)
      it(`${name}: ${orders} orders in one window, each its own ${field}; the same again on another store`, async () => {
        const first = await references(opened[0]!.store, processors[0]![name]!, make, field, ids)
        expect(new Set(first).size).toBe(orders)
        for (const r of first) expect(r).toMatch(shape)
        // A rerun (another store, later): the same references, whatever the clock says.
        expect(await references(opened[1]!.store, processors[1]![name]!, make, field, ids.slice(0, 20))).toEqual(first.slice(0, 20))
      })
  })

describe("an order's references", () => {
  it("are its id's SHA-256 in hex, 16 digits from 0 or from 16, for any id (those recorded before stay what a rerun makes)", () => {
    const sha256 = (id: string) => createHash("sha256").update(id).digest("hex")
    expect(Reference.of("ORD-000001", 0)).toBe(sha256("ORD-000001").slice(0, 16))
    fc.assert(
      fc.property(fc.oneof(fc.uuid(), fc.string({ unit: "grapheme" }), fc.string({ unit: "binary" })), fc.constantFrom(0 as const, 16 as const), (id, from) => {
        expect(Reference.of(id, from)).toBe(sha256(id).slice(from, from + 16))
      }),
      { numRuns: 2000 }
    )
  })
})
