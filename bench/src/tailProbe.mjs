// Preloaded into the runtime by `tail.ts` (NODE_OPTIONS=--import): records the event loop's stalls
// (gaps of a 1 ms timer over 3 ms) and the garbage collections, in epoch ms (the stalls in the
// monotonic clock's microseconds too), and writes them with
// the event-loop delay, the new space's size and the process's time origin (epoch ms) to PROBE_OUT
// when the process gets SIGUSR2.
import { PerformanceObserver, performance, monitorEventLoopDelay } from "node:perf_hooks"
import { writeFileSync } from "node:fs"
import v8 from "node:v8"

const t0 = performance.timeOrigin
const gcs = []
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcs.push([t0 + e.startTime, e.duration, e.detail?.kind ?? 0])
}).observe({ entryTypes: ["gc"] })
const stalls = []
// The same stalls in microseconds of the monotonic clock, a CPU profile's (`tail.ts`'s TAIL_PROFILE).
const monotonic = []
let last = performance.now()
let lastUs = process.hrtime.bigint() / 1000n
setInterval(() => {
  const now = performance.now()
  const nowUs = process.hrtime.bigint() / 1000n
  if (now - last > 3) {
    stalls.push([t0 + last, now - last])
    monotonic.push([Number(lastUs), Number(nowUs - lastUs)])
  }
  last = now
  lastUs = nowUs
}, 1).unref()
const delay = monitorEventLoopDelay({ resolution: 1 })
delay.enable()
process.on("SIGUSR2", () => {
  const newSpace = v8.getHeapSpaceStatistics().find((s) => s.space_name === "new_space")?.space_size ?? 0
  const eld = { p50: delay.percentile(50) / 1e6, p99: delay.percentile(99) / 1e6, max: delay.max / 1e6 }
  writeFileSync(process.env.PROBE_OUT, JSON.stringify({ gcs, stalls, monotonic, newSpace: newSpace / 2 ** 20, eld, origin: t0 }))
})
