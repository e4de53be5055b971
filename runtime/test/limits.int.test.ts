import { describe, expect, it } from "vitest"
import mqtt, { type MqttClient } from "mqtt"
import { getJson, sleep, useRuntime } from "./support.ts"

const order = (n: number) =>
  JSON.stringify({ customerId: `lim-${n}`, email: "l@example.com", items: [{ sku: "BOOK-2", qty: 1, price: 1 }], payment: { card: "4242424242424242" } })

describe("connection and in-flight limits", () => {
  const ctx = useRuntime({ maxConnections: 4, maxInflight: 5 })

  it("refuses connections past the limit, and says so", async () => {
    // The harness's own client holds one connection.
    const held: Array<MqttClient> = []
    for (let i = 0; i < 3; i++) held.push(await mqtt.connectAsync(ctx.h.url, { protocolVersion: 4, reconnectPeriod: 0 }))
    const extra = mqtt.connect(ctx.h.url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 1500 })
    const connected = await new Promise<boolean>((r) => {
      extra.once("connect", () => r(true))
      extra.once("close", () => r(false))
      setTimeout(() => r(false), 2000)
    })
    extra.end(true)
    expect(connected).toBe(false)
    expect(ctx.h.logger.lines.some((l) => l.includes("connect refused") && l.includes("connection limit of 4 reached"))).toBe(true)
    for (const c of held) c.end(true)
    await sleep(200)
  })

  it("drops messages for a client that leaves too many unacknowledged, without holding back the others", async () => {
    const lazy = await mqtt.connectAsync(ctx.h.url, { protocolVersion: 4, reconnectPeriod: 0, clientId: "lazy-acker" })
    const seen: Array<string> = []
    // Reads every message, never sends a PUBACK.
    lazy.handleMessage = (packet) => void seen.push(packet.topic)
    await lazy.subscribeAsync("events/order-created", { qos: 1 })
    const publisher = await mqtt.connectAsync(ctx.h.url, { protocolVersion: 4, reconnectPeriod: 0 })
    for (let n = 0; n < 20; n++) await publisher.publishAsync("initiate/place-order", order(n), { qos: 1 })
    // The other clients are not held back: every order is processed (the collector's own in-flight
    // window is as small as the lazy client's here, so the store is the witness, not its events).
    const store = ctx.h.runtime.store
    const shipped = async () => Number((await store.run(store.query("SELECT COUNT(*) AS n FROM shipments WHERE order_id IN (SELECT id FROM orders WHERE customer_id LIKE 'lim-%')").get()))?.n)
    const until = Date.now() + 15_000
    while ((await shipped()) < 20 && Date.now() < until) await sleep(50)
    await ctx.h.runtime.idle()
    const errors = await getJson(ctx.h.runtime.httpPort, "/errors")
    expect(await shipped()).toBe(20)
    expect(errors.body.security["inflight-refused"]).toBeGreaterThanOrEqual(15)
    expect(seen.length).toBeLessThanOrEqual(5)
    expect(ctx.h.logger.lines.some((l) => l.includes("inflight refused") && l.includes("client=lazy-acker"))).toBe(true)
    lazy.end(true)
    publisher.end(true)
  })
})
