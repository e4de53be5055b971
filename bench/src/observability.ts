/**
 * The cost of observability on the order flow (`node runtime/bin/start.mjs bench/src/observability.ts`):
 * bursts of orders with tracing off and with spans exported to a local OTLP sink, alternating, and
 * the CPU time of the runtime per order. Metrics are always on; their cost is measured by running
 * this at the commit before them (see the README's Observability section).
 */
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { cpuMs } from "./lib.ts"
import { placeOrders } from "./scenarios/orders.ts"
import { onRuntime } from "./scenarios/runtime.ts"

const orders = Number(process.env.AB_ORDERS ?? 1500)
const rounds = Number(process.env.AB_ROUNDS ?? 3)
const modes = (process.env.AB_MODES ?? "off,otlp").split(",")
let spans = 0
const sink = createServer((req, res) => {
  let body = ""
  req.on("data", (c: Buffer) => (body += c.toString("utf8")))
  req.on("end", () => {
    spans += (body.match(/"spanId"/g) ?? []).length
    res.writeHead(200, { "content-type": "application/json" })
    res.end("{}")
  })
})
await new Promise<void>((r) => sink.listen(0, "127.0.0.1", r))
const otlp = `http://127.0.0.1:${(sink.address() as AddressInfo).port}/v1/traces`

/** Orders per second, and the runtime's CPU milliseconds per order (from /proc). */
const run = (env: Record<string, string>) =>
  onRuntime(env, async (r) => {
    let done = false
    void r.exited.then((code) => done || process.stdout.write(`runtime exited (${code}) during the run:\n${r.output().slice(-3000)}\n`))
    const before = cpuMs(r.child.pid!)
    const result = await placeOrders(r.mqttPort!, orders, "events/order-shipped")
    const spent = { perSecond: result.perSecond ?? 0, cpuMsPerOrder: (cpuMs(r.child.pid!) - before) / orders }
    done = true
    return spent
  })

const results: Record<string, Array<{ perSecond: number; cpuMsPerOrder: number }>> = { off: [], otlp: [] }
for (let round = 1; round <= rounds; round++)
  for (const name of round % 2 === 1 ? modes : [...modes].reverse()) {
    const r = await run(name === "otlp" ? { BATON_OTLP_URL: otlp } : {})
    results[name]!.push(r)
    process.stdout.write(`round ${round} ${name}: ${Math.round(r.perSecond)} orders/s, ${r.cpuMsPerOrder.toFixed(2)} ms CPU/order\n`)
  }
const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
for (const [name, rs] of Object.entries(results).filter(([, rs]) => rs.length > 0))
  process.stdout.write(`${name}: median ${Math.round(median(rs.map((r) => r.perSecond)))} orders/s, ${median(rs.map((r) => r.cpuMsPerOrder)).toFixed(2)} ms CPU/order\n`)
process.stdout.write(`spans received by the sink: ${spans}\n`)
sink.close()
