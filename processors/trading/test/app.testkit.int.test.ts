/** The trading app through the public testkit, as a user's test would be. BATON_PROPERTY_RUNS raises the runs. */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Testkit, fc, type App, type Sent } from "@baton/sdk/testkit"
import app, { PlaceTrade, quotes, TradeExecuted, type PlaceTrade as Trade } from "../src/app.ts"

const numRuns = Number(process.env.BATON_PROPERTY_RUNS ?? 8)

/** Valid trades: the schema's, on known accounts and symbols, a positive whole quantity. */
const trade = (accounts: ReadonlyArray<string>): fc.Arbitrary<Trade> =>
  fc
    .tuple(Testkit.arbitrary(PlaceTrade), fc.constantFrom(...accounts), fc.constantFrom(...Object.keys(quotes)), fc.integer({ min: 1, max: 10_000 }))
    .map(([t, account, symbol, quantity]) => ({ ...t, account, symbol, quantity }))

describe("trading, on the real runtime (Testkit.start)", () => {
  let kit: App
  beforeAll(async () => {
    kit = await Testkit.start(app)
  })
  afterAll(async () => {
    await kit?.stop()
  })

  const executed = async (account: string) => (await kit.query("SELECT trade_id FROM trades WHERE account = ? ORDER BY seq", account)).map((r) => String(r.trade_id))
  const dashboard = async () => (await (await fetch(`${kit.httpUrl}/dashboard`)).json()) as { entries: Array<{ id: string; key: string; error: string; trail: Array<string> }>; held: Array<{ key: string; parked: number }> }

  it("for any trades over several accounts: each executes once, and each account's in the order submitted, numbered without gaps", async () => {
    const accounts = ["ACC-1", "ACC-2", "ACC-3"]
    await fc.assert(
      fc.asyncProperty(fc.array(trade(accounts), { minLength: 1, maxLength: 12 }), async (trades) => {
        const before = new Map(await Promise.all(accounts.map(async (a) => [a, (await executed(a)).length] as const)))
        const sent: Array<Sent> = []
        for (const t of trades) sent.push(await kit.publish(PlaceTrade, t))
        const done = await Promise.all(sent.map(async (s) => (await kit.flow(s, { until: TradeExecuted })).data(TradeExecuted)))
        for (const a of accounts) {
          const mine = trades.flatMap((t, n) => (t.account === a ? [{ id: sent[n]!.id, executed: done[n]! }] : []))
          expect(mine.map((m) => m.executed.length)).toEqual(mine.map(() => 1))
          // Numbered 1, 2, 3, … per account, in the order submitted.
          expect(mine.map((m) => m.executed[0]!.seq)).toEqual(mine.map((_, n) => before.get(a)! + n + 1))
          expect((await executed(a)).slice(before.get(a)!)).toEqual(mine.map((m) => m.id))
        }
      }),
      { numRuns, endOnFailure: true }
    )
  })

  it("a trade that fails parks its account's later trades, others keep trading; discarded, the parked ones execute in order", async () => {
    const bad = await kit.publish(PlaceTrade, { account: "ACC-7", symbol: "AAPL", side: "buy", quantity: -5 })
    const parked: Array<Sent> = []
    for (const quantity of [1, 2, 3]) parked.push(await kit.publish(PlaceTrade, { account: "ACC-7", symbol: "MSFT", side: "buy", quantity }))
    const other = await kit.flow(await kit.publish(PlaceTrade, { account: "ACC-8", symbol: "GOOG", side: "sell", quantity: 4 }), { until: TradeExecuted })
    expect(other.count(TradeExecuted)).toBe(1)
    await kit.idle()
    const open = await dashboard()
    const entry = open.entries.find((e) => e.trail[0] === bad.id)
    expect(entry).toMatchObject({ key: "ACC-7", error: expect.stringContaining("quantity must be a positive whole number") })
    expect(open.held).toEqual(expect.arrayContaining([expect.objectContaining({ key: "ACC-7", parked: 3 })]))
    expect(await executed("ACC-7")).toEqual([])

    const discarded = await fetch(`${kit.httpUrl}/dashboard/${entry!.id}/discard`, { method: "POST", body: JSON.stringify({ reason: "cancelled by the customer" }) })
    expect(discarded.status).toBe(200)
    for (const s of parked) await kit.flow(s, { until: TradeExecuted })
    expect(await executed("ACC-7")).toEqual(parked.map((s) => s.id))
    expect((await dashboard()).held.filter((h) => h.key === "ACC-7")).toEqual([])
  })
})
