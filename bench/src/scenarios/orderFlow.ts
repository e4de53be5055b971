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

/** The Moleculer peer started: its processes, and `batch` to run orders through it (ids `<prefix><i>`). */
export interface MoleculerPeer {
  /** Aedes and the three service processes: the processes whose CPU counts. */
  readonly pids: ReadonlyArray<number>
  /** `count` orders, a burst (500 in flight) or paced at `rate`; resolves when all have shipped, with the seconds it took and their latencies. */
  readonly batch: (count: number, prefix: string, rate?: number, ms?: number) => Promise<{ readonly seconds: number; readonly latencies: LatencySummary }>
}

/** Starts the Moleculer peer (Aedes and three service processes) and a load node, warmed until discovery is done; stops them after `body`. */
export const moleculerPeer = async <A>(body: (peer: MoleculerPeer) => Promise<A>): Promise<A> => {
  const aedes = await child("peers/aedes.ts")
  const port = String(aedes.info.port)
  const nodes = await Promise.all(
    [["order-placement", "payment"], ["notification", "inventory", "warehouse"], ["order-fulfillment", "shipping"]].map((services, n) =>
      child("peers/moleculer.ts", { MQTT_PORT: port, SERVICES: services.join(","), NODE_ID: `services-${n}` })
    )
  )
  const batches = new Set<{ readonly orders: ReturnType<typeof tracker<string>>; readonly shipped: ReturnType<typeof counter> }>()
  const client = new ServiceBroker({
    nodeID: "load",
    transporter: transporter(Number(port)),
    logger: false
  })
  let warm = false
  client.createService({
    name: "load",
    events: {
      "order-shipped"(ctx) {
        const { orderId } = ctx.params as { orderId: string }
        if (orderId.startsWith("warm-")) return void (warm = true)
        for (const b of batches) if (b.orders.done(orderId)) return b.shipped.hit()
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
    return await body({
      pids: [aedes, ...nodes].map((c) => c.child.pid!),
      batch: async (count, prefix, rate, ms = 120_000) => {
        const b = { orders: tracker<string>(), shipped: counter(count) }
        batches.add(b)
        try {
          const emit = (i: number, due?: number) => {
            const orderId = `${prefix}${i}`
            b.orders.sent(orderId, due)
            return client.emit("place-order", { ...order(i), orderId, sentAt: Date.now() })
          }
          const t0 = performance.now()
          // Moleculer's emit resolves when the packet is handed to the transporter; bound the burst the same way.
          if (rate === undefined) await burst(count, 500, async (i) => emit(i))
          else await paced(rate, count, (i, due) => void emit(i, due))
          await within(b.shipped.done, ms, `${count} Moleculer orders shipped (at-most-once: a loss shows here)`)
          return { seconds: (performance.now() - t0) / 1000, latencies: b.orders.summary() }
        } finally {
          batches.delete(b)
        }
      }
    })
  } finally {
    await client.stop()
    await Promise.all(nodes.map((n) => n.stop()))
    await aedes.stop()
  }
}

export const moleculer = (count: number, rate?: number): Promise<FlowResult> =>
  moleculerPeer(async (peer) => {
    // The warm-up every contender gets.
    await peer.batch(warmup(), "warmup-", undefined, 60_000)
    const { result, cpuMs } = await cpuDuring(peer.pids, () => peer.batch(count, "m-", rate))
    return rate === undefined ? { ordersPerSecond: count / result.seconds, cpuMsPerOrder: cpuMs / count } : result.latencies
  })
