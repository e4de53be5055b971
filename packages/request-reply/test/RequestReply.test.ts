import { afterAll, beforeAll, describe, expect, it, vi } from "vitest"
import fc from "fast-check"
import mqtt, { type MqttClient } from "mqtt"
import { Log } from "@baton/core"
import { EmbeddedBroker } from "@baton/broker-aedes"
import { RequestTimeout, make, type Mode } from "@baton/request-reply"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 4) * 2
const timeoutMs = 200

describe("request-reply on a real Aedes broker", () => {
  let broker: EmbeddedBroker.EmbeddedBroker
  let responder: MqttClient
  const connect = (clientId: string) => mqtt.connectAsync(`mqtt://127.0.0.1:${broker.mqttPort}`, { protocolVersion: 4, clientId, reconnectPeriod: 0 })

  beforeAll(async () => {
    broker = await EmbeddedBroker.start({ host: "127.0.0.1", mqttPort: 0, logger: Log.silent })
    responder = await connect("responder")
    // Echoes each request after the delay it asks for, so replies come back out of order.
    responder.on("message", (_topic, payload) => {
      const request = JSON.parse(payload.toString()) as { id: string; replyTo: string; data: { n: string; delayMs: number } }
      setTimeout(() => {
        const reply = { id: crypto.randomUUID(), type: "reply", correlationId: request.id, causationId: request.id, key: request.id, occurredAt: new Date().toISOString(), data: { echo: request.data.n } }
        void responder.publishAsync(request.replyTo, JSON.stringify(reply), { qos: 0 })
      }, request.data.delayMs)
    })
    await responder.subscribeAsync("rpc/echo", { qos: 1 })
  })
  afterAll(async () => {
    await responder?.endAsync()
    await broker?.close()
  })

  it.each<Mode>(["correlation", "temporary"])(
    "%s mode: for N concurrent requests with random reply delays and reordering, each requester gets exactly its own reply or a timeout, and no temporary subscription is left",
    async (mode) => {
      await fc.assert(
        fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 3 * timeoutMs }), { minLength: 1, maxLength: 25 }), async (delays) => {
          const clientId = `req-${crypto.randomUUID().slice(0, 8)}`
          const client = await connect(clientId)
          const requester = await make(client, { clientId, mode, timeoutMs, logger: Log.silent })
          const outcomes = await Promise.all(
            delays.map((delayMs, i) =>
              requester.request("rpc/echo", { n: `${clientId}-${i}`, delayMs }).then(
                (reply) => ({ i, delayMs, echo: (reply.data as { echo: string }).echo }),
                (error: unknown) => ({ i, delayMs, error })
              )
            )
          )
          for (const o of outcomes) {
            if ("echo" in o) expect(o.echo, "its own reply, never another's").toBe(`${clientId}-${o.i}`)
            else expect(o.error).toBeInstanceOf(RequestTimeout)
            // Far from the deadline, the outcome is certain (a reply delayed 20 ms has 180 ms for
            // its two hops, room for a stall of a loaded machine).
            if (o.delayMs < timeoutMs / 10) expect(o).toHaveProperty("echo")
            if (o.delayMs > timeoutMs * 2) expect(o).toHaveProperty("error")
          }
          await new Promise((r) => setTimeout(r, 3 * timeoutMs + 30))
          expect(requester.pending()).toBe(0)
          // Late replies are dropped. In correlation mode every timed-out request's reply comes late;
          // in temporary mode only one that arrives between the timeout and the UNSUBACK does.
          const late = outcomes.filter((o) => "error" in o).length
          if (mode === "correlation") {
            // On a loaded machine a late reply may still be on its way after the wait: until it is in.
            await vi.waitFor(() => expect(requester.dropped()).toBeGreaterThanOrEqual(late), { timeout: 10_000, interval: 20 })
            expect(requester.dropped()).toBe(late)
          }
          else expect(requester.dropped()).toBeLessThanOrEqual(late)
          expect(broker.subscriptions(clientId)).toEqual(mode === "correlation" ? [`reply/${clientId}/replies`] : [])
          await requester.close()
          expect(broker.subscriptions(clientId)).toEqual([])
          await client.endAsync()
        }),
        { numRuns: runs }
      )
    },
    // About a second a run; BATON_PROPERTY_RUNS scales both.
    Math.max(60_000, runs * 2_000)
  )
})
