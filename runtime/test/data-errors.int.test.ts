import { describe, expect, it } from "vitest"
import { Effect } from "effect"
import type { Processor } from "@baton/core"
import type { Store } from "@baton/store"
import { useRuntime } from "./support.ts"

/** Records one loyalty entry per customer; a second order of the same customer violates the key. */
const loyalty = ({ store }: { readonly store: Store }): Processor => {
  // Created before the first message is handled: `prepare` waits for it, outside the transaction.
  const ready = store.migrate([{ name: "test/loyalty", sql: "CREATE TABLE IF NOT EXISTS loyalty (customer_id TEXT PRIMARY KEY, order_id TEXT NOT NULL)" }])
  ready.catch(() => undefined)
  const insert = store.query("INSERT INTO loyalty (customer_id, order_id) VALUES (?, ?)")
  return {
    name: "loyalty",
    consumes: ["order-created"],
    prepare: () => Effect.tryPromise(() => ready),
    handle: (event) =>
      Effect.gen(function* () {
        const data = event.data as { customerId: string; orderId: string }
        yield* insert.run(data.customerId, data.orderId)
        return [{ type: "loyalty-recorded", data }]
      })
  }
}

const place = (customerId: string) =>
  JSON.stringify({ customerId, email: "l@example.com", items: [{ sku: "BOOK-4", qty: 1, price: 1 }], payment: { card: "4242424242424242" } })

describe("data errors", () => {
  const ctx = useRuntime({}, { processors: (deps) => [loyalty(deps)] })

  it("sends a message whose transaction violates a constraint to the error path at once, and moves on", async () => {
    await ctx.client.publishAsync("initiate/place-order", place("loyal-1"), { qos: 1 })
    await ctx.client.publishAsync("initiate/place-order", place("loyal-1"), { qos: 1 })
    await ctx.client.publishAsync("initiate/place-order", place("loyal-2"), { qos: 1 })
    await ctx.events.until((all) => all.filter((r) => r.envelope.type === "loyalty-recorded").length === 2 && all.some((r) => r.topic === "errors/events/order-created"), 10_000, "two records and one rejection")
    const rejected = ctx.events.received.filter((r) => r.topic === "errors/events/order-created")
    expect(rejected).toHaveLength(1)
    expect(rejected[0]!.envelope.data).toMatchObject({ kind: "processing-failed", processor: "loyalty", attempts: 1, reason: expect.stringContaining("UNIQUE constraint failed: loyalty.customer_id") })
    // Nothing of the failed transaction was applied, and the inbox records the failure.
    const store = ctx.h.runtime.store
    const count = async (sql: string) => Number((await store.run(store.query(sql).get()))?.n)
    expect(await count("SELECT COUNT(*) AS n FROM loyalty")).toBe(2)
    expect(await count("SELECT COUNT(*) AS n FROM inbox WHERE processor = 'loyalty' AND status = 'failed'")).toBe(1)
  })
})
