/**
 * The flows API and the resubmission of processing-failed rejections, against a real runtime:
 * orders through the embedded broker, the graph read back from the store and the relay's tap.
 */
import { randomUUID } from "node:crypto"
import { afterAll, describe, expect, it } from "vitest"
import { freshSchema } from "@baton/testkit/postgres"
import type { Config } from "../src/Config.ts"
import { Effect } from "effect"
import type { Processor } from "@baton/core"
import { cards } from "./orders.ts"
import { getJson, useRuntime } from "./support.ts"


const order = (id: string, customerId: string, card: string = cards.approved) =>
  JSON.stringify({ id, type: "place-order", data: { customerId, email: "f@example.com", items: [{ sku: "BOOK-1", qty: 1, price: 3 }], payment: { card } } })

const post = async (port: number, path: string, body?: unknown) => {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { method: "POST", ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { "content-type": "application/json" } }) })
  return { status: res.status, body: (await res.json()) as Record<string, any> }
}

/** Fails on an order-created whose customer id starts with `bad-`; records the others. */
const picky: Processor = {
  name: "picky",
  consumes: ["order-created"],
  handle: (event) =>
    Effect.suspend(() => {
      const data = event.data as { customerId: string }
      if (data.customerId.startsWith("bad-")) return Effect.die(new Error(`customer ${data.customerId} refused`))
      return Effect.succeed([{ type: "picky-recorded", data: { customerId: data.customerId } }])
    })
}

/** The flows API reads the inbox with LIKE patterns: run it on both stores (PostgreSQL is a one-instance cluster). */
const stores: ReadonlyArray<readonly [string, () => Promise<Partial<Config>>]> = [
  ["embedded SQLite", async () => ({})],
  [
    "PostgreSQL",
    async () => {
      const db = await freshSchema()
      drops.push(db.drop)
      return { databaseUrl: db.url }
    }
  ]
]
const drops: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const drop of drops) await drop()
})

