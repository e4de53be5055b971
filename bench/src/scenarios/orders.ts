/** Orders placed on a Baton runtime over MQTT, each tracked from its publish to the event that ends it. */
import mqtt from "mqtt"
import { burst, counter, noDelay, paced, percentile, within } from "../lib.ts"

export const order = (i: number) => ({ customerId: `bench-${i % 100}`, email: "b@example.com", items: [{ sku: `BOOK-${(i % 5) + 1}`, qty: 1, price: 9.5 }], payment: { card: "4242424242424242" } })

/**
 * Burst (500 in flight): resolves with the rate at which `doneTopic` events came; paced at `rate`
 * per second: with the p50/p99 time from each publish to its `doneTopic` event.
 */
export const placeOrders = async (port: number, count: number, doneTopic: string, rate?: number, inFlight = 500): Promise<{ readonly perSecond?: number; readonly p50?: number; readonly p99?: number }> => {
  const client = noDelay(await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0 }))
  const sent = new Map<string, number>()
  const latencies: Array<number> = []
  const done = counter(count)
  client.on("message", (_t, payload) => {
    const e = JSON.parse(payload.toString()) as { correlationId: string }
    const at = sent.get(e.correlationId)
    if (at === undefined) return
    sent.delete(e.correlationId)
    latencies.push(performance.now() - at)
    done.hit()
  })
  await client.subscribeAsync(doneTopic, { qos: 1 })
  const t0 = performance.now()
  const publish = (i: number) => {
    const id = crypto.randomUUID()
    sent.set(id, performance.now())
    return client.publishAsync("initiate/place-order", JSON.stringify({ id, type: "place-order", data: order(i) }), { qos: 1 })
  }
  if (rate === undefined) await burst(count, inFlight, publish)
  else await paced(rate, count, (i) => void publish(i))
  await within(done.done, 600_000, `${count} events on ${doneTopic}`)
  const seconds = (performance.now() - t0) / 1000
  await client.endAsync()
  return rate === undefined ? { perSecond: count / seconds } : { p50: percentile(latencies, 50), p99: percentile(latencies, 99) }
}
