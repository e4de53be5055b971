/**
 * The order-statistics counter through the public testkit, as a user's test would be: beside it a
 * producer declared here with the SDK (the counter knows only the events, not who announces them).
 * BATON_PROPERTY_RUNS raises the runs.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Baton, Effect, Schema } from "@baton/sdk"
import { Testkit, fc, type App } from "@baton/sdk/testkit"
import app, { OrderCreated, OrderShipped, OrderStatsUpdated, PaymentApplied, PaymentDenied, type Stats } from "../src/app.ts"

const numRuns = Number(process.env.BATON_PROPERTY_RUNS ?? 8)

/** A sale as the producer sees it: paid (and maybe shipped) or denied, for an amount. */
const Sale = Baton.initiating(
  "sale",
  Schema.Struct({ outcome: Schema.Literals(["paid", "shipped", "denied"]), amount: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 10_000 })) })
)
const producer = Baton.app({
  name: "sales",
  initiating: [Sale],
  events: [OrderCreated, PaymentApplied, PaymentDenied, OrderShipped],
  processors: [
    Baton.processor({
      name: "sales",
      on: Sale,
      handle: ({ data }) =>
        Effect.succeed([
          OrderCreated.make({}),
          ...(data.outcome === "denied" ? [PaymentDenied.make({})] : [PaymentApplied.make({ amount: data.amount })]),
          ...(data.outcome === "shipped" ? [OrderShipped.make({})] : [])
        ])
    })
  ]
})

describe("order-stats, on the real runtime (Testkit.start) beside a producer", () => {
  let kit: App
  beforeAll(async () => {
    kit = await Testkit.start([producer, app])
  })
  afterAll(async () => {
    await kit?.stop()
  })

  const table = async (): Promise<Stats> => {
    const rows = await kit.query("SELECT metric, value FROM order_stats")
    const of = (m: string) => Number(rows.find((r) => r.metric === m)?.value)
    return { placed: of("placed"), paid: of("paid"), denied: of("denied"), shipped: of("shipped"), revenue: of("revenue") }
  }

  it("for any sales: the counters equal the orders, payments, denials and shipments announced, and the revenue their sum", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(Testkit.arbitrary(Sale), { minLength: 1, maxLength: 6 }), async (sales) => {
        const before = await table()
        const flows = []
        for (const sale of sales) flows.push(await kit.flow(await kit.publish(Sale, sale)))
        const count = (p: (s: (typeof sales)[number]) => boolean) => sales.filter(p).length
        const expected: Stats = {
          placed: before.placed + sales.length,
          paid: before.paid + count((s) => s.outcome !== "denied"),
          denied: before.denied + count((s) => s.outcome === "denied"),
          shipped: before.shipped + count((s) => s.outcome === "shipped"),
          revenue: before.revenue + sales.filter((s) => s.outcome !== "denied").reduce((n, s) => n + s.amount, 0)
        }
        expect(await table()).toEqual(expected)
        for (const [n, flow] of flows.entries()) {
          expect(flow.rejections).toEqual([])
          // One update for each event the counter read, each caused by that event.
          const read = sales[n]!.outcome === "shipped" ? 3 : 2
          expect(flow.count(OrderStatsUpdated)).toBe(read)
          for (const u of flow.byType(OrderStatsUpdated)) expect([OrderCreated.type, PaymentApplied.type, PaymentDenied.type, OrderShipped.type]).toContain(flow.cause(u)?.type)
        }
        // The last update announced says what the table says.
        const last = flows.at(-1)!.data(OrderStatsUpdated)
        expect(last.some((s) => s.placed === expected.placed && s.revenue === expected.revenue)).toBe(true)
      }),
      { numRuns }
    )
  })
})
