import { afterAll, describe, expect, it } from "vitest"
import { randomUUID } from "node:crypto"
import type { MqttClient } from "mqtt"
import type { Config } from "../src/Config.ts"
import type * as Runtime from "../src/Runtime.ts"
import { getJson, useRuntime, type Collector, type Harness } from "./support.ts"
import { cards } from "./orders.ts"
import { freshSchema, query } from "@baton/testkit/postgres"
import { Effect } from "effect"
import type { Envelope, Processor } from "@baton/core"
import * as OrderEntry from "@baton/order-entry"
import * as Apps from "../src/Apps.ts"

const failingCard = "4000000000000119"

const placeOrder = (client: MqttClient, card: string, id = randomUUID()) =>
  client
    .publishAsync(
      "initiate/place-order",
      JSON.stringify({ id, type: "place-order", data: { customerId: `c-${id.slice(0, 8)}`, email: "m@example.com", items: [{ sku: "BOOK-1", qty: 2, price: 4.5 }], payment: { card } } }),
      { qos: 1 }
    )
    .then(() => id)

/** Reads the runtime's own store. */
const rows = (h: Harness, sql: string, ...params: ReadonlyArray<unknown>) => h.runtime.store.run(h.runtime.store.query(sql).all(...params))
const row = (h: Harness, sql: string, ...params: ReadonlyArray<unknown>) => h.runtime.store.run(h.runtime.store.query(sql).get(...params))

const ofWorkflow = (events: Collector, id: string, type: string) => events.received.filter((r) => r.envelope.correlationId === id && r.envelope.type === type)

const finished = (events: Collector, id: string) =>
  events.until((all) => all.some((r) => r.envelope.correlationId === id && r.envelope.type === "workflow-completed"), 15_000, `workflow ${id} to complete`)

const post = async (port: number, path: string, body?: string) => {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { method: "POST", ...(body === undefined ? {} : { body, headers: { "content-type": "application/json" } }) })
  return { status: res.status, body: (await res.json()) as Record<string, any> }
}

const useMediator = (overrides: () => Promise<Partial<Config>>, options: Runtime.Options = {}) =>
  useRuntime(async () => ({ topology: "mediator", ...(await overrides()) }), options)

const stores: ReadonlyArray<readonly [string, () => Promise<{ readonly url?: string; readonly drop: () => Promise<void> }>]> = [
  ["embedded SQLite", async () => ({ drop: async () => {} })],
  ["PostgreSQL", freshSchema]
]

