import { describe, expect, it } from "vitest"
import fc from "fast-check"
import mqtt from "mqtt"
import { Process } from "@baton/testkit"
import { cards } from "./orders.ts"

const { count, eventually, onDataDir, readStore } = Process

/** Crash runs; raise for a soak run. */
const runs = Number(process.env.BATON_CRASH_RUNS ?? 6)

const scenario = fc.record({
  workflows: fc.array(fc.record({ approved: fc.boolean(), qty: fc.integer({ min: 1, max: 3 }) }), { minLength: 20, maxLength: 40 }),
  kill: fc.constantFrom("handler", "processed-committed"),
  hit: fc.nat()
})

const publishAll = async (port: number, messages: ReadonlyArray<string>) => {
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0 })
  const closed = new Promise<void>((resolve) => client.once("close", () => resolve()))
  const acked = new Set<number>()
  await Promise.race([Promise.allSettled(messages.map((m, i) => client.publishAsync("initiate/place-order", m, { qos: 1 }).then(() => void acked.add(i)))), closed])
  client.end(true)
  return acked
}

describe("mediator topology across SIGKILL", () => {
  it(
    "killed during step 2 of many concurrent workflows, every workflow continues after the restart and completes, each effect once",
    async () => {
      await fc.assert(
        fc.asyncProperty(scenario, async (s) => {
          const ids = s.workflows.map(() => crypto.randomUUID())
          const messages = s.workflows.map((w, i) =>
            JSON.stringify({ id: ids[i], type: "place-order", data: { customerId: `mc-${i}`, email: `mc${i}@example.com`, items: [{ sku: "BOOK-2", qty: w.qty, price: 3 }], payment: { card: w.approved ? cards.approved : cards.declined } } })
          )
          const env = { BATON_TOPOLOGY: "mediator" }
          await onDataDir(async ({ dataDir, start }) => {
            // Each workflow takes 7 (denied) to 10 (approved) handler runs: its start and its
            // commands, every one run in its input's transaction when its channel is free: kill
            // before the last of them.
            const n = s.workflows.length
            const first = await start({ ...env, BATON_CRASH_AT: `${s.kill}:${2 * n + (s.hit % (4 * n))}` })
            await publishAll(first.mqttPort!, messages)
            await Promise.race([first.exited, new Promise((r) => setTimeout(r, 3000))])
            await first.kill("SIGKILL")
            // It died mid-run: workflows were in flight, stored between steps or not begun (on one
            // SQLite instance a workflow whose channels run its commands in its input's transaction,
            // `Consumer.call`, commits whole: a kill inside it leaves its start pending).
            const inFlight = readStore(dataDir, (db) => count(db, "SELECT COUNT(*) FROM workflows WHERE status = 'running'") + count(db, "SELECT COUNT(*) FROM inbox WHERE status = 'pending'"))
            expect(inFlight, "workflows in flight at the kill").toBeGreaterThan(0)
            const second = await start(env)
            // The client resends everything (it cannot know what was acknowledged): duplicates change nothing.
            await publishAll(second.mqttPort!, messages)
            await eventually(
              () => readStore(dataDir, (db) => count(db, "SELECT COUNT(*) FROM orders") === ids.length && count(db, "SELECT COUNT(*) FROM workflows") === 0 && count(db, "SELECT COUNT(*) FROM inbox WHERE status = 'pending'") === 0),
              30_000,
              "every workflow to complete"
            )
            expect(await second.kill("SIGTERM")).toBe(0)
            readStore(dataDir, (db) => {
              s.workflows.forEach((w, i) => {
                const orderId = String(db.prepare("SELECT id FROM orders WHERE correlation_id = ?").get(ids[i]!)?.id)
                const n = (sql: string) => count(db, sql, orderId)
                expect(n("SELECT COUNT(*) FROM payments WHERE order_id = ?"), `payment of ${orderId}`).toBe(1)
                expect(n("SELECT COUNT(*) FROM stock_allocations WHERE order_id = ?")).toBe(1)
                expect(n("SELECT COUNT(*) FROM stock_releases WHERE order_id = ?"), `release of ${orderId}`).toBe(w.approved ? 0 : 1)
                expect(n("SELECT COUNT(*) FROM warehouse_seen WHERE order_id = ?")).toBe(w.approved ? 1 : 0)
                expect(n("SELECT COUNT(*) FROM fulfillments WHERE order_id = ?")).toBe(w.approved ? 1 : 0)
                expect(n("SELECT COUNT(*) FROM shipments WHERE order_id = ?")).toBe(w.approved ? 1 : 0)
                const templates = db.prepare("SELECT template FROM emails WHERE order_id = ? ORDER BY template").all(orderId).map((r) => String(r.template))
                expect(templates, `e-mails of ${orderId}`).toEqual(w.approved ? ["order-confirmation", "ready-to-ship", "shipped"] : ["order-confirmation", "payment-method-declined"])
              })
              // The approved orders' stock only: a denied order's is given back, once.
              const ordered = s.workflows.filter((w) => w.approved).reduce((sum, w) => sum + w.qty, 0)
              expect(count(db, "SELECT on_hand - backordered FROM stock WHERE sku = 'BOOK-2'")).toBe(1000 - ordered)
              expect(count(db, "SELECT COUNT(*) FROM rejections")).toBe(0)
              expect(count(db, "SELECT COUNT(*) FROM inbox WHERE status = 'failed'")).toBe(0)
            })
          })
        }),
        { numRuns: runs, endOnFailure: true }
      )
    },
    300_000
  )
})
