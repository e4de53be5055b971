import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { checkChain, complete, order, payload } from "./orders.ts"
import { getJson, useRuntime } from "./support.ts"

const maxPayloadBytes = 4096

describe("bad input", () => {
  const ctx = useRuntime({ maxPayloadBytes })

  it("records and publishes each kind of rejection with its reason while valid orders complete", async () => {
    const bad = [
      { topic: "initiate/place-order", payload: Buffer.from('{"customerId": "c-1", '), kind: "malformed-json" },
      { topic: "initiate/place-order", payload: Buffer.from([0xc3, 0x28, 0x7b, 0x7d]), kind: "malformed-json" },
      { topic: "initiate/place-order", payload: Buffer.from(JSON.stringify({ customerId: 7, email: "x", items: [], payment: { card: "12" } })), kind: "schema-violation" },
      { topic: "initiate/cancel-order", payload: Buffer.from(JSON.stringify({ orderId: "ORD-000001" })), kind: "unknown-topic" },
      { topic: "initiate/place-order", payload: Buffer.from(JSON.stringify({ pad: "x".repeat(maxPayloadBytes) })), kind: "oversized-payload" },
      { topic: "initiate/place-order", payload: Buffer.from(JSON.stringify({ customerId: "c-9", email: "a@b.co", items: [{ sku: "NOPE-1", qty: 1, price: 1 }], payment: { card: "4242424242424242" } })), kind: "processing-failed" }
    ]
    const good = fc.sample(order, 6).map((o) => ({ o, id: crypto.randomUUID() }))
    for (let i = 0; i < Math.max(bad.length, good.length); i++) {
      const b = bad[i]
      const g = good[i]
      if (b !== undefined) await ctx.client.publishAsync(b.topic, b.payload, { qos: 1 })
      if (g !== undefined) await ctx.client.publishAsync("initiate/place-order", payload(g.o, g.id), { qos: 1 })
    }
    await ctx.events.until((all) => all.filter((r) => r.topic.startsWith("errors/")).length >= bad.length, 15_000, "every rejection")
    await ctx.events.until((all) => good.every(({ o, id }) => complete(o, id, all)), 15_000, "the valid orders")
    for (const { o, id } of good) checkChain(o, id, ctx.events.received)

    const errors = ctx.events.received.filter((r) => r.topic.startsWith("errors/"))
    expect(errors.map((e) => (e.envelope.data as { kind: string }).kind).sort()).toEqual(bad.map((b) => b.kind).sort())
    for (const e of errors) {
      const data = e.envelope.data as { kind: string; topic: string; reason: string; payload: string; payloadBytes: number }
      expect(e.topic).toBe(`errors/${data.topic}`)
      expect(data.reason.length).toBeGreaterThan(10)
      if (data.kind !== "processing-failed") {
        const sizes = bad.filter((b) => b.kind === data.kind && b.topic === data.topic).map((b) => b.payload.length)
        expect(sizes).toContain(data.payloadBytes)
      }
    }
    const schema = errors.find((e) => (e.envelope.data as { kind: string }).kind === "schema-violation")!.envelope.data as { issues: Array<{ path: string }>; reason: string }
    expect(schema.issues.map((i) => i.path).sort()).toEqual(["customerId", "email", "items", "payment.card"])
    const unknownSku = errors.find((e) => (e.envelope.data as { kind: string }).kind === "processing-failed")!.envelope.data as { reason: string; processor: string; attempts: number }
    expect(unknownSku).toMatchObject({ topic: "initiate/place-order", processor: "order-placement", attempts: 1, reason: expect.stringContaining("unknown SKU NOPE-1") })
    const invalidUtf8 = errors.find((e) => (e.envelope.data as { payloadEncoding: string }).payloadEncoding === "base64")!.envelope.data as { payload: string }
    expect(Buffer.from(invalidUtf8.payload, "base64")).toEqual(bad[1]!.payload)

    const recorded = await getJson(ctx.h.runtime.httpPort, "/errors")
    expect(recorded.body.recent).toHaveLength(bad.length)
    expect(recorded.body.counts).toEqual({ "malformed-json": 2, "schema-violation": 1, "unknown-topic": 1, "oversized-payload": 1, "processing-failed": 1 })
    expect((await getJson(ctx.h.runtime.httpPort, "/healthz")).status).toBe(200)
  })

  it.each([0, -1])("rejects an order with qty %d as a schema violation at items[0].qty, and takes no stock", async (qty) => {
    const store = ctx.h.runtime.store
    const stock = async () => store.run(store.query("SELECT sku, on_hand, backordered FROM stock ORDER BY sku").all())
    const before = await stock()
    const customerId = `qty-${qty}-${crypto.randomUUID().slice(0, 8)}`
    await ctx.client.publishAsync("initiate/place-order", JSON.stringify({ customerId, email: "q@example.com", items: [{ sku: "BOOK-1", qty, price: 1 }], payment: { card: "4242424242424242" } }), { qos: 1 })
    // Whichever comes first, its rejection or its order: a non-positive quantity accepted fails here, not by a timeout.
    const mine = (r: { envelope: { type: string; data: unknown } }) => JSON.stringify(r.envelope.data).includes(customerId)
    await ctx.events.until((all) => all.some((r) => mine(r) && (r.envelope.type === "message-rejected" || r.envelope.type === "order-created")), 10_000, `the outcome of qty ${qty}`)
    const outcome = ctx.events.received.find((r) => mine(r) && (r.envelope.type === "message-rejected" || r.envelope.type === "order-created"))!
    expect(outcome.envelope.type, "a quantity must be a positive whole number").toBe("message-rejected")
    const data = outcome.envelope.data as { kind: string; issues: Array<{ path: string; message: string }> }
    expect(data.kind).toBe("schema-violation")
    expect(data.issues).toEqual([{ path: "items[0].qty", message: "Expected a value greater than 0" }])
    await ctx.h.runtime.idle()
    expect(await store.run(store.query("SELECT id FROM orders WHERE customer_id = ?").all(customerId))).toEqual([])
    expect(await stock(), "stock unchanged").toEqual(before)
  })
})
