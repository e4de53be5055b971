import { describe, expect, it } from "vitest"
import mqtt from "mqtt"
import { Log, type Envelope } from "@baton/core"
import { make, type Mode } from "@baton/request-reply"
import { useRuntime } from "./support.ts"
import { cards } from "./orders.ts"

const order = (sku = "BOOK-3") => ({ customerId: `rr-${crypto.randomUUID().slice(0, 6)}`, email: "rr@example.com", items: [{ sku, qty: 1, price: 7 }], payment: { card: cards.approved } })

describe.each(["broker", "mediator"] as const)("request-reply, %s topology", (topology) => {
  const ctx = useRuntime({ topology })

  it.each<Mode>(["correlation", "temporary"])("%s mode: a place-order request is answered with its order id", async (mode) => {
    const clientId = `rr-${mode}-${crypto.randomUUID().slice(0, 6)}`
    const client = await mqtt.connectAsync(ctx.h.url, { protocolVersion: 4, clientId, reconnectPeriod: 0 })
    const requester = await make(client, { clientId, mode, timeoutMs: 10_000, logger: Log.silent })
    const replies = await Promise.all([order(), order(), order()].map((o) => requester.request("initiate/place-order", o)))
    for (const reply of replies) {
      expect(reply.type).toBe("reply")
      expect(reply.data).toMatchObject({ orderId: expect.stringMatching(/^ORD-\d{6}$/), total: 7 })
      const store = ctx.h.runtime.store
      const row = await store.run(store.query("SELECT correlation_id FROM orders WHERE id = ?").get((reply.data as { orderId: string }).orderId))
      expect(row?.correlation_id).toBe(reply.correlationId)
    }
    await requester.close()
    await client.endAsync()
  })

  it("a reply's correlationId is the request's id, also when the request carries a correlationId of its own", async () => {
    const clientId = `rr-raw-${crypto.randomUUID().slice(0, 6)}`
    const client = await mqtt.connectAsync(ctx.h.url, { protocolVersion: 4, clientId, reconnectPeriod: 0 })
    await client.subscribeAsync(`reply/${clientId}/#`, { qos: 1 })
    // Whatever arrives first on the reply topic is checked: a wrong correlation fails here, not by a timeout.
    const first = new Promise<Envelope.Envelope>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no reply at all within 10 s")), 10_000)
      client.once("message", (_topic, payload) => {
        clearTimeout(timer)
        resolve(JSON.parse(payload.toString()) as Envelope.Envelope)
      })
    })
    const id = crypto.randomUUID()
    const correlationId = `conversation-${crypto.randomUUID()}`
    await client.publishAsync("initiate/place-order", JSON.stringify({ id, correlationId, type: "place-order", replyTo: `reply/${clientId}/replies`, data: order() }), { qos: 1 })
    const reply = await first
    expect(reply.type).toBe("reply")
    expect(reply.correlationId, "a reply's correlationId is the request's id, not the request's correlationId").toBe(id)
    await client.endAsync()
  })

  it("refuses a replyTo that is not the publisher's own reply topic", async () => {
    const client = await mqtt.connectAsync(ctx.h.url, { protocolVersion: 4, clientId: "honest", reconnectPeriod: 0 })
    const id = crypto.randomUUID()
    await client.publishAsync("initiate/place-order", JSON.stringify({ id, type: "place-order", replyTo: "reply/someone-else/replies", data: order() }), { qos: 1 })
    await ctx.events.until((all) => all.some((r) => r.topic === "errors/initiate/place-order" && JSON.stringify(r.envelope.data).includes("must start with reply/honest/")), 5000, "the refusal")
    await client.endAsync()
  })
})

describe("request-reply: a failed request is answered too", () => {
  const ctx = useRuntime()

  it("answers request-failed with the reason when the order cannot be placed", async () => {
    const clientId = `rr-fail-${crypto.randomUUID().slice(0, 6)}`
    const client = await mqtt.connectAsync(ctx.h.url, { protocolVersion: 4, clientId, reconnectPeriod: 0 })
    const requester = await make(client, { clientId, timeoutMs: 10_000, logger: Log.silent })
    const reply = await requester.request("initiate/place-order", order("NO-SUCH-SKU"))
    expect(reply.type).toBe("request-failed")
    expect((reply.data as { error: string }).error).toMatch(/unknown SKU NO-SUCH-SKU/)
    await requester.close()
    await client.endAsync()
  })
})

describe("request-reply: a reply nobody subscribes to", () => {
  const ctx = useRuntime()
  const lost = () => ctx.h.logger.lines.filter((l) => l.includes("reply lost: nobody subscribes to its topic"))

  it("is logged once, with its topic and request; a reply someone subscribes to is not", async () => {
    const clientId = `rr-lost-${crypto.randomUUID().slice(0, 6)}`
    const client = await mqtt.connectAsync(ctx.h.url, { protocolVersion: 4, clientId, reconnectPeriod: 0 })
    const send = async (id: string, replyTo: string) => {
      await client.publishAsync("initiate/place-order", JSON.stringify({ id, type: "place-order", replyTo, data: order() }), { qos: 1 })
      await ctx.events.until((all) => all.some((r) => r.topic === "events/order-created" && r.envelope.correlationId === id), 10_000, `order-created of ${id}`)
      await ctx.h.runtime.idle()
    }
    // Nobody subscribes to reply/<id>/nobody: the reply is lost, with one line.
    const unheard = crypto.randomUUID()
    await send(unheard, `reply/${clientId}/nobody`)
    expect(lost()).toHaveLength(1)
    expect(lost()[0]).toContain(`topic=reply/${clientId}/nobody`)
    expect(lost()[0]).toContain(`request=${unheard}`)
    // Subscribed: the reply arrives and nothing more is logged.
    await client.subscribeAsync(`reply/${clientId}/#`, { qos: 0 })
    const reply = new Promise<string>((resolve) => client.on("message", (topic, payload) => topic.startsWith("reply/") && resolve(payload.toString())))
    const heard = crypto.randomUUID()
    await send(heard, `reply/${clientId}/replies`)
    expect(JSON.parse(await reply)).toMatchObject({ type: "reply", correlationId: heard })
    expect(lost()).toHaveLength(1)
    await client.endAsync()
  })
})
