/**
 * The order-entry app killed at the runtime's kill points through the public testkit
 * (`Testkit.crashing`), as a user's test would be: after the restart, each effect once.
 */
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { Testkit, type Crashing } from "@baton/sdk/testkit"
import { events, type PlaceOrder } from "../src/Contract.ts"

const appPath = fileURLToPath(new URL("../src/app.ts", import.meta.url))
const order: PlaceOrder = { customerId: "c-crash", email: "crash@example.com", items: [{ sku: "BOOK-1", qty: 2, price: 10 }, { sku: "BOOK-3", qty: 1, price: 7.5 }], payment: { card: "4242424242424242" } }

const count = async (kit: Crashing, sql: string, ...params: ReadonlyArray<unknown>) => Number((await kit.query(sql, ...params))[0]?.n)

describe("order-entry killed at a kill point, restarted on the same data (Testkit.crashing)", () => {
  for (const [at, processor] of [["handler", "payment"], ["processed-committed", "inventory"]] as const) {
    it(`at ${at} of ${processor}: the order placed, charged, allocated, shipped and mailed once each`, async () => {
      const crash = await Testkit.crashing(appPath, { at, processor, env: { BATON_SMTP_URL: "" } })
      try {
        const sending = crash.publish(events.placeOrder, order)
        await crash.crashed()
        await crash.restart()
        const sent = await sending
        await crash.flow(sent, { until: events.orderShipped, timeoutMs: 20_000 })
        const flow = await crash.flow(sent, { timeoutMs: 20_000 })
        for (const e of [events.orderCreated, events.paymentApplied, events.inventoryUpdated, events.orderFulfilled, events.orderShipped]) expect(flow.count(e), e.type).toBe(1)
        expect(flow.data(events.emailSent).map((m) => m.template).sort()).toEqual(["order-confirmation", "ready-to-ship"])
        const orderId = flow.data(events.orderCreated)[0]!.orderId
        expect(await count(crash, "SELECT COUNT(*) AS n FROM orders")).toBe(1)
        expect(await count(crash, "SELECT COUNT(*) AS n FROM payments WHERE order_id = ?", orderId)).toBe(1)
        expect(await count(crash, "SELECT COUNT(*) AS n FROM stock_allocations WHERE order_id = ?", orderId)).toBe(1)
        expect(await count(crash, "SELECT COUNT(*) AS n FROM shipments WHERE order_id = ?", orderId)).toBe(1)
        expect(await count(crash, "SELECT COUNT(*) AS n FROM emails WHERE order_id = ?", orderId)).toBe(2)
        // The stock taken once: 1,000 units each at the start.
        expect(await crash.query("SELECT sku, on_hand FROM stock WHERE sku IN ('BOOK-1', 'BOOK-3') ORDER BY sku")).toEqual([
          { sku: "BOOK-1", on_hand: 998 },
          { sku: "BOOK-3", on_hand: 999 }
        ])
      } catch (error) {
        throw new Error(`${(error as Error).message}\n${crash.output()}`)
      } finally {
        await crash.stop()
      }
    })
  }
})
