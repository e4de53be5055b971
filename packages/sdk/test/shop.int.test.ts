// The README's small app (examples/shop/app.ts) on the real runtime, through the public testkit.
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Testkit, fc } from "@baton/sdk/testkit"
import shop, { OrderAccepted, PlaceOrder } from "../../../examples/shop/app.ts"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 8)

describe("the README's app (examples/shop/app.ts)", () => {
  let kit: Awaited<ReturnType<typeof Testkit.start>>
  beforeAll(async () => {
    kit = await Testkit.start(shop)
  })
  afterAll(async () => kit?.stop())

  it("for any order: one shop-order-accepted caused by it, with its data, and its row stored once", async () => {
    await fc.assert(
      fc.asyncProperty(Testkit.arbitrary(PlaceOrder), async (order) => {
        const orderId = `${order.orderId}-${crypto.randomUUID()}`
        const sent = await kit.publish(PlaceOrder, { ...order, orderId })
        const flow = await kit.flow(sent, { until: OrderAccepted.type })
        expect(flow.data(OrderAccepted)).toEqual([{ orderId, total: order.total }])
        const rows = await kit.query("SELECT total FROM shop_orders WHERE id = ?", orderId)
        expect(rows.map((r) => Number(r.total))).toEqual([order.total])
      }),
      { numRuns: runs }
    )
  })

  it("refuses an order with a negative total at the door, with the field's path, and stores nothing", async () => {
    const sent = await kit.publish(PlaceOrder, { orderId: "neg-1", total: -1 }, { unchecked: true })
    const flow = await kit.flow(sent)
    expect(flow.rejections.map((r) => r.reason).join("\n")).toContain("total")
    expect(await kit.query("SELECT id FROM shop_orders WHERE id = ?", "neg-1")).toEqual([])
  })
})
