import { describe, expect, it } from "vitest"
import { Effect } from "effect"
import type { Processor } from "@baton/core"
import { checkChain, complete, order, payload } from "./orders.ts"
import fc from "fast-check"
import { getJson, useRuntime } from "./support.ts"

/** A processor added beside the app's, that crashes on the orders of one customer. */
const poisonPill = (): Processor & { seen: Array<string> } => {
  const seen: Array<string> = []
  return {
    name: "poison-pill",
    consumes: ["order-created"],
    seen,
    handle: (event) =>
      Effect.sync(() => {
        const data = event.data as { customerId: string; orderId: string }
        seen.push(data.orderId)
        if (data.customerId.startsWith("poison")) throw new Error(`cannot digest order ${data.orderId}`)
        return [{ type: "order-tasted", data: { orderId: data.orderId } }]
      })
  }
}

describe("supervision", () => {
  const pill = poisonPill()

  const ctx = useRuntime({ maxAttempts: 3, restartDelayMs: 20 }, { processors: () => [pill] })

  it("restarts a crashing processor, sends the poisoned message to the error path, and keeps the flow going", async () => {
    const good = fc.sample(order, 6).map((o) => ({ o: { ...o, asEnvelope: true }, id: crypto.randomUUID() }))
    const poisonId = crypto.randomUUID()
    const poisonOrder = { customerId: "poison-1", email: "p@example.com", items: [{ sku: "BOOK-3", qty: 1, price: 2 }], payment: { card: "4242424242424242" } }
    await ctx.client.publishAsync("initiate/place-order", JSON.stringify({ id: poisonId, type: "place-order", data: poisonOrder }), { qos: 1 })
    for (const { o, id } of good) await ctx.client.publishAsync("initiate/place-order", payload(o, id), { qos: 1 })

    await ctx.events.until((all) => all.some((r) => r.topic === "errors/events/order-created"), 15_000, "the poisoned message on the error path")
    const rejected = ctx.events.received.find((r) => r.topic === "errors/events/order-created")!
    expect(rejected.envelope.type).toBe("message-rejected")
    expect(rejected.envelope.correlationId).toBe(poisonId)
    expect(rejected.envelope.data).toMatchObject({
      kind: "processing-failed",
      processor: "poison-pill",
      attempts: 3,
      reason: expect.stringContaining("cannot digest order")
    })
    const poisonedOrderId = (ctx.events.received.find((r) => r.envelope.type === "order-created" && r.envelope.correlationId === poisonId)!.envelope.data as { orderId: string }).orderId
    // (Seen once in CI on a loaded host: 4 runs of the handler for 3 attempts. Not explained yet:
    // the runtime's lines about it are printed with the failure.)
    expect(
      pill.seen.filter((id) => id === poisonedOrderId),
      `the handler's runs for the poisoned order; the runtime's lines about poison-pill:\n${ctx.h.logger.lines.filter((l) => l.includes("poison-pill")).join("\n")}`
    ).toHaveLength(3)

    // Every other order completes, including its message to the restarted processor.
    await ctx.events.until((all) => good.every(({ o, id }) => complete(o, id, all)), 15_000, "the good orders")
    await ctx.events.until((all) => all.filter((r) => r.envelope.type === "order-tasted").length === good.length, 15_000, "order-tasted")
    for (const { o, id } of good) checkChain(o, id, ctx.events.received)
    // The app's processors never saw the crash: the poisoned order's own chain completes too.
    await ctx.events.until((all) => all.some((r) => r.envelope.type === "order-shipped" && r.envelope.correlationId === poisonId), 10_000, "poisoned order shipped")

    // The third crash's restart comes after its back-off: the other orders, on other actors, need not wait for it.
    const restarts = () => ctx.h.runtime.actors.filter((a) => a.name.startsWith("poison-pill-")).reduce((n, a) => n + a.restarts(), 0)
    for (const deadline = Date.now() + 5_000; restarts() < 3 && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20))
    expect(restarts()).toBeGreaterThanOrEqual(3)
    expect(ctx.h.logger.lines.filter((l) => l.includes("processor crashed") && l.includes("poison-pill"))).toHaveLength(3)
    const recorded = await getJson(ctx.h.runtime.httpPort, "/errors")
    expect(recorded.body.counts["processing-failed"]).toBe(1)
    expect((await getJson(ctx.h.runtime.httpPort, "/healthz")).status).toBe(200)
  })
})