describe.each(stores)("mediator topology, workflow state in %s", (_name, database) => {
  let db: { readonly url?: string; readonly drop: () => Promise<void> }
  const ctx = useMediator(async () => {
    db = await database()
    return db.url === undefined ? {} : { databaseUrl: db.url }
  })
  afterAll(async () => db?.drop())

  const emails = async (orderId: string) => (await rows(ctx.h, "SELECT template FROM emails WHERE order_id = ? ORDER BY template", orderId)).map((r) => String(r.template))
  const orderOf = async (id: string) => String((await row(ctx.h, "SELECT id FROM orders WHERE correlation_id = ?", id))?.id)
  const count = async (sql: string, ...params: ReadonlyArray<unknown>) => Number((await row(ctx.h, sql, ...params))?.n)
  const stateRows = async () =>
    db.url === undefined
      ? count("SELECT COUNT(*) AS n FROM workflows")
      : Number((await query<{ n: string }>(db.url, "SELECT COUNT(*) AS n FROM workflows"))[0]?.n)

  it("runs an approved order through the five steps and deletes its state", async () => {
    const id = await placeOrder(ctx.client, cards.approved)
    await finished(ctx.events, id)
    const [done] = ofWorkflow(ctx.events, id, "workflow-completed")
    const orderId = await orderOf(id)
    expect(done?.envelope.data).toMatchObject({ workflowId: id, workflow: "place-order", outcome: "completed", orderId })
    const steps = ofWorkflow(ctx.events, id, "workflow-step-completed").map((r) => (r.envelope.data as { step: string }).step)
    expect(steps).toEqual(["1 (create-order)", "2 (payment-and-inventory)", "3 (fulfil-and-restock)", "4 (ship)", "5 (notify-shipped)"])
    // Every workflow event carries the workflow's id.
    for (const r of ctx.events.received.filter((r) => r.envelope.correlationId === id)) expect((r.envelope.data as { workflowId: string }).workflowId).toBe(id)
    expect(await emails(orderId)).toEqual(["order-confirmation", "ready-to-ship", "shipped"])
    expect(await count("SELECT COUNT(*) AS n FROM shipments WHERE order_id = ?", orderId)).toBe(1)
    // Processors acknowledge to the mediator; they announce nothing to each other.
    expect(ctx.events.received.some((r) => r.envelope.correlationId === id && r.envelope.type === "order-created")).toBe(false)
    expect((await getJson(ctx.h.runtime.httpPort, `/workflows/${id}`)).status).toBe(404)
    expect(await stateRows()).toBe(0)
  })

  it("ends a declined order as denied, after asking the customer for another card", async () => {
    const id = await placeOrder(ctx.client, cards.declined)
    await finished(ctx.events, id)
    expect(ofWorkflow(ctx.events, id, "workflow-completed")[0]?.envelope.data).toMatchObject({ outcome: "denied" })
    const orderId = await orderOf(id)
    expect(await emails(orderId)).toEqual(["order-confirmation", "payment-method-declined"])
    expect(await count("SELECT COUNT(*) AS n FROM fulfillments WHERE order_id = ?", orderId)).toBe(0)
    // The compensating step ran: the stock of step 2 went back, once.
    const steps = ofWorkflow(ctx.events, id, "workflow-step-completed").map((r) => (r.envelope.data as { step: string }).step)
    expect(steps.at(-1)).toMatch(/release-stock-and-ask-for-another-card/)
    expect(await count("SELECT COUNT(*) AS n FROM stock_releases WHERE order_id = ?", orderId)).toBe(1)
  })

  it("stops a workflow whose payment fails, shows where, and restarts it at the failed step with a new card", async () => {
    const id = await placeOrder(ctx.client, failingCard)
    await ctx.events.until((all) => all.some((r) => r.envelope.correlationId === id && r.envelope.type === "workflow-failed"), 15_000, "workflow-failed")
    expect(ofWorkflow(ctx.events, id, "workflow-failed")[0]?.envelope.data).toMatchObject({ workflowId: id, step: "2 (payment-and-inventory)", command: "apply-payment" })
    const port = ctx.h.runtime.httpPort
    const listed = await getJson(port, "/workflows?status=failed")
    expect(listed.body.workflows.map((w: { id: string }) => w.id)).toContain(id)
    // Other commands of the step may still be in flight when it fails: wait for their acknowledgements.
    await ctx.h.runtime.idle()
    const failed = await getJson(port, `/workflows/${id}`)
    expect(failed.body).toMatchObject({ id, status: "failed", step: 2, failure: { command: "apply-payment", reason: expect.stringContaining("payment gateway error") } })
    expect(failed.body.input.payment.card).toBe("****0119")
    const byName = Object.fromEntries(failed.body.commands.map((c: { key: string; status: string }) => [c.key, c.status]))
    expect(byName).toEqual({ "main/1/create-order": "acked", "main/2/email-customer": "acked", "main/2/apply-payment": "failed", "main/2/adjust-inventory": "acked" })

    expect((await post(port, `/workflows/${id}/restart`, "{not json")).status).toBe(400)
    expect((await post(port, `/workflows/${id}/restart`, "[1]")).status).toBe(400)
    expect((await post(port, `/workflows/no-such-workflow/restart`)).status).toBe(404)
    const restarted = await post(port, `/workflows/${id}/restart`, JSON.stringify({ payment: { card: cards.approved } }))
    expect(restarted.status).toBe(200)
    await finished(ctx.events, id)
    expect(ofWorkflow(ctx.events, id, "workflow-completed")[0]?.envelope.data).toMatchObject({ outcome: "completed" })
    const orderId = await orderOf(id)
    // Completed steps were not run again: one order, one confirmation, one stock allocation.
    expect(await count("SELECT COUNT(*) AS n FROM orders WHERE correlation_id = ?", id)).toBe(1)
    expect(await emails(orderId)).toEqual(["order-confirmation", "ready-to-ship", "shipped"])
    expect(await count("SELECT COUNT(*) AS n FROM stock_allocations WHERE order_id = ?", orderId)).toBe(1)
    expect((await rows(ctx.h, "SELECT approved FROM payments WHERE order_id = ?", orderId)).map((r) => ({ approved: Number(r.approved) }))).toEqual([{ approved: 1 }])
    expect((await post(port, `/workflows/${id}/restart`)).status).toBe(404)
  })
})

