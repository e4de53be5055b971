import { describe, expect, it } from "vitest"
import { connect as tcpConnect } from "node:net"
import mqtt from "mqtt"
import { getJson, sleep, useRuntime } from "./support.ts"

const order = (n: number) =>
  JSON.stringify({ id: crypto.randomUUID(), type: "place-order", data: { customerId: `ab-${n}`, email: "a@example.com", items: [{ sku: "BOOK-3", qty: 1, price: 1 }], payment: { card: "4242424242424242" } } })

/** A raw MQTT 3.1.1 client that connects, subscribes to `events/#` and `errors/#` at QoS 1, then never reads its socket again. */
const stuckSubscriber = async (port: number) => {
  const socket = tcpConnect(port, "127.0.0.1")
  await new Promise<void>((r) => socket.once("connect", () => r()))
  const id = Buffer.from("stuck-reader")
  // CONNECT: protocol "MQTT" level 4, clean session, keepalive 0, client id.
  const body = Buffer.concat([Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x02, 0, 0, 0, id.length]), id])
  socket.write(Buffer.concat([Buffer.from([0x10, body.length]), body]))
  // SUBSCRIBE packet id 1, two filters at QoS 1.
  const filter = (f: string) => Buffer.concat([Buffer.from([0, f.length]), Buffer.from(f), Buffer.from([1])])
  const sub = Buffer.concat([Buffer.from([0, 1]), filter("events/#"), filter("errors/#")])
  socket.write(Buffer.concat([Buffer.from([0x82, sub.length]), sub]))
  await sleep(200)
  socket.pause()
  return socket
}

describe("slow and abusive clients", () => {
  const ctx = useRuntime({ publishRate: 300, drainTimeoutMs: 1000 })

  it("a subscriber that never reads or acknowledges and a flooding publisher do not stall other clients", async () => {
    const stuck = await stuckSubscriber(ctx.h.runtime.mqttPort!)
    const neverAcks = await mqtt.connectAsync(ctx.h.url, { protocolVersion: 4, reconnectPeriod: 0, clientId: "never-acks" })
    neverAcks.handleMessage = () => {} // takes messages, never acknowledges them
    await neverAcks.subscribeAsync("events/#", { qos: 1 })

    // The flood: QoS 0 garbage as fast as the socket takes it, for the whole test; each one becomes a
    // rejection carrying its 8 KB payload, which fills the stuck reader's socket quickly.
    const garbage = "x".repeat(8000)
    const flooder = await mqtt.connectAsync(ctx.h.url, { protocolVersion: 4, reconnectPeriod: 0, clientId: "flooder" })
    let flooding = process.env.BATON_ABUSE_NO_FLOOD !== "1"
    let flooded = 0
    void (async () => {
      while (flooding) {
        flooder.publish("initiate/place-order", garbage, { qos: 0 })
        flooded++
        if (flooded % 100 === 0) await sleep(1)
      }
    })()

    const orders = Number(process.env.BATON_ABUSE_ORDERS ?? 500)
    const started = Date.now()
    const publisher = await mqtt.connectAsync(ctx.h.url, { protocolVersion: 4, reconnectPeriod: 0 })
    for (let n = 0; n < orders; n++) await publisher.publishAsync("initiate/place-order", order(n), { qos: 1 })
    await ctx.events.until((all) => all.filter((r) => r.topic === "events/order-shipped").length >= orders, 60_000, `${orders} orders shipped`)
    const elapsed = Date.now() - started
    flooding = false

    expect(elapsed).toBeLessThan(60_000)
    expect((await getJson(ctx.h.runtime.httpPort, "/healthz")).status).toBe(200)
    const errors = await getJson(ctx.h.runtime.httpPort, "/errors")
    // The stuck reader was cut off once its socket stayed full past the drain timeout.
    expect(errors.body.security["slow-consumer-refused"]).toBeGreaterThan(0)
    // The flooder was slowed down to its rate, and said so.
    expect(errors.body.security["publish-throttled"]).toBeGreaterThan(0)
    expect(ctx.h.logger.lines.some((l) => l.includes("publish rate limit hit") && l.includes("client=flooder"))).toBe(true)
    stuck.destroy()
    neverAcks.end(true)
    flooder.end(true)
    publisher.end(true)
  })
})
