import { describe, expect, it } from "vitest"
import { Effect } from "effect"
import { Envelope as E, type Envelope, type Processor } from "@baton/core"
import { Sqlite, type Store } from "@baton/store"
import { configure, names } from "@baton/comments"

const mailer = () => {
  const sent: Array<{ readonly to: string; readonly subject: string }> = []
  return { sent, mailer: { transport: "store" as const, send: async (m: { to: string; subject: string }) => (sent.push(m), { messageId: `m-${sent.length}`, message: "rendered" }) } }
}

const step = async (store: Store, p: Processor, event: Envelope.Envelope) => {
  const prepared = p.prepare === undefined ? undefined : await Effect.runPromise(p.prepare(event))
  return store.transaction(p.handle(event, prepared))
}

describe("comments over SQLite", () => {
  it("accepts, checks, decides and e-mails once; POST /comments does it synchronously", async () => {
    const store = await Sqlite.open({ path: ":memory:" })
    const m = mailer()
    const app = await configure({ mailer: m.mailer, checkLatencyMs: 1 }).make({ ...store, env: {}, clock: E.systemClock })
    const byName = (n: string) => app.processors.find((p) => p.name === n)!
    const post = E.initiate(names.postComment, { author: "ann", email: "ann@example.com", text: "What the frak" })
    let events: ReadonlyArray<Envelope.Next> = await step(store, byName("comment-intake"), post)
    expect(events).toMatchObject([{ type: names.accepted, key: post.correlationId }])
    let cause = post
    for (const name of ["profanity-checker", "grammar-checker", "context-checker"]) {
      const event = E.next(cause, events[0]!)
      events = await step(store, byName(name), event)
      if (events.length === 0) break
      cause = event
      if (name === "profanity-checker") {
        const decided = await step(store, byName("comment-publisher"), E.next(cause, events[0]!))
        expect(decided).toMatchObject([{ type: names.rejected, data: { status: "rejected", check: "profanity" } }])
        const rejected = E.next(cause, decided[0]!)
        const notified = await step(store, byName("comment-notifier"), rejected)
        expect(notified).toMatchObject([{ type: "email-sent", data: { template: "comment-rejected", messageId: "m-1" } }])
        // Again (a redelivery): no second mail, the same announcement.
        expect(await step(store, byName("comment-notifier"), rejected)).toEqual(notified)
        expect(m.sent).toHaveLength(1)
      }
    }
    // The grammar checker gets the rejected verdict and checks nothing more.
    expect(events).toEqual([])
    const row = await store.run(store.query("SELECT status, reason, via FROM comments WHERE id = ?").get(post.correlationId))
    expect(row).toEqual({ status: "rejected", reason: 'contains the profanity "frak"', via: "mqtt" })

    const res = await app.http!["POST /comments"]!({ author: "bob", email: "bob@example.com", text: "Nice chapter" })
    expect(res).toMatchObject({ status: 200, body: { status: "published" } })
    const id = (res.body as { commentId: string }).commentId
    expect(await store.run(store.query("SELECT status, via FROM comments WHERE id = ?").get(id))).toEqual({ status: "published", via: "http" })
    expect(await store.run(store.query("SELECT template FROM comment_emails WHERE cause_id = ?").get(`http:${id}`))).toEqual({ template: "comment-published" })
    expect((await app.http!["POST /comments"]!({ author: "" })).status).toBe(400)
    await store.close()
  })
})
