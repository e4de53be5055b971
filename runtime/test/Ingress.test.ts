import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { Envelope, type App } from "@baton/core"
import { Sqlite } from "@baton/store"
import * as OrderEntry from "@baton/order-entry"
import * as Ingress from "../src/Ingress.ts"

const app: App = await OrderEntry.make({ store: await Sqlite.open({ path: ":memory:" }), mailer: OrderEntry.Mailer.make() })
const contracts = Ingress.contractsOf([app])
const order = { customerId: "c-1", email: "ann@example.com", items: [{ sku: "BOOK-1", qty: 2, price: 12.5 }], payment: { card: "4242424242424242" } }
const judge = (topic: string, payload: string | Buffer, max = 1024) =>
  Ingress.judge(contracts, { topic, payload: typeof payload === "string" ? Buffer.from(payload) : payload }, max)

describe("Ingress.judge", () => {
  it("wraps a bare object in a new envelope keyed by customer", () => {
    const v = judge("initiate/place-order", JSON.stringify(order))
    expect(v._tag).toBe("Accepted")
    if (v._tag !== "Accepted") return
    expect(v.envelope).toMatchObject({ type: "place-order", key: "c-1", data: order })
    expect(v.envelope.correlationId).toBe(v.envelope.id)
    expect(v.envelope.causationId).toBe(v.envelope.id)
  })

  it("keeps the id, key and replyTo of a full envelope", () => {
    const v = judge("initiate/place-order", JSON.stringify({ id: "e-1", type: "place-order", key: "k", replyTo: "reply/me/1", data: order }))
    expect(v).toMatchObject({ _tag: "Accepted", envelope: { id: "e-1", correlationId: "e-1", causationId: "e-1", key: "k", replyTo: "reply/me/1" } })
  })

  it("refuses each kind of bad input with a readable reason", () => {
    expect(judge("initiate/place-order", "{oops")).toMatchObject({ _tag: "Refused", kind: "malformed-json" })
    expect(judge("initiate/place-order", Buffer.from([0xff, 0xfe, 0x7b]))).toMatchObject({ _tag: "Refused", kind: "malformed-json", reason: expect.stringContaining("UTF-8") })
    expect(judge("initiate/cancel-order", JSON.stringify(order))).toMatchObject({ _tag: "Refused", kind: "unknown-topic", reason: expect.stringContaining("initiate/place-order") })
    expect(judge("initiate/place-order", "x".repeat(1025))).toMatchObject({ _tag: "Refused", kind: "oversized-payload", reason: expect.stringContaining("1025 bytes") })
    expect(judge("initiate/place-order", JSON.stringify({ id: "e", type: "other", data: order }))).toMatchObject({ _tag: "Refused", kind: "schema-violation" })
  })

  it("reports every schema issue with its path", () => {
    const v = judge("initiate/place-order", JSON.stringify({ customerId: "", email: "nope", items: [{ sku: "BOOK-1", qty: 0.5, price: -1 }], payment: {} }))
    expect(v._tag).toBe("Refused")
    if (v._tag !== "Refused") return
    expect(v.kind).toBe("schema-violation")
    expect(v.issues?.map((i) => i.path).sort()).toEqual(["customerId", "email", "items[0].price", "items[0].qty", "payment.card"])
    expect(v.reason).toContain("items[0].qty")
  })

  it("never throws, whatever arrives", () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)), fc.jsonValue().map((j) => Buffer.from(JSON.stringify(j) ?? "null"))), fc.constantFrom("initiate/place-order", "initiate/x"), (payload, topic) => {
        const v = judge(topic, payload)
        expect(["Accepted", "Refused"]).toContain(v._tag)
        if (v._tag === "Refused") expect(v.reason.length).toBeGreaterThan(0)
      })
    )
  })

  it("decodes what it accepts as a valid envelope", () => {
    const v = judge("initiate/place-order", JSON.stringify(order))
    if (v._tag !== "Accepted") throw new Error(`expected the order to be accepted: ${v.reason}`)
    expect(Envelope.decodeEnvelope(JSON.parse(Envelope.encode(v.envelope)))._tag).toBe("Success")
  })
})
