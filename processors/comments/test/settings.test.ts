import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { Envelope as E } from "@baton/core"
import { Sqlite } from "@baton/store"
import app, { checkLatencyOf } from "@baton/comments/app"

describe("comments: its settings, from the environment", () => {
  it("BATON_CHECK_LATENCY_MS is any whole number of 0 or more; a second when unset or empty", () => {
    expect(checkLatencyOf({})).toBe(1000)
    expect(checkLatencyOf({ BATON_CHECK_LATENCY_MS: "" })).toBe(1000)
    fc.assert(fc.property(fc.nat(), (n) => checkLatencyOf({ BATON_CHECK_LATENCY_MS: String(n) }) === n))
  })

  it("anything else is one line naming the variable and the value", () => {
    const bad = fc.oneof(fc.integer({ max: -1 }).map(String), fc.double({ noInteger: true }).map(String), fc.stringMatching(/^[a-z ]{1,8}$/))
    fc.assert(
      fc.property(bad, (raw) => {
        expect(() => checkLatencyOf({ BATON_CHECK_LATENCY_MS: raw })).toThrow(`BATON_CHECK_LATENCY_MS must be a whole number of 0 or more, got '${raw}'`)
      })
    )
  })

  it("the app reads them at start: its checkers take the latency given, and a bad value stops the start", async () => {
    const store = await Sqlite.open({ path: ":memory:" })
    const context = (env: Record<string, string>) => ({ ...store, env, clock: E.systemClock })
    await expect(app.make(context({ BATON_CHECK_LATENCY_MS: "soon" }))).rejects.toThrow("BATON_CHECK_LATENCY_MS must be a whole number of 0 or more, got 'soon'")
    const comments = await app.make(context({ BATON_CHECK_LATENCY_MS: "120" }))
    const started = performance.now()
    const res = await comments.http!["POST /comments"]!({ author: "dee", email: "dee@example.com", text: "Well argued." })
    expect(performance.now() - started).toBeGreaterThanOrEqual(3 * 120)
    expect(res).toMatchObject({ status: 200, body: { status: "published" } })
    // Without BATON_SMTP_URL the mail is rendered and kept in the store.
    const mail = await store.run(store.query("SELECT template, message FROM comment_emails WHERE comment_id = ?").get((res.body as { commentId: string }).commentId))
    expect(mail).toMatchObject({ template: "comment-published", message: expect.stringContaining("dee@example.com") })
    await store.close()
  })
})
