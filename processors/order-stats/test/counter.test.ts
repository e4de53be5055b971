import { describe, expect, it } from "vitest"
import { Envelope as E } from "@baton/core"
import { Sqlite } from "@baton/store"
import app from "@baton/order-stats/app"

describe("order-stats over SQLite", () => {
  it("counts and sums, and announces the totals", async () => {
    const store = await Sqlite.open({ path: ":memory:" })
    const counter = (await app.make({ ...store, env: {}, clock: E.systemClock })).processors[0]!
    const run = (type: string, data: unknown) => store.transaction(counter.handle(E.initiate(type, data), undefined))
    await run("order-created", {})
    await run("payment-applied", { amount: 12.5 })
    // Only the events it declares reach its handler, each read through its schema; nothing else counts.
    await expect(run("something-else", {})).rejects.toMatchObject({ name: "Rejected", message: expect.stringContaining("does not declare events of type 'something-else'") })
    await expect(run("payment-applied", { amount: "12.5" })).rejects.toMatchObject({ name: "Rejected", message: expect.stringContaining("amount") })
    expect(await run("order-shipped", {})).toEqual([{ type: "order-stats-updated", key: "order-stats", data: { placed: 1, paid: 1, denied: 0, shipped: 1, revenue: 12.5 } }])
    await store.close()
  })
})