describe("mediator topology: domains are supervised apart", () => {
  let faults = 0
  const ctx = useMediator(async () => ({ restartDelayMs: 300, maxAttempts: 5 }), {
    mediatorFault: (domain) => {
      if (domain === "order" && faults < 3) {
        faults++
        throw new Error(`order mediator fault ${faults}`)
      }
    }
  })

  it("registers a customer on the customer mediator while the order mediator is crashed and restarting", async () => {
    const orderId = await placeOrder(ctx.client, cards.approved)
    const registration = randomUUID()
    const customerId = `cust-${registration.slice(0, 6)}`
    await ctx.client.publishAsync("initiate/register-customer", JSON.stringify({ id: registration, type: "register-customer", data: { customerId, name: "Ada", email: "ada@example.com" } }), { qos: 1 })
    await finished(ctx.events, registration)
    // The customer workflow finished while the order mediator was still backing off.
    expect(ofWorkflow(ctx.events, orderId, "workflow-started")).toEqual([])
    expect(ofWorkflow(ctx.events, registration, "workflow-completed")[0]?.envelope.data).toMatchObject({ outcome: "completed", customerId })
    const mail = await rows(ctx.h, "SELECT template, recipient FROM customer_emails WHERE customer_id = ?", customerId)
    expect(mail).toEqual([{ template: "welcome", recipient: "ada@example.com" }])
    await finished(ctx.events, orderId)
    expect(faults).toBe(3)
    expect(ctx.h.runtime.actors.filter((a) => a.name.startsWith("order-mediator")).reduce((n, a) => n + a.restarts(), 0)).toBe(3)
  })

  it("updates a profile (two steps) and handles a simple event in one step on the simple mediator", async () => {
    const customerId = `cust-${randomUUID().slice(0, 6)}`
    await ctx.client.publishAsync("initiate/register-customer", JSON.stringify({ customerId, name: "Bo", email: "bo@example.com" }), { qos: 1 })
    await ctx.events.until((all) => all.some((r) => r.envelope.type === "workflow-completed" && (r.envelope.data as { customerId?: string }).customerId === customerId))
    await ctx.client.publishAsync("initiate/update-profile", JSON.stringify({ customerId, email: "bo@new.example.com" }), { qos: 1 })
    await ctx.events.until((all) => all.filter((r) => r.envelope.type === "workflow-completed" && (r.envelope.data as { customerId?: string }).customerId === customerId).length === 2)
    await ctx.client.publishAsync("initiate/unsubscribe", JSON.stringify({ customerId }), { qos: 1 })
    await ctx.events.until((all) => all.some((r) => r.envelope.type === "customer-unsubscribed" && (r.envelope.data as { customerId: string }).customerId === customerId))
    const customer = await row(ctx.h, "SELECT email, newsletter FROM customers WHERE id = ?", customerId)
    expect(customer === undefined ? undefined : { ...customer, newsletter: Number(customer.newsletter) }).toEqual({ email: "bo@new.example.com", newsletter: 0 })
    expect(await rows(ctx.h, "SELECT template, recipient FROM customer_emails WHERE customer_id = ? ORDER BY at", customerId)).toEqual([
      { template: "welcome", recipient: "bo@example.com" },
      { template: "profile-updated", recipient: "bo@new.example.com" }
    ])
  })

  it("answers bad workflow requests with a readable 4xx", async () => {
    const port = ctx.h.runtime.httpPort
    expect(await getJson(port, "/workflows/nope")).toMatchObject({ status: 404, body: { reason: expect.stringContaining("no workflow nope") } })
    const deleted = await fetch(`http://127.0.0.1:${port}/workflows/nope`, { method: "DELETE" })
    expect(deleted.status).toBe(405)
  })
})

