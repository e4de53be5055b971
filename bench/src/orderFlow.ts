/**
 * The broker-topology order flow under load: the runtime in its own process (as users run it),
 * one MQTT client publishing QoS 1 orders as fast as the broker acknowledges them, and the time
 * until the last `order-shipped` arrives.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { Socket } from "node:net"
import mqtt from "mqtt"
import { Process } from "@baton/testkit"

export const orderFlow = async (options: { readonly orders: number; readonly env: Record<string, string> }) => {
  const dataDir = mkdtempSync(join(tmpdir(), "baton-bench-"))
  const runtime = await Process.startProcess(dataDir, options.env)
  try {
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${runtime.mqttPort}`, { protocolVersion: 4, reconnectPeriod: 0 })
    ;(client.stream as Partial<Socket>).setNoDelay?.(true)
    let shipped = 0
    const done = new Promise<void>((resolve) =>
      client.on("message", () => {
        shipped++
        if (shipped === options.orders) resolve()
      })
    )
    await client.subscribeAsync("events/order-shipped", { qos: 1 })
    const t0 = performance.now()
    const window = 500
    const inFlight = new Set<Promise<unknown>>()
    for (let i = 0; i < options.orders; i++) {
      const body = JSON.stringify({ customerId: `bench-${i % 100}`, email: "b@example.com", items: [{ sku: `BOOK-${(i % 5) + 1}`, qty: 1, price: 9.5 }], payment: { card: "4242424242424242" } })
      const p = client.publishAsync("initiate/place-order", body, { qos: 1 })
      inFlight.add(p)
      void p.finally(() => inFlight.delete(p))
      if (inFlight.size >= window) await Promise.race(inFlight)
    }
    await Promise.all(inFlight)
    await done
    const seconds = (performance.now() - t0) / 1000
    await client.endAsync()
    return { ordersPerSecond: options.orders / seconds, seconds }
  } finally {
    await runtime.kill("SIGTERM")
    rmSync(dataDir, { recursive: true, force: true })
  }
}
