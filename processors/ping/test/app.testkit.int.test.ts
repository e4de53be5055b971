/** The ping app through the public testkit, as a user's test would be. BATON_PROPERTY_RUNS raises the runs. */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Testkit, fc, type App } from "@baton/sdk/testkit"
import app, { Ping, Pong } from "../src/app.ts"

const numRuns = Number(process.env.BATON_PROPERTY_RUNS ?? 10)

describe("ping, on the real runtime (Testkit.start)", () => {
  let kit: App
  beforeAll(async () => {
    kit = await Testkit.start(app)
  })
  afterAll(async () => {
    await kit?.stop()
  })

  it("for any ping: exactly one pong, with the ping's data, caused by the ping", async () => {
    await fc.assert(
      fc.asyncProperty(Testkit.arbitrary(Ping), async (data) => {
        const sent = await kit.publish(Ping, data)
        const flow = await kit.flow(sent)
        expect(flow.rejections).toEqual([])
        expect(flow.count(Pong)).toBe(1)
        // The data as it travels (JSON: -0 arrives as 0).
        expect(flow.data(Pong)).toEqual([JSON.parse(JSON.stringify(data))])
        expect(flow.cause(flow.byType(Pong)[0]!)?.id).toBe(sent.id)
        expect(flow.count()).toBe(2)
      }),
      { numRuns }
    )
  })
})
