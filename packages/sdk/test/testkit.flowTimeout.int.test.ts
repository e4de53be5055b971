/**
 * `flow(sent, { timeoutMs })` (settling: no `until`) is bounded by its timeout even when the app
 * cannot become idle: `App.idle` waits for a failed relay drain's retry, and here every retry
 * fails again (a trigger of the real SQLite store refusing the delete of what was published), so
 * `idle` never resolves. The flow must then fail "did not settle" in time, not hang.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Testkit, type App } from "@baton/sdk/testkit"
import tally, { Tally } from "./fixtures/tally.ts"

describe("Testkit flow: its timeout bounds the wait for the app to settle", () => {
  let kit: App
  beforeAll(async () => {
    kit = await Testkit.start(tally)
  })
  afterAll(async () => {
    await kit?.query("DROP TRIGGER IF EXISTS hold").catch(() => undefined)
    await kit?.stop()
  })

  it("a relay whose every retry fails: flow fails after its timeoutMs, idle() still waiting", async () => {
    await kit.query("CREATE TRIGGER hold BEFORE DELETE ON outbox BEGIN SELECT RAISE(ABORT, 'held by the test'); END")
    const sent = await kit.publish(Tally, { account: "held", amount: 2 })
    const hung = new Promise<"hung">((r) => setTimeout(() => r("hung"), 6000).unref())
    const idle = await Promise.race([kit.idle().then(() => "idle" as const), new Promise<"waiting">((r) => setTimeout(() => r("waiting"), 1500).unref())])
    expect(idle, "the relay keeps retrying: the app is not idle").toBe("waiting")
    const started = Date.now()
    const outcome = await Promise.race([
      kit.flow(sent, { timeoutMs: 1000 }).then(
        () => "settled" as const,
        (error: Error) => error.message
      ),
      hung
    ])
    expect(outcome).toMatch(/did not settle after 1000 ms/)
    expect(Date.now() - started).toBeLessThan(3000)
  }, 20_000)
})
