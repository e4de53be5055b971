import { describe, expect, it } from "vitest"
import { Effect } from "effect"
import { Envelope as E, type Processor } from "@baton/core"
import { Sqlite, type Store } from "@baton/store"
import app from "@baton/trading/app"
import { names } from "@baton/trading"

const run = async (store: Store, p: Processor, type: string, data: unknown) => {
  const event = E.initiate(type, data)
  const prepared = p.prepare === undefined ? undefined : await Effect.runPromise(p.prepare(event))
  return store.transaction(p.handle(event, prepared))
}

describe("trade execution over SQLite", () => {
  it("executes in per-account sequence, keeps positions, rejects a malformed trade, repairs", async () => {
    const store = await Sqlite.open({ path: ":memory:" })
    const trading = await app.make({ ...store, env: {}, clock: E.systemClock })
    const trades = trading.processors[0]!
    const a = await run(store, trades, names.placeTrade, { account: "ACC-1", symbol: "AAPL", side: "buy", quantity: 10 })
    const b = await run(store, trades, names.placeTrade, { account: "ACC-1", symbol: "MSFT", side: "buy", quantity: 2, limitPrice: 400 })
    const c = await run(store, trades, names.placeTrade, { account: "ACC-1", symbol: "AAPL", side: "sell", quantity: 3 })
    const d = await run(store, trades, names.placeTrade, { account: "ACC-2", symbol: "AAPL", side: "buy", quantity: 1 })
    expect([a, b, c, d].map((n) => (n[0]!.data as { seq: number }).seq)).toEqual([1, 2, 3, 1])
    expect(b[0]).toMatchObject({ type: names.tradeExecuted, key: "ACC-1", data: { price: 400 } })
    await expect(run(store, trades, names.placeTrade, { account: "ACC-404", symbol: "AAPL", side: "buy", quantity: 1 })).rejects.toMatchObject({ name: "Rejected", message: "unknown account ACC-404" })
    const positions = await store.run(store.query("SELECT account, symbol, quantity FROM positions ORDER BY account, symbol").all())
    expect(positions.map((r) => [r.account, r.symbol, Number(r.quantity)])).toEqual([["ACC-1", "AAPL", 7], ["ACC-1", "MSFT", 2], ["ACC-2", "AAPL", 1]])
    const repair = trading.repairs![names.placeTrade]!
    expect(repair(E.initiate(names.placeTrade, { account: "ACC-3", symbol: "apple", side: "buy", quantity: "4" }), "")?.data).toEqual({ account: "ACC-3", symbol: "AAPL", side: "buy", quantity: 4 })
    expect(repair(E.initiate(names.placeTrade, { account: "ACC-404", symbol: "apple", side: "buy", quantity: 4 }), "")).toBeUndefined()
    // Data that does not read as a trade is not guessed at.
    expect(repair(E.initiate(names.placeTrade, { account: "ACC-3", symbol: "apple", side: "hold", quantity: "4" }), "")).toBeUndefined()
    await store.close()
  })
})
