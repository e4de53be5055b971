import { describe, expect, it } from "vitest"
import { configure } from "@baton/comments"
import { collect, connect, useRuntime } from "./support.ts"

const latency = 150

const post = async (port: number, body: unknown) => {
  const res = await fetch(`http://127.0.0.1:${port}/comments`, { method: "POST", body: JSON.stringify(body) })
  return { status: res.status, body: (await res.json()) as Record<string, any> }
}

describe("asynchronous accept: comment posting", () => {
  // The app module as a user would run it, its checkers given a short latency.
  const ctx = useRuntime({}, { apps: () => [configure({ checkLatencyMs: latency })] })

  it("accepts a comment before its checks have decided it, then publishes it and tells the author", async () => {
    const id = crypto.randomUUID()
    await ctx.client.publishAsync("initiate/post-comment", JSON.stringify({ id, type: "post-comment", data: { author: "ann", email: "ann@example.com", text: "A fine chapter." } }), { qos: 1 })
    // The PUBACK means durable, not decided: at the PUBACK the comment is not yet stored or still
    // being checked (its three checks take 150 ms each, one after the other).
    const store = ctx.h.runtime.store
    const atPuback = await store.run(store.query("SELECT status FROM comments WHERE id = ?").get(id))
    expect(atPuback?.status ?? "not yet stored").toMatch(/^(not yet stored|checking)$/)
    await ctx.events.until((all) => all.some((r) => r.envelope.correlationId === id && r.envelope.type === "email-sent"), 10_000, "the author's e-mail")
    const mine = ctx.events.received.filter((r) => r.envelope.correlationId === id).map((r) => r.envelope.type)
    expect(mine).toEqual(["comment-accepted", "profanity-checked", "grammar-checked", "context-checked", "comment-published", "email-sent"])
    const row = await store.run(store.query("SELECT status FROM comments WHERE id = ?").get(id))
    expect(row?.status).toBe("published")
  })

  it("rejects a profane comment after it was accepted, with the reason, and notifies the author", async () => {
    const id = crypto.randomUUID()
    await ctx.client.publishAsync("initiate/post-comment", JSON.stringify({ id, type: "post-comment", data: { author: "bob", email: "bob@example.com", text: "What a frak of a plot" } }), { qos: 1 })
    await ctx.events.until((all) => all.some((r) => r.envelope.correlationId === id && r.envelope.type === "email-sent"), 10_000, "the author's e-mail")
    const rejected = ctx.events.received.find((r) => r.envelope.correlationId === id && r.envelope.type === "comment-rejected")
    expect(rejected?.envelope.data).toMatchObject({ commentId: id, status: "rejected", check: "profanity", reason: 'contains the profanity "frak"' })
    // The other checkers never ran for it.
    expect(ctx.events.received.some((r) => r.envelope.correlationId === id && r.envelope.type === "grammar-checked")).toBe(false)
    const store = ctx.h.runtime.store
    const mail = await store.run(store.query("SELECT recipient, template FROM comment_emails WHERE comment_id = ?").all(id))
    expect(mail).toEqual([{ recipient: "bob@example.com", template: "comment-rejected" }])
  })

  it("POST /comments does the same work synchronously: it answers only when all checks are done", async () => {
    const started = performance.now()
    const ok = await post(ctx.h.runtime.httpPort, { author: "cy", email: "cy@example.com", text: "Loved it." })
    expect(performance.now() - started).toBeGreaterThanOrEqual(3 * latency)
    expect(ok).toMatchObject({ status: 200, body: { status: "published" } })
    const bad = await post(ctx.h.runtime.httpPort, { author: "cy", email: "cy@example.com", text: "see www.spam.example" })
    expect(bad).toMatchObject({ status: 200, body: { status: "rejected", check: "context", reason: "links to other sites are not allowed" } })
    const invalid = await post(ctx.h.runtime.httpPort, { author: "", email: "nope", text: "x" })
    expect(invalid.status).toBe(400)
    expect(invalid.body.reason).toMatch(/email: must be an e-mail address/)
  })
})

describe("broadcasting: a processor added beside the order-entry app", () => {
  const ctx = useRuntime({ apps: ["order-entry", "order-stats"] })

  it("counts orders from events the producers already announce, without any change to them", async () => {
    const watcher = await connect(ctx.h.url)
    const stats = await collect(watcher, ["events/order-stats-updated"])
    const place = (card: string) =>
      ctx.client.publishAsync("initiate/place-order", JSON.stringify({ customerId: "stats", email: "s@example.com", items: [{ sku: "BOOK-4", qty: 2, price: 5 }], payment: { card } }), { qos: 1 })
    await Promise.all([place("4242424242424242"), place("4242424242424242"), place("4000000000000002")])
    await stats.until((all) => all.some((r) => (r.envelope.data as { shipped: number }).shipped === 2 && (r.envelope.data as { denied: number }).denied === 1), 10_000, "the counts")
    await ctx.h.runtime.idle()
    const store = ctx.h.runtime.store
    const metrics = await store.run(store.query("SELECT metric, value FROM order_stats").all())
    expect(Object.fromEntries(metrics.map((r) => [String(r.metric), Number(r.value)]))).toEqual({ placed: 3, paid: 2, denied: 1, shipped: 2, revenue: 20 })
    // The order-entry processors did exactly the work they do without the counter.
    const done = await store.run(store.query("SELECT COUNT(*) AS n FROM inbox WHERE processor = 'notification' AND status = 'done'").get())
    expect(Number(done?.n)).toBe(6)
    await watcher.endAsync()
  })
})
