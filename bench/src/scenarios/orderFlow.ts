/**
 * Scenario 2, the broker-topology order flow: orders per second to `order-shipped` (a burst from
 * one client, 500 in flight) with the CPU time per order of the processes doing the work, and
 * end-to-end latency (publish → `order-shipped`) at a fixed rate, from each order's scheduled send.
 * Baton runs as users run it (its own process, durable by default); the Moleculer peer runs the
 * same chain as seven services in three processes on a bare Aedes (all four counted for its CPU).
 */
import { ServiceBroker } from "moleculer"
import { setNoDelay, transporter } from "../moleculerTransport.ts"
import { burst, child, counter, cpuDuring, sleep, warmup, within } from "../lib.ts"
import { paced, tracker, type LatencySummary } from "../pacing.ts"
import { order, placeOrders } from "./orders.ts"
import { onRuntime } from "./runtime.ts"

export type FlowResult = {
  readonly ordersPerSecond?: number
  /** CPU time (user + system) of the system's processes per order, ms; not the load generator's. */
  readonly cpuMsPerOrder?: number
} & Partial<LatencySummary>

/** Burst: `count` orders; or paced: `count` orders at `rate` per second, with latencies. */
export const baton = (env: Record<string, string>, count: number, rate?: number): Promise<FlowResult> =>
  onRuntime(env, async (r) => {
    await placeOrders(r.mqttPort!, warmup(), "events/order-shipped")
    const { result, cpuMs } = await cpuDuring([r.child.pid!], () => placeOrders(r.mqttPort!, count, "events/order-shipped", rate))
    return result.perSecond === undefined ? result : { ordersPerSecond: result.perSecond, cpuMsPerOrder: cpuMs / count }
  })

export const moleculer = async (count: number, rate?: number): Promise<FlowResult> => {
  const aedes = await child("peers/aedes.ts")
  const port = String(aedes.info.port)
  const nodes = await Promise.all(
    [["order-placement", "payment"], ["notification", "inventory", "warehouse"], ["order-fulfillment", "shipping"]].map((services, n) =>
      child("peers/moleculer.ts", { MQTT_PORT: port, SERVICES: services.join(","), NODE_ID: `services-${n}` })
    )
  )
  const orders = tracker<string>()
  const shipped = counter(count)
  const client = new ServiceBroker({
    nodeID: "load",
    transporter: transporter(Number(port)),
    logger: false
  })
  let warm = false
  const warmed = counter(warmup())
  client.createService({
    name: "load",
    events: {
      "order-shipped"(ctx) {
        const { orderId } = ctx.params as { orderId: string }
        if (orderId.startsWith("warmup-")) return warmed.hit()
        if (orderId.startsWith("warm-")) return void (warm = true)
        orders.done((ctx.params as { orderId: string }).orderId)
        shipped.hit()
      }
    }
  })
  try {
    await client.start()
    setNoDelay(client)
    await client.waitForServices(["order-placement", "payment", "notification", "inventory", "warehouse", "order-fulfillment", "shipping"], 20_000)
    // Events sent before every node has discovered every other are dropped silently: warm up
    // until an order makes it through the whole chain.
    for (let i = 0; !warm; i++) {
      if (i > 100) throw new Error("Moleculer never completed a warm-up order")
      await client.emit("place-order", { ...order(i), orderId: `warm-${i}`, sentAt: Date.now() })
      await sleep(200)
    }
    // Then the warm-up every contender gets.
    await burst(warmup(), 500, async (i) => client.emit("place-order", { ...order(i), orderId: `warmup-${i}`, sentAt: Date.now() }))
    await within(warmed.done, 60_000, `${warmup()} Moleculer warm-up orders shipped`)
    const emit = (i: number, due?: number) => {
      const orderId = `m-${i}`
      orders.sent(orderId, due)
      return client.emit("place-order", { ...order(i), orderId, sentAt: Date.now() })
    }
    const { result: seconds, cpuMs } = await cpuDuring([aedes, ...nodes].map((c) => c.child.pid!), async () => {
      const t0 = performance.now()
      // Moleculer's emit resolves when the packet is handed to the transporter; bound the burst the same way.
      if (rate === undefined) await burst(count, 500, async (i) => emit(i))
      else await paced(rate, count, (i, due) => void emit(i, due))
      await within(shipped.done, 120_000, `${count} Moleculer orders shipped (at-most-once: a loss shows here)`)
      return (performance.now() - t0) / 1000
    })
    return rate === undefined ? { ordersPerSecond: count / seconds, cpuMsPerOrder: cpuMs / count } : orders.summary()
  } finally {
    await client.stop()
    await Promise.all(nodes.map((n) => n.stop()))
    await aedes.stop()
  }
}
