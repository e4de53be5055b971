/**
 * On the embedded broker, an event no subscriber would get (none connected, no persistent
 * session's filter) is written to no outbox and published to nobody; the flows view still shows
 * it. One a client subscribes to, even a persistent session that is offline, goes out as before.
 */
import { randomUUID } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import mqtt from "mqtt"
import { cards } from "./orders.ts"
import { connect, getJson, sleep, startRuntime, type Harness } from "./support.ts"

const order = (id: string) =>
  JSON.stringify({ id, type: "place-order", data: { customerId: `aud-${id.slice(0, 8)}`, email: "a@example.com", items: [{ sku: "BOOK-1", qty: 1, price: 3 }], payment: { card: cards.approved } } })

/** Outbox rows written so far (the store's statement count by text). */
const outboxInserts = async (port: number): Promise<number> => {
  const { body } = await getJson(port, "/healthz?statements=1")
  return (body.statementTexts as Array<{ text: string; count: number }>).filter((t) => t.text.startsWith("INSERT INTO outbox")).reduce((n, t) => n + t.count, 0)
}

const flowTypes = async (port: number, id: string): Promise<ReadonlyArray<string>> => (await getJson(port, `/flows/${id}`)).body.events.map((e: { type: string }) => e.type)

const eventually = async (what: string, check: () => Promise<boolean>, timeoutMs = 15_000) => {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

describe("events nobody subscribes to, on the embedded broker", () => {
  let h: Harness
  beforeAll(async () => {
    h = await startRuntime()
  })
  afterAll(async () => {
    await h?.stop()
  })

  it("skip the outbox and still show in the flow; a subscribed one, even by an offline persistent session, goes out", async () => {
    const port = h.runtime.httpPort
    const client = await connect(h.url)
    const created: Array<string> = []
    client.on("message", (_t, payload) => created.push((JSON.parse(payload.toString()) as { correlationId: string }).correlationId))
    await client.subscribeAsync("events/order-created", { qos: 1 })

    const first = randomUUID()
    const before = await outboxInserts(port)
    await client.publishAsync("initiate/place-order", order(first), { qos: 1 })
    await eventually("the first order shipped, in its flow", async () => (await flowTypes(port, first)).includes("order-shipped"))
    await h.runtime.idle()
    expect(created).toContain(first)
    // Only order-created had a subscriber: the other events of the chain wrote no outbox row.
    expect(await outboxInserts(port)).toBe(before + 1)
    const types = await flowTypes(port, first)
    for (const t of ["order-created", "inventory-updated", "payment-applied", "order-fulfilled", "order-shipped"]) expect(types).toContain(t)

    // A persistent session subscribes to order-shipped and goes offline: it is still wanted.
    const watcherId = `watcher-${randomUUID().slice(0, 8)}`
    const watcher = await mqtt.connectAsync(h.url, { protocolVersion: 4, clientId: watcherId, clean: false, reconnectPeriod: 0 })
    await watcher.subscribeAsync("events/order-shipped", { qos: 1 })
    await watcher.endAsync()
    const second = randomUUID()
    const middle = await outboxInserts(port)
    await client.publishAsync("initiate/place-order", order(second), { qos: 1 })
    await eventually("the second order shipped, in its flow", async () => (await flowTypes(port, second)).includes("order-shipped"))
    await h.runtime.idle()
    expect(await outboxInserts(port)).toBe(middle + 2)
    // Queued for the session while it was offline.
    const shipped: Array<string> = []
    const back = mqtt.connect(h.url, { protocolVersion: 4, clientId: watcherId, clean: false, reconnectPeriod: 0, manualConnect: true })
    back.on("message", (_t, payload) => shipped.push((JSON.parse(payload.toString()) as { correlationId: string }).correlationId))
    back.connect()
    await eventually("the queued order-shipped", () => Promise.resolve(shipped.includes(second)))
    await back.endAsync()
    await client.endAsync()
  })
})
