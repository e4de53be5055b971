/** Orders placed on a Baton runtime over MQTT, each tracked from its publish to the event that ends it. */
import mqtt from "mqtt"
import { burst, counter, noDelay, within } from "../lib.ts"
import { paced, tracker, type LatencySummary } from "../pacing.ts"

export const order = (i: number) => ({ customerId: `bench-${i % 100}`, email: "b@example.com", items: [{ sku: `BOOK-${(i % 5) + 1}`, qty: 1, price: 9.5 }], payment: { card: "4242424242424242" } })

export type Placed = { readonly perSecond?: number } & Partial<LatencySummary>

/**
 * Burst (500 in flight): resolves with the rate at which `doneTopic` events came; paced at `rate`
 * per second: with the latencies until each `doneTopic` event, from the publish's scheduled time
 * and from its actual send (`pacing.ts`).
 */
export const placeOrders = async (port: number, count: number, doneTopic: string, rate?: number, inFlight = 500, doneWithinMs = 600_000): Promise<Placed> => {
  const client = noDelay(await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0 }))
  const orders = tracker<string>()
  const done = counter(count)
  client.on("message", (_t, payload) => {
    const e = JSON.parse(payload.toString()) as { correlationId: string }
    if (orders.done(e.correlationId)) done.hit()
  })
  await client.subscribeAsync(doneTopic, { qos: 1 })
  const t0 = performance.now()
  const publish = (i: number, due?: number) => {
    const id = crypto.randomUUID()
    orders.sent(id, due)
    return client.publishAsync("initiate/place-order", JSON.stringify({ id, type: "place-order", data: order(i) }), { qos: 1 })
  }
  // Without reconnects, a connection the broker drops (a publish not acknowledged: the runtime
  // failed to route it after its commit) leaves its publishes unresolved and its subscription
  // gone: fail the run at once, saying so, rather than wait for ever (or `doneWithinMs`).
  let closedWith: (error: Error) => void = () => {}
  const closed = new Promise<never>((_, reject) => (closedWith = reject))
  closed.catch(() => undefined)
  const onClose = () => closedWith(new Error(`the broker closed the load generator's connection (${done.count()} of ${count} ${doneTopic} events seen)`))
  client.on("close", onClose)
  const placing = rate === undefined ? burst(count, inFlight, (i) => publish(i)) : paced(rate, count, (i, due) => void publish(i, due))
  await Promise.race([placing, closed])
  await Promise.race([within(done.done, doneWithinMs, `${count} events on ${doneTopic}`), closed])
  client.removeListener("close", onClose)
  const seconds = (performance.now() - t0) / 1000
  await client.endAsync()
  return rate === undefined ? { perSecond: count / seconds } : orders.summary()
}