describe("mediator topology: a card is charged once per order", () => {
  // The case that needs Payment's guard against an existing payment: the first send of
  // apply-payment is slower than the command timeout, so the workflow fails and is restarted (a
  // second command, a new envelope id), and the late original commits as well.
  let openGate = () => {}
  const gate = new Promise<void>((resolve) => (openGate = resolve))
  let authorisations = 0
  const ctx = useMediator(async () => ({ commandTimeoutMs: 300, commandAttempts: 1 }), {
    apps: async ({ store }) => {
      const ctx = Apps.context(store)
      const mailer = OrderEntry.Mailer.make()
      const app = await OrderEntry.makeApp({ mailer }).make(ctx)
      // Payment reads its clock once each time it charges the card (the payment's time): count them.
      const network: Envelope.Clock = { now: () => (authorisations++, new Date()), newId: () => randomUUID() }
      const payment = OrderEntry.Payment.make({ ...ctx, mailer, clock: network })
      // Slow before its transaction (outside it: the rest of the runtime goes on meanwhile).
      const slow: Processor = { ...payment, prepare: (event) => (event.id.endsWith("/apply-payment/1") ? Effect.promise(() => gate) : Effect.void) }
      return [{ ...app, processors: app.processors.map((p) => (p.name === "payment" ? slow : p)) }]
    }
  })
  afterAll(() => openGate())

  it("a payment slower than the command timeout, the workflow restarted, the late original committed too: one payment, one authorisation", async () => {
    const id = await placeOrder(ctx.client, cards.approved)
    await ctx.events.until((all) => all.some((r) => r.envelope.correlationId === id && r.envelope.type === "workflow-failed"), 15_000, "the payment's timeout")
    expect(ofWorkflow(ctx.events, id, "workflow-failed")[0]?.envelope.data).toMatchObject({ command: "apply-payment", reason: expect.stringContaining("no acknowledgement") })
    expect((await post(ctx.h.runtime.httpPort, `/workflows/${id}/restart`)).status).toBe(200)
    await ctx.events.until((all) => all.some((r) => r.envelope.correlationId === id && r.envelope.type === "workflow-restarted"), 5000, "the restart")
    openGate()
    await finished(ctx.events, id)
    await ctx.h.runtime.idle()
    expect(ofWorkflow(ctx.events, id, "workflow-completed")[0]?.envelope.data).toMatchObject({ outcome: "completed" })
    // Both sends of the command were processed: the late original and the restart's.
    const sends = await rows(ctx.h, "SELECT envelope_id, status FROM inbox WHERE processor = 'payment' AND envelope_id LIKE ? ORDER BY envelope_id", `${id}/%`)
    expect(sends.map((r) => [String(r.envelope_id).slice(id.length), r.status])).toEqual([["/main/2/apply-payment/1", "done"], ["/main/2/apply-payment/2", "done"]])
    const orderId = String((await row(ctx.h, "SELECT id FROM orders WHERE correlation_id = ?", id))?.id)
    const payments = await rows(ctx.h, 'SELECT "authorization" AS auth FROM payments WHERE order_id = ?', orderId)
    expect(payments, "one payment row per order").toHaveLength(1)
    expect(authorisations, "the card is authorised once per order").toBe(1)
    // What the workflow went on with is that payment's authorisation.
    const step2 = ofWorkflow(ctx.events, id, "workflow-step-completed").find((r) => (r.envelope.data as { step: string }).step.startsWith("2 "))
    const results = (step2?.envelope.data as { results: Record<string, ReadonlyArray<{ type: string; data: { authorization?: string } }>> }).results
    expect(results["apply-payment"]?.[0]?.data.authorization).toBe(payments[0]!.auth)
  })
})