describe.each(stores)("flows API on %s", (_name, database) => {
  const ctx = useRuntime(async () => ({ maxAttempts: 1, ...(await database()) }), { processors: () => [picky] })

  it("shows one order's causation graph, each event with the processors that received it, and finds it by key, type and the stuck query", async () => {
    const id = randomUUID()
    await ctx.client.publishAsync("initiate/place-order", order(id, "flow-1"), { qos: 1 })
    await ctx.events.until((all) => all.some((r) => r.envelope.correlationId === id && r.envelope.type === "order-shipped"), 15_000, "order-shipped")
    await ctx.h.runtime.idle()
    const port = ctx.h.runtime.httpPort
    const { status, body } = await getJson(port, `/flows/${id}`)
    expect(status).toBe(200)
    const types = body.events.map((e: { type: string }) => e.type)
    for (const t of ["place-order", "order-created", "inventory-updated", "payment-applied", "order-fulfilled", "order-shipped", "picky-recorded"]) expect(types).toContain(t)
    const byId = new Map(body.events.map((e: any) => [e.id, e]))
    // Every event but the initiating one hangs from another event of the flow.
    for (const e of body.events as Array<any>) {
      expect(e.correlationId).toBe(id)
      if (e.id !== id) expect(byId.has(e.causationId), `${e.type}'s cause is in the graph`).toBe(true)
    }
    const created = body.events.find((e: any) => e.type === "order-created")
    expect(created.deliveries.map((d: any) => d.processor)).toContain("picky")
    expect(created.deliveries.every((d: any) => d.status === "done")).toBe(true)
    // order-shipped ends the chain: no local processor consumes it, the relay's tap has it.
    expect(body.summary).toMatchObject({ pending: 0, failed: 0, initiating: { id, type: "place-order" } })
    // The card number never leaves the runtime whole.
    expect(JSON.stringify(body)).not.toContain(cards.approved)
    // Nor does the inbox keep it once the message is processed: it keeps the masked envelope.
    const store = ctx.h.runtime.store
    const kept = await store.run(store.query("SELECT payload FROM inbox WHERE envelope_id = ? AND status = 'done'").all(id))
    expect(kept.length).toBeGreaterThan(0)
    for (const r of kept) expect(String(r.payload)).toContain(`"card":"****${cards.approved.slice(-4)}"`)

    const byKey = await getJson(port, `/flows?key=${encodeURIComponent(created.key)}`)
    expect(byKey.body.flows.map((f: any) => f.correlationId)).toEqual([id])
    const byType = await getJson(port, `/flows?type=order-shipped&minutes=5`)
    expect(byType.body.flows.map((f: any) => f.correlationId)).toContain(id)
    const byCorrelation = await getJson(port, `/flows?correlationId=${id}`)
    expect(byCorrelation.body.flows).toHaveLength(1)
    const notShipped = await getJson(port, `/flows/stuck?type=place-order&notReached=order-shipped&minutes=5`)
    expect(notShipped.body.flows.map((f: any) => f.correlationId)).not.toContain(id)
    const notRepaired = await getJson(port, `/flows/stuck?type=place-order&notReached=no-such-event&minutes=5`)
    expect(notRepaired.body.flows.map((f: any) => f.correlationId)).toContain(id)

    expect((await getJson(port, "/flows/stuck?type=place-order")).status).toBe(400)
    expect((await getJson(port, "/flows?since=yesterday")).status).toBe(400)
    expect((await getJson(port, "/flows?limit=0")).status).toBe(400)
    const unknown = await getJson(port, `/flows/${randomUUID()}`)
    expect(unknown.body.events).toEqual([])
  })

  it("resubmits a processing-failed rejection to its processor, corrected, once; other rejections are refused", async () => {
    const id = randomUUID()
    await ctx.client.publishAsync("initiate/place-order", order(id, "bad-customer"), { qos: 1 })
    await ctx.events.until((all) => all.some((r) => r.envelope.correlationId === id && r.topic === "errors/events/order-created"), 15_000, "the rejection")
    const port = ctx.h.runtime.httpPort
    const flow = (await getJson(port, `/flows/${id}`)).body
    const rejection = flow.rejections.find((r: any) => r.processor === "picky")
    expect(rejection).toMatchObject({ kind: "processing-failed", resubmittable: true })
    expect(flow.summary.failed).toBe(1)
    const created = flow.events.find((e: any) => e.type === "order-created")
    expect(rejection.envelopeId).toBe(created.id)

    const corrected = { ...created.data, customerId: "good-customer", payment: { card: cards.approved } }
    const resubmitted = await post(port, `/errors/${rejection.id}/resubmit`, corrected)
    expect(resubmitted.status).toBe(200)
    expect(resubmitted.body).toMatchObject({ processor: "picky", failedId: created.id, corrected: true, operation: expect.any(String) })
    await ctx.events.until((all) => all.some((r) => r.envelope.correlationId === id && r.envelope.type === "picky-recorded"), 10_000, "picky-recorded")
    const recorded = ctx.events.received.find((r) => r.envelope.correlationId === id && r.envelope.type === "picky-recorded")!
    expect(recorded.envelope.data).toEqual({ customerId: "good-customer" })
    expect(recorded.envelope.causationId).toBe(resubmitted.body.resubmittedId)

    // Only to that processor: the order-entry processors did not see it again.
    await ctx.h.runtime.idle()
    const again = (await getJson(port, `/flows/${id}`)).body
    const resent = again.events.find((e: any) => e.id === resubmitted.body.resubmittedId)
    expect(resent.causationId).toBe(created.id)
    expect(resent.deliveries.map((d: any) => [d.processor, d.status])).toEqual([["picky", "done"]])
    expect(again.events.filter((e: any) => e.type === "order-shipped")).toHaveLength(1)
    expect(again.rejections.find((r: any) => r.id === rejection.id)).toMatchObject({ resubmittable: false, resubmittedAs: resubmitted.body.resubmittedId })

    // Once; the operations log has it, the card masked.
    expect((await post(port, `/errors/${rejection.id}/resubmit`)).status).toBe(409)
    const ops = (await getJson(port, `/operations?target=${rejection.id}`)).body.operations
    expect(ops.map((o: any) => [o.action, o.status])).toEqual(expect.arrayContaining([["rejection-resubmit", 200], ["rejection-resubmit", 409]]))
    expect(JSON.stringify(ops)).not.toContain(cards.approved)

    expect((await post(port, `/errors/no-such-rejection/resubmit`)).status).toBe(404)
    await ctx.client.publishAsync("initiate/place-order", "{not json", { qos: 1 })
    await ctx.events.until((all) => all.some((r) => r.topic === "errors/initiate/place-order"), 10_000, "a malformed rejection")
    const malformed = (await getJson(port, "/errors")).body.recent.find((r: any) => r.kind === "malformed-json")
    const refused = await post(port, `/errors/${malformed.id}/resubmit`)
    expect(refused.status).toBe(409)
    expect(refused.body.reason).toMatch(/only processing-failed/)
  })

  it("serves the console without a token and redirects / to it", async () => {
    const port = ctx.h.runtime.httpPort
    const root = await fetch(`http://127.0.0.1:${port}/`, { redirect: "manual" })
    expect(root.status).toBe(302)
    expect(root.headers.get("location")).toBe("/console/")
    const page = await fetch(`http://127.0.0.1:${port}/console/`)
    expect(page.headers.get("content-type")).toMatch(/text\/html/)
    expect(await page.text()).toContain("app.js")
    expect((await fetch(`http://127.0.0.1:${port}/console/app.js`)).headers.get("content-type")).toMatch(/javascript/)
    expect((await fetch(`http://127.0.0.1:${port}/console/..%2fsrc%2fRuntime.ts`)).status).toBe(404)
    expect((await fetch(`http://127.0.0.1:${port}/console/nope.js`)).status).toBe(404)
  })
})
