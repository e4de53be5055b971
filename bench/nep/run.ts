/**
 * `node bench/nep/run.ts <rate> <count>`: what the scavenges promote per QoS 1 publish in a small
 * system, to bisect the nepotism of the accept (README, Benchmarks). Starts `broker.ts` (the
 * embedded broker alone; NEP_MODE=ack: a `beforeAck` resolved at the next check phase) or
 * NEP_SCRIPT (`plain.ts`: plain Aedes, `net.ts`: a bare TCP server with or without mqtt-packet)
 * with `--trace-gc-nvp` and NEP_ARGS (say `--max-semi-space-size=8`, the runtime's), warms up with
 * 400 publishes, then sums V8's `promoted` over the scavenges of `count` publishes at `rate`/s to
 * NEP_TOPIC (default `initiate/place-order`, nobody subscribed). NEP_V=1: each collection.
 * Measured at 1000/s, 10,000 publishes: bare TCP 3-57 B a publish, the embedded broker 209 B before
 * this branch's patches, 5-8 B after.
 */
import { spawn } from "node:child_process"
import mqtt from "mqtt"
const [rate = "200", count = "2000"] = process.argv.slice(2)
const script = process.env.NEP_SCRIPT ?? new URL("./broker.ts", import.meta.url).pathname
const child = spawn(process.execPath, ["--trace-gc-nvp", ...(process.env.NEP_ARGS ?? "").split(" ").filter(Boolean), script], { stdio: ["ignore", "pipe", "inherit"], env: process.env })
let out = ""
child.stdout.on("data", (d) => (out += d))
while (!/PORT (\d+)/.test(out)) await new Promise((ok) => setTimeout(ok, 20))
const port = Number(/PORT (\d+)/.exec(out)![1])
const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0 })
const topic = process.env.NEP_TOPIC ?? "initiate/place-order"
const pub = async (n: number) => {
  const t0 = performance.now()
  const ps: Array<Promise<unknown>> = []
  for (let i = 0; i < n; i++) {
    const due = t0 + (i * 1000) / Number(rate)
    const w = due - performance.now()
    if (w > 0) await new Promise((ok) => setTimeout(ok, w))
    ps.push(client.publishAsync(topic, JSON.stringify({ nope: i, pad: "x".repeat(100) }), { qos: 1 }))
  }
  await Promise.all(ps)
}
await pub(400)
await new Promise((ok) => setTimeout(ok, 300))
child.kill("SIGUSR2")
await new Promise((ok) => setTimeout(ok, 100))
await pub(Number(count))
await new Promise((ok) => setTimeout(ok, 100))
child.kill("SIGUSR2")
await new Promise((ok) => setTimeout(ok, 200))
await client.endAsync()
child.kill("SIGKILL")
const lines = out.split("\n")
const a = lines.indexOf("MARK"), b = lines.lastIndexOf("MARK")
const win = lines.slice(a, b).filter((l) => l.includes("gc=s "))
const field = (l: string, f: string) => Number(new RegExp(`\\b${f}=(\\d+)`).exec(l)?.[1] ?? 0)
const promoted = win.reduce((s, l) => s + field(l, "promoted"), 0)
if (process.env.NEP_V) for (const l of lines.slice(a, b)) if (/gc=(s|mc) /.test(l)) console.log(l.match(/gc=\w+/)![0], "promoted", field(l, "promoted"), "survived", field(l, "new_space_survived") || field(l,"semi_space_copied"), "rate", /promotion_rate=([\d.]+)/.exec(l)?.[1])
const mcs = lines.slice(a, b).filter((l) => l.includes("gc=mc")).length
console.log(`${process.env.NEP_MODE ?? script}: scavenges ${win.length}, mc ${mcs}, promoted ${(promoted / Number(count)).toFixed(0)} B/publish, ${((promoted / 4096) * 1000 / Number(count)).toFixed(0)} pages/1000`)
process.exit(0)
