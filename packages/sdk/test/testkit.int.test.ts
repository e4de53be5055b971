import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Testkit, fc, type App } from "@baton/sdk/testkit"
import tally, { Tallied, Tally } from "./fixtures/tally.ts"

const fixture = fileURLToPath(new URL("./fixtures/tally.ts", import.meta.url))
const rowsOf = async (kit: { query: App["query"] }, id: string) => Number((await kit.query("SELECT COUNT(*) AS n FROM tally WHERE id = ?", id))[0]?.n)

describe("Testkit.start: an app in process, on the real runtime", () => {
  let kit: App
  beforeAll(async () => {
    kit = await Testkit.start(tally)
  })
  afterAll(async () => {
    await kit?.stop()
  })

  it("for any tally: one tallied event caused by it, the effect once, the total of its account", async () => {
    const totals = new Map<string, number>()
    await fc.assert(
      fc.asyncProperty(Testkit.arbitrary(Tally), async (t) => {
        const sent = await kit.publish(Tally, t)
        const flow = await kit.flow(sent)
        if (t.amount < 0) {
          expect(flow.has(Tallied)).toBe(false)
          expect(flow.rejections.map((r) => r.reason).join()).toContain(`amount ${t.amount} is negative`)
          expect(await rowsOf(kit, sent.id)).toBe(0)
          return
        }
        totals.set(t.account, (totals.get(t.account) ?? 0) + t.amount)
        expect(flow.count(Tallied)).toBe(1)
        expect(flow.data(Tallied)).toEqual([{ account: t.account, total: totals.get(t.account) }])
        expect(flow.cause(flow.byType(Tallied)[0]!)?.id).toBe(sent.id)
        expect(await rowsOf(kit, sent.id)).toBe(1)
      }),
      { numRuns: 8 }
    )
  })

  it("a tally its processor rejects: a rejection in its flow, no event, no effect", async () => {
    const sent = await kit.publish(Tally, { account: "neg", amount: -3 })
    const flow = await kit.flow(sent)
    expect(flow.rejections.map((r) => [r.kind, r.processor, r.reason])).toEqual([["processing-failed", "tally", expect.stringContaining("amount -3 is negative")]])
    expect(flow.count(Tallied)).toBe(0)
    expect(await rowsOf(kit, sent.id)).toBe(0)
  })

  it("the same event id published twice is processed once", async () => {
    const sent = await kit.publish(Tally, { account: "dup", amount: 3 })
    await kit.publish(Tally, { account: "dup", amount: 3 }, { id: sent.id })
    const flow = await kit.flow(sent)
    expect(flow.count(Tallied)).toBe(1)
    expect(await rowsOf(kit, sent.id)).toBe(1)
  })

  it("flow(until) that never comes fails in time, saying what the flow has", async () => {
    const sent = await kit.publish(Tally, { account: "late", amount: 1 })
    await expect(kit.flow(sent, { until: "never-announced", timeoutMs: 1500 })).rejects.toThrow(/has no 'never-announced' event after 1500 ms; it has .*tallied/)
  })
})

describe("Testkit.crashing: killed at a kill point, restarted on the same data", () => {
  for (const at of ["handler", "processed-committed", "ingress-before-commit"] as const) {
    it(`at ${at}: the tally survives, its effect and its event once`, async () => {
      const crash = await Testkit.crashing(fixture, { at })
      try {
        const sending = crash.publish(Tally, { account: "a", amount: 7 })
        await crash.crashed()
        await crash.restart()
        const sent = await sending
        const flow = await crash.flow(sent, { until: Tallied, timeoutMs: 20_000 })
        expect(flow.data(Tallied)).toEqual([{ account: "a", total: 7 }])
        // Settled: nothing more comes of it.
        expect((await crash.flow(sent)).count(Tallied)).toBe(1)
        expect(await rowsOf(crash, sent.id)).toBe(1)
      } catch (error) {
        throw new Error(`${(error as Error).message}\n${crash.output()}`)
      } finally {
        await crash.stop()
      }
    })
  }
})
