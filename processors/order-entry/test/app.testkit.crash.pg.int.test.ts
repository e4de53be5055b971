/**
 * Review probe (pgstmt): the order-entry app on PostgreSQL killed at payment's and shipping's kill
 * points (their inserts held back and sent with the COMMIT): after the restart each effect once,
 * the announced references those stored.
 */
import { fileURLToPath } from "node:url"
import { afterAll, describe, expect, it } from "vitest"
import { Testkit } from "@baton/sdk/testkit"
import { freshSchema } from "@baton/testkit/postgres"
import { Postgres } from "@baton/store"
import { events, type PlaceOrder } from "../src/Contract.ts"

const appPath = fileURLToPath(new URL("../src/app.ts", import.meta.url))
const order: PlaceOrder = { customerId: "c-crash", email: "crash@example.com", items: [{ sku: "BOOK-1", qty: 2, price: 10 }], payment: { card: "4242424242424242" } }
const drops: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const d of drops) await d()
})


describe("order-entry on PostgreSQL killed at payment's and shipping's kill points", () => {
  for (const [at, processor] of [["handler", "payment"], ["processed-committed", "payment"], ["handler", "shipping"], ["processed-committed", "shipping"]] as const) {
    it(`at ${at} of ${processor}: charged and shipped once, the references announced those stored`, async () => {
      const schema = await freshSchema()
      drops.push(schema.drop)
      const crash = await Testkit.crashing(appPath, { at, processor, env: { BATON_SMTP_URL: "", BATON_DATABASE_URL: schema.url } })
      try {
        const sending = crash.publish(events.placeOrder, order)
        await crash.crashed()
        await crash.restart()
        const sent = await sending
        await crash.flow(sent, { until: events.orderShipped, timeoutMs: 20_000 })
        const flow = await crash.flow(sent, { timeoutMs: 20_000 })
        for (const e of [events.orderCreated, events.paymentApplied, events.orderFulfilled, events.orderShipped]) expect(flow.count(e), e.type).toBe(1)
        const orderId = flow.data(events.orderCreated)[0]!.orderId
        const store = await Postgres.open({ url: schema.url, poolSize: 1 })
        const query = (sql: string, ...params: ReadonlyArray<unknown>) => store.run(store.query(sql).all(...params))
        const payments = await query('SELECT "authorization" FROM payments WHERE order_id = ?', orderId)
        expect(payments.map((p) => p.authorization)).toEqual([flow.data(events.paymentApplied)[0]!.authorization])
        const shipments = await query("SELECT tracking_id FROM shipments WHERE order_id = ?", orderId)
        expect(shipments.map((s) => s.tracking_id)).toEqual([flow.data(events.orderShipped)[0]!.trackingId])
        expect(await query("SELECT processor, envelope_id FROM inbox WHERE status <> 'done'")).toEqual([])
        await store.close()
      } catch (error) {
        throw new Error(`${(error as Error).message}\n${crash.output().slice(-3000)}`)
      } finally {
        await crash.stop()
      }
    }, 90_000)
  }
})
