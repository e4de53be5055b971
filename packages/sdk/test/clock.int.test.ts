// Testkit.clock: the app's context clock is the test's; it moves only when the test moves it.
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Baton, Effect, Schema, SqlClient } from "@baton/sdk"
import { Testkit, fc } from "@baton/sdk/testkit"

const Visit = Baton.initiating("clock-visit", Schema.Struct({ who: Schema.NonEmptyString }))
const Visited = Baton.event("clock-visited", Schema.Struct({ who: Schema.String, at: Schema.String }))

// An app that stamps what it records with its context's clock (as an app would for an expiry).
const app = Baton.app("clock-test", (ctx) => ({
  name: "clock-test",
  initiating: [Visit],
  events: [Visited],
  migrations: [{ name: "clock-test-1", sql: "CREATE TABLE clock_visits (id TEXT PRIMARY KEY, who TEXT NOT NULL, at TEXT NOT NULL)" }],
  processors: [
    Baton.processor({
      name: "clock-visit",
      on: Visit,
      handle: (event) =>
        Effect.gen(function* () {
          const sql = yield* SqlClient.SqlClient
          const at = ctx.clock.now().toISOString()
          yield* sql`INSERT INTO clock_visits (id, who, at) VALUES (${ctx.clock.newId()}, ${event.data.who}, ${at})`
          return [Visited.make({ who: event.data.who, at })]
        })
    })
  ]
}))

describe("Testkit.clock", () => {
  const clock = Testkit.clock(new Date("2026-01-01T00:00:00.000Z"))
  let kit: Awaited<ReturnType<typeof Testkit.start>>
  beforeAll(async () => {
    kit = await Testkit.start(app, { clock })
  })
  afterAll(async () => kit?.stop())

  it("for any steps the test moves it by, the app stamps each visit with the test's time, not the system's", async () => {
    let expected = clock.now().getTime()
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 10 * 24 * 3_600_000 }), async (step) => {
        expected += step
        clock.advance(step)
        const who = `v-${crypto.randomUUID()}`
        const flow = await kit.flow(await kit.publish(Visit, { who }), { until: Visited.type })
        const at = new Date(expected).toISOString()
        expect(flow.data(Visited)).toEqual([{ who, at }])
        expect(await kit.query("SELECT at FROM clock_visits WHERE who = ?", who)).toEqual([{ at }])
      }),
      { numRuns: Number(process.env.BATON_PROPERTY_RUNS ?? 6) }
    )
    clock.set(new Date("2030-06-01T12:00:00.000Z"))
    const flow = await kit.flow(await kit.publish(Visit, { who: "after-set" }), { until: Visited.type })
    expect(flow.data(Visited)).toEqual([{ who: "after-set", at: "2030-06-01T12:00:00.000Z" }])
  })
})
