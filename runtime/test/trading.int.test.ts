import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { getJson, propertyRuns, useRuntime, type Collector } from "./support.ts"
import { checkDrained, checkExecuted, checkOrderSoFar, corrected, openEntries, post, publishInOrder, settle, tradeArb, unblocked, unrepairable, waitFor, withIds, type Entry } from "./trading.ts"

describe("the workflow event pattern: trading advisor", () => {
  const ctx = useRuntime({ apps: ["trading"], parkMaxCount: 3, parkMaxAgeMs: 400 })
  const executed = async (account: string) =>
    (await ctx.h.runtime.store.run(ctx.h.runtime.store.query("SELECT trade_id FROM trades WHERE account = ? ORDER BY seq").all(account))).map((r) => String(r.trade_id))
  /** Whether `check` holds for every element, in turn. */
  const every = async <A>(xs: ReadonlyArray<A>, check: (x: A) => Promise<boolean>) => {
    for (const x of xs) if (!(await check(x))) return false
    return true
  }
  const idle = () => ctx.h.runtime.idle()
  const executedOf = async (accounts: ReadonlyArray<string>) => new Map(await Promise.all(accounts.map(async (a) => [a, await executed(a)] as const)))

  it("for any trades over several accounts, any of them malformed, resolved in any order: each account's trades execute once, in submitted order, and accounts without failures are never held back", async () => {
    const accounts = ["ACC-1", "ACC-2", "ACC-3", "ACC-4"]
    await fc.assert(
      fc.asyncProperty(fc.array(tradeArb(accounts), { minLength: 4, maxLength: 30 }), fc.array(fc.nat(), { minLength: 30, maxLength: 30 }), fc.array(fc.constantFrom(...accounts), { maxLength: 12 }), async (generated, priorities, lateAccounts) => {
        const trades = withIds(generated)
        // More trades arrive while the dashboard is being resolved and parked trades drain.
        const late = withIds(lateAccounts.map((account) => ({ account, kind: "ok" as const, resolution: "discard" as const })))
        let lateSent: Promise<void> = Promise.resolve()
        const port = ctx.h.runtime.httpPort
        await publishInOrder(ctx.client, trades)
        // Before anyone touches the dashboard, every trade not behind an unrepairable one executes.
        await waitFor(
          () =>
            every(accounts, async (a) => {
              const done = await executed(a)
              return unblocked(trades, a).every((id) => done.includes(id))
            }),
          "the unblocked trades"
        )
        const failing = trades.filter((t) => unrepairable.includes(t.kind))
        const byId = new Map(trades.map((t, n) => [t.id, { t, n }]))
        let resolved = 0
        while (resolved < failing.length) {
          let open: ReadonlyArray<Entry> = []
          const entries = async () => (open = (await openEntries(port)).filter((e) => byId.has(e.trail[0]!)))
          await settle(idle, async () => [await entries(), [...(await executedOf(accounts))]], async () => (await entries()).length > 0)
          if (open.length === 0) {
            // Stalled with failed trades left: say which rule broke.
            const so = await executedOf(accounts)
            checkOrderSoFar((a) => so.get(a) ?? [], trades)
            await checkDrained(ctx.h.runtime.store)
            throw new Error(`no dashboard entry for the ${failing.length - resolved} failed trade(s) left, and the runtime is idle`)
          }
          // Resolve the open entries in a generated order.
          const entry = [...open].sort((a, b) => (priorities[failing.findIndex((f) => f.id === a.trail[0])] ?? 0) - (priorities[failing.findIndex((f) => f.id === b.trail[0])] ?? 0))[0]!
          const { t, n } = byId.get(entry.trail[0]!)!
          // While it is open, none of the account's later trades has executed.
          const later = trades.filter((x) => x.account === t.account).slice(trades.filter((x) => x.account === t.account).indexOf(t) + 1)
          const done = await executed(t.account)
          expect(later.filter((x) => done.includes(x.id))).toEqual([])
          const answer = t.resolution === "resubmit" ? await post(port, `/dashboard/${entry.id}/resubmit`, corrected(t, n)) : await post(port, `/dashboard/${entry.id}/discard`, { reason: "test" })
          expect(answer.status).toBe(200)
          if (resolved === 0) lateSent = publishInOrder(ctx.client, late, trades.length)
          resolved++
        }
        if (failing.length === 0) lateSent = publishInOrder(ctx.client, late, trades.length)
        await lateSent
        const all = [...trades, ...late]
        for (const [n, t] of late.entries()) byId.set(t.id, { t, n: trades.length + n })
        const expected = all.length - failing.filter((t) => t.resolution === "discard").length
        const executedCount = async () => {
          let sum = 0
          for (const a of accounts) sum += (await executed(a)).filter((id) => byId.has(id)).length
          return sum
        }
        await settle(idle, executedCount, async () => (await executedCount()) === expected)
        await ctx.h.runtime.idle()
        const byAccount = await executedOf([...new Set(all.map((t) => t.account))])
        checkOrderSoFar((a) => byAccount.get(a) ?? [], all)
        await checkDrained(ctx.h.runtime.store)
        checkExecuted((a) => byAccount.get(a) ?? [], all)
        expect((await getJson(port, "/dashboard")).body.held).toEqual([])
      }),
      // No shrinking: a failed run leaves the shared runtime's keys held, so smaller runs after it prove nothing.
      { numRuns: propertyRuns, endOnFailure: true }
    )
  })

  it("keeps other accounts trading while one is parked, alerts past the limits, and drains the parked trades in order once the failure is discarded", async () => {
    const port = ctx.h.runtime.httpPort
    const parked = withIds([{ account: "ACC-7", kind: "negative", resolution: "discard" }, ...Array.from({ length: 4 }, () => ({ account: "ACC-7", kind: "ok" as const, resolution: "discard" as const }))])
    const others = withIds(Array.from({ length: 20 }, () => ({ account: "ACC-8", kind: "ok" as const, resolution: "discard" as const })))
    await publishInOrder(ctx.client, parked)
    await publishInOrder(ctx.client, others)
    await waitFor(async () => {
      const done = await executed("ACC-8")
      return others.every((t) => done.includes(t.id))
    }, "ACC-8's trades")
    const dashboard = (await getJson(port, "/dashboard")).body
    expect(dashboard.held).toEqual([expect.objectContaining({ processor: "trade-execution", key: "ACC-7", failedId: parked[0]!.id, parked: 4 })])
    const before = await executed("ACC-7")
    expect(parked.filter((t) => before.includes(t.id))).toEqual([])
    const events = ctx.events as Collector
    await events.until((all) => all.some((r) => r.envelope.type === "parking-alert" && (r.envelope.data as { reason: string }).reason === "count"), 5000, "a count alert")
    await events.until((all) => all.some((r) => r.envelope.type === "parking-alert" && (r.envelope.data as { reason: string }).reason === "age"), 5000, "an age alert")
    const entry = dashboard.entries.find((e: Entry) => e.trail[0] === parked[0]!.id) as Entry
    expect(entry.error).toMatch(/quantity must be a positive whole number/)

    expect((await post(port, `/dashboard/${entry.id}/discard`, {})).status).toBe(400)
    expect((await post(port, `/dashboard/nope/resubmit`)).status).toBe(404)
    expect((await getJson(port, "/dashboard?status=bogus")).status).toBe(400)
    expect((await post(port, `/dashboard/${entry.id}/discard`, { reason: "customer cancelled" })).status).toBe(200)
    expect((await post(port, `/dashboard/${entry.id}/discard`, { reason: "again" })).status).toBe(409)
    await settle(
      idle,
      () => executed("ACC-7"),
      async () => {
        const done = await executed("ACC-7")
        return parked.slice(1).every((t) => done.includes(t.id))
      }
    )
    await checkDrained(ctx.h.runtime.store)
    expect((await executed("ACC-7")).filter((id) => parked.some((t) => t.id === id)), "ACC-7's parked trades execute in submitted order once the failure is discarded").toEqual(
      parked.slice(1).map((t) => t.id)
    )
    for (const type of ["key-held", "dashboard-entry-added", "message-parked", "dashboard-entry-discarded", "key-released"])
      expect(events.received.some((r) => r.envelope.type === type && (r.envelope.data as { key?: string }).key === "ACC-7"), type).toBe(true)
  })

  it("sends a trade for an unknown account to the dashboard with the reason, and repairs a lower-case symbol without a person", async () => {
    const id = crypto.randomUUID()
    await ctx.client.publishAsync("initiate/place-trade", JSON.stringify({ id, type: "place-trade", data: { account: "ACC-404", symbol: "AAPL", side: "buy", quantity: 1 } }), { qos: 1 })
    await waitFor(async () => (await openEntries(ctx.h.runtime.httpPort)).some((e) => e.trail[0] === id && e.error === "unknown account ACC-404"), "the unknown account's entry")
    const fixed = crypto.randomUUID()
    await ctx.client.publishAsync("initiate/place-trade", JSON.stringify({ id: fixed, type: "place-trade", data: { account: "ACC-9", symbol: "amazon", side: "buy", quantity: "4" } }), { qos: 1 })
    await waitFor(async () => (await executed("ACC-9")).includes(fixed), "the repaired trade")
    const row = await ctx.h.runtime.store.run(ctx.h.runtime.store.query("SELECT symbol, quantity FROM trades WHERE trade_id = ?").get(fixed))
    expect(row === undefined ? undefined : { ...row, quantity: Number(row.quantity) }).toEqual({ symbol: "AMZN", quantity: 4 })
    // Newest first: the property's runs before it on the shared runtime may have left more than a page (100) of repaired entries.
    const repaired = (await getJson(ctx.h.runtime.httpPort, "/dashboard?status=repaired&order=desc")).body.entries.find((e: Entry) => e.trail[0] === fixed)
    expect(repaired).toMatchObject({ status: "repaired", key: "ACC-9" })
  })
})
