/** The comments app through the public testkit, as a user's test would be. BATON_PROPERTY_RUNS raises the runs. */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Testkit, fc, type App } from "@baton/sdk/testkit"
import app, { Checks, CommentAccepted, CommentPublished, CommentRejected, EmailSent, PostComment, type PostComment as Post } from "../src/app.ts"

const numRuns = Number(process.env.BATON_PROPERTY_RUNS ?? 10)

/** Any post of the schema, its text now and then made to fail a checker. */
const post: fc.Arbitrary<Post> = fc
  .tuple(Testkit.arbitrary(PostComment), fc.constantFrom("", " you smeg", " the the", " see https://elsewhere.example", " fine words"))
  .map(([p, tail]) => ({ ...p, text: (p.text + tail).slice(-4000) }))

describe("comments, on the real runtime (Testkit.start)", () => {
  let kit: App
  beforeAll(async () => {
    // Checkers of 5 ms each rather than a second; no SMTP: the mail stays in the store.
    kit = await Testkit.start(app, { env: { BATON_CHECK_LATENCY_MS: "5", BATON_SMTP_URL: "" } })
  })
  afterAll(async () => {
    await kit?.stop()
  })

  it("for any comment: accepted, then published if it passes the three checkers in turn, else rejected by the first that fails, and the author told once", async () => {
    await fc.assert(
      fc.asyncProperty(post, async (p) => {
        const sent = await kit.publish(PostComment, p)
        const flow = await kit.flow(sent)
        expect(flow.rejections).toEqual([])
        expect(flow.data(CommentAccepted)).toEqual([{ commentId: sent.id, ...p }])
        const failed = Checks.checks.map((check) => ({ check, verdict: Checks.run[check](p.text) })).find((c) => !c.verdict.ok)
        if (failed === undefined) {
          expect(flow.data(CommentPublished)).toEqual([{ commentId: sent.id, author: p.author, email: p.email, status: "published" }])
          expect(flow.count(CommentRejected)).toBe(0)
        } else {
          const reason = failed.verdict.ok ? "" : failed.verdict.reason
          expect(flow.data(CommentRejected)).toEqual([{ commentId: sent.id, author: p.author, email: p.email, status: "rejected", check: failed.check, reason }])
          expect(flow.count(CommentPublished)).toBe(0)
          // The checkers after the failing one do not announce a verdict.
          expect(flow.count(`${Checks.checks.at(-1)}-checked`)).toBe(failed.check === "context" ? 1 : 0)
        }
        expect(flow.data(EmailSent)).toEqual([expect.objectContaining({ commentId: sent.id, to: p.email, template: failed === undefined ? "comment-published" : "comment-rejected" })])
        expect(await kit.query("SELECT status, reason FROM comments WHERE id = ?", sent.id)).toEqual([
          { status: failed === undefined ? "published" : "rejected", reason: failed === undefined || failed.verdict.ok ? null : failed.verdict.reason }
        ])
      }),
      { numRuns, endOnFailure: true }
    )
  })
})
