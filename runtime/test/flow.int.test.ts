import { describe, expect, it } from "vitest"
import { orderFlowProperty } from "./orders.ts"
import { connect, getJson, useRuntime } from "./support.ts"

describe("broker topology, embedded broker", () => {
  const ctx = useRuntime()

  it("is healthy once every processor subscribed", async () => {
    const health = await getJson(ctx.h.runtime.httpPort, "/healthz")
    expect(health.status).toBe(200)
    expect(health.body.status).toBe("ready")
    expect(health.body.processors).toHaveLength(9)
  })

  it("runs the whole order chain for generated orders, with consistent correlation and causation", async () => {
    await orderFlowProperty(ctx.h, ctx.client, ctx.events)
    expect(ctx.events.received.filter((r) => r.topic.startsWith("errors/"))).toEqual([])
  })

  it("back-orders what is not in stock instead of refusing it", async () => {
    const customerId = `big-${Date.now()}`
    const store = ctx.h.runtime.store
    const on = Number((await store.run(store.query("SELECT on_hand FROM stock WHERE sku = 'BOOK-5'").get()))?.on_hand)
    await ctx.client.publishAsync(
      "initiate/place-order",
      JSON.stringify({ customerId, email: "big@example.com", items: [{ sku: "BOOK-5", qty: on + 7, price: 1 }], payment: { card: "4242424242424242" } }),
      { qos: 1 }
    )
    await ctx.events.until((all) => all.some((r) => r.envelope.type === "stock-reordered" && (r.envelope.data as { sku: string }).sku === "BOOK-5"), 10_000, "stock-reordered")
    const created = ctx.events.received.find((r) => r.envelope.type === "order-created" && (r.envelope.data as { customerId: string }).customerId === customerId)!
    const updated = ctx.events.received.find((r) => r.envelope.type === "inventory-updated" && r.envelope.correlationId === created.envelope.correlationId)!
    expect(updated.envelope.data).toMatchObject({ shortfall: 7, lines: [{ sku: "BOOK-5", taken: on, backordered: 7, remaining: 0 }] })
    await ctx.events.until((all) => all.some((r) => r.envelope.type === "order-shipped" && r.envelope.correlationId === created.envelope.correlationId), 10_000, "order-shipped")
  })

  it("serves MQTT over WebSocket", async () => {
    const ws = await connect(`ws://127.0.0.1:${ctx.h.runtime.wsPort}`)
    const customerId = `ws-${Date.now()}`
    await ws.publishAsync("initiate/place-order", JSON.stringify({ customerId, email: "ws@example.com", items: [{ sku: "BOOK-2", qty: 1, price: 3 }], payment: { card: "4242424242424242" } }), { qos: 1 })
    await ctx.events.until(
      (all) => {
        const c = all.find((r) => r.envelope.type === "order-created" && (r.envelope.data as { customerId: string }).customerId === customerId)
        return c !== undefined && all.some((r) => r.envelope.type === "order-shipped" && r.envelope.correlationId === c.envelope.correlationId)
      },
      10_000,
      "the WebSocket order to ship"
    )
    await ws.endAsync()
  })
})
