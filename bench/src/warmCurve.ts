/**
 * How long each benchmark contender takes to warm up, and what `BENCH_WARMUP` does to the figures.
 *
 * `node bench/src/warmCurve.ts curve [rounds=3] [segment=300]`: per contender, started fresh, the
 * scenario's own driver runs consecutive bursts of `segment` orders (workflows), up to 6,000 (4,200
 * on PostgreSQL); per segment the throughput (a burst of `segment`, 500 in flight: a short burst's
 * rate, not a long one's) and the CPU per order of the processes that do the work, as the
 * scenarios count them (Baton's runtime; Moleculer's Aedes and three service processes; BullMQ's
 * two workers, with the Redis server's CPU beside it since it does much of BullMQ's work but is
 * shared with other users). Then per segment the medians over the fresh runs, where each contender
 * flattens (the first segment from which every segment's CPU per order stays within 10% of the
 * final figure, the median of the last three; and the same on a 3-segment rolling mean, less
 * thrown by one noisy segment), and the CPU per order the curve predicts for a
 * measured window of M orders after W warm-up orders (uniform within a segment).
 *
 * `node bench/src/warmCurve.ts reread <file>`: that summary again from a saved log of `curve`.
 *
 * `node bench/src/warmCurve.ts warmup [rounds=3] [W,W,...=50,500,1000,2000]`: the scenarios'
 * own burst runs (scenario 2: Baton durable and Moleculer, 1,500 orders; 3: Baton mediator and
 * BullMQ, 600 workflows; 7: one instance on SQLite and on PostgreSQL, 600 orders), each fresh, with
 * `BENCH_WARMUP` set to W; per W the medians, the ratios Baton/Moleculer, mediator/BullMQ and
 * PostgreSQL/SQLite (median of the per-round ratios), and the wall time of each run (start, warm-up,
 * measured burst, stop), from which the added time of a larger W in `pnpm bench` follows.
 *
 * Contenders run interleaved (A, B, C, A, B, C, the order reversed every other round), fresh every
 * time. `WARM_ONLY=sqlite,moleculer,mediator,bullmq,pg` picks some; `WARM_TOTAL` and `WARM_TOTAL_PG`
 * set how far a curve goes. Writes nothing (keep the output: `reread` summarizes it again).
 */
import { loadavg } from "node:os"
import { readdirSync, readFileSync } from "node:fs"
import { cpuDuring, cpuMs, median } from "./lib.ts"
import * as Cluster from "./scenarios/cluster.ts"
import * as OrderFlow from "./scenarios/orderFlow.ts"
import { placeOrders } from "./scenarios/orders.ts"
import { onRuntime } from "./scenarios/runtime.ts"
import * as Workflows from "./scenarios/workflows.ts"

const [mode = "curve", roundsArg = "3", third] = process.argv.slice(2)
const rounds = Number(roundsArg)
const only = process.env.WARM_ONLY?.split(",")
const load = () => loadavg().map((l) => l.toFixed(1)).join(" ")
const fmt = (n: number, digits = 2) => (Number.isFinite(n) ? n.toFixed(digits) : "n/a")

/** A contender started fresh: the processes whose CPU counts, and one burst of `count` through the scenario's driver (resolves with its seconds). */
interface Started {
  readonly pids: ReadonlyArray<number>
  readonly segment: (count: number, index: number) => Promise<number>
}

const timed = async (run: () => Promise<unknown>): Promise<number> => {
  const t0 = performance.now()
  await run()
  return (performance.now() - t0) / 1000
}

/** The Redis server's CPU so far (BullMQ's store: shared, so reported beside, not in, BullMQ's figure). */
const redisCpuMs = (): number => {
  let total = 0
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d)))
    try {
      if (readFileSync(`/proc/${pid}/stat`, "utf8").includes("(redis-server)")) total += cpuMs(Number(pid))
    } catch {
      // gone meanwhile
    }
  return total
}

interface Curve {
  readonly key: string
  readonly name: string
  readonly total: number
  readonly start: (body: (c: Started) => Promise<void>) => Promise<void>
  readonly redis?: boolean
}

const total = Number(process.env.WARM_TOTAL ?? 6000)
const allCurves: ReadonlyArray<Curve> = [
  {
    key: "sqlite",
    name: "Baton durable, SQLite (2, 7)",
    total,
    start: (body) => onRuntime({}, (r) => body({ pids: [r.child.pid!], segment: (n) => timed(() => placeOrders(r.mqttPort!, n, "events/order-shipped")) }))
  },
  {
    key: "moleculer",
    name: "Moleculer (2)",
    total,
    start: (body) => OrderFlow.moleculerPeer((p) => body({ pids: p.pids, segment: async (n, k) => (await p.batch(n, `s${k}-`)).seconds }))
  },
  {
    key: "mediator",
    name: "Baton mediator (3)",
    total,
    start: (body) => onRuntime({ BATON_TOPOLOGY: "mediator" }, (r) => body({ pids: [r.child.pid!], segment: (n) => timed(() => Workflows.drive(r.mqttPort!, n)) }))
  },
  {
    key: "bullmq",
    name: "BullMQ (3)",
    total,
    redis: true,
    start: (body) => Workflows.bullmqPeer((p) => body({ pids: p.pids, segment: async (n, k) => (await p.batch(n, `s${k}-`)).seconds }))
  },
  {
    key: "pg",
    name: "Baton, PostgreSQL, 1 instance (7)",
    total: Number(process.env.WARM_TOTAL_PG ?? 4200),
    start: (body) => Cluster.clusterPeer(1, { redis: false }, (p) => body({ pids: p.pids, segment: (n) => p.batch(n) }))
  }
]
const curves = allCurves.filter((c) => only === undefined || only.includes(c.key))

interface Segment {
  readonly perSecond: number
  readonly cpuMsPerOrder: number
  readonly redisMsPerOrder: number
}

/** Median over the fresh runs of each segment's figure. */
const medians = (runs: ReadonlyArray<ReadonlyArray<Segment>>, key: keyof Segment): Array<number> =>
  runs[0]!.map((_, k) => median(runs.map((r) => r[k]?.[key]).filter((x): x is number => x !== undefined)))

/** The first segment from which every segment's CPU per order stays within `tolerance` of the final (the median of the last three). */
const flattensAt = (cpu: ReadonlyArray<number>, tolerance = 0.1): { readonly index: number; readonly final: number } => {
  const final = median(cpu.slice(-3))
  let index = cpu.length - 1
  while (index > 0 && Math.abs(cpu[index - 1]! / final - 1) <= tolerance) index--
  return { index, final }
}

/** The mean of each segment with its neighbours (one each side; at the ends, the two there are). */
const rolling = (xs: ReadonlyArray<number>): Array<number> =>
  xs.map((_, k) => {
    const window = xs.slice(Math.max(0, k - 1), k + 2)
    return window.reduce((a, b) => a + b, 0) / window.length
  })

/** The CPU per order over orders [w, w + m) of a curve of `size`-order segments, uniform within a segment. */
export const windowCpu = (cpu: ReadonlyArray<number>, size: number, w: number, m: number): number => {
  let sum = 0
  for (let k = 0; k < cpu.length; k++) {
    const overlap = Math.min(w + m, (k + 1) * size) - Math.max(w, k * size)
    if (overlap > 0) sum += overlap * cpu[k]!
  }
  return w + m > cpu.length * size ? Number.NaN : sum / m
}

const ws = [50, 500, 1000, 2000]

const curve = async (size: number) => {
  console.log(`curve: ${rounds} fresh runs each, segments of ${size}; load ${load()}`)
  const runs = new Map(curves.map((c) => [c.key, [] as Array<Array<Segment>>]))
  for (let round = 0; round < rounds; round++)
    for (const c of round % 2 === 0 ? curves : [...curves].reverse()) {
      const segments: Array<Segment> = []
      await c.start(async (s) => {
        for (let k = 0; k * size < c.total; k++) {
          const redisBefore = c.redis === true ? redisCpuMs() : 0
          const { result: seconds, cpuMs: used } = await cpuDuring(s.pids, () => s.segment(size, k))
          segments.push({ perSecond: size / seconds, cpuMsPerOrder: used / size, redisMsPerOrder: c.redis === true ? (redisCpuMs() - redisBefore) / size : Number.NaN })
        }
      })
      runs.get(c.key)!.push(segments)
      console.log(
        `round ${round} ${c.name} (load ${load()}): ${segments.map((s) => `${Math.round(s.perSecond)}/s ${fmt(s.cpuMsPerOrder)}${c.redis === true ? `+r${fmt(s.redisMsPerOrder)}` : ""}`).join(" | ")}`
      )
    }
  summary(runs, size)
}

/** Per contender: the medians per segment over the fresh runs, where it flattens, and the CPU per order the curve predicts after W. */
const summary = (runs: ReadonlyMap<string, ReadonlyArray<ReadonlyArray<Segment>>>, size: number) => {
  const present = curves.filter((c) => (runs.get(c.key)?.length ?? 0) > 0)
  console.log(`\nmedians over the fresh runs, per segment of ${size} (orders before it: throughput /s, CPU ms/order${present.some((c) => c.redis) ? "; BullMQ: + Redis server ms/order" : ""})`)
  for (const c of present) {
    const rs = runs.get(c.key)!
    const rate = medians(rs, "perSecond")
    const cpu = medians(rs, "cpuMsPerOrder")
    const redis = medians(rs, "redisMsPerOrder")
    console.log(`${c.name}:`)
    console.log(`  ${cpu.map((x, k) => `${k * size}: ${Math.round(rate[k]!)}/s ${fmt(x)}${c.redis === true ? `+${fmt(redis[k]!)}` : ""}`).join(" | ")}`)
    const flat = flattensAt(cpu)
    const smooth = flattensAt(rolling(cpu))
    console.log(
      `  final CPU/order ${fmt(flat.final)} ms (median of the last 3 segments); within 10% from the segment after ${flat.index * size} orders (3-segment rolling mean: after ${smooth.index * size}); first segment ${fmt(cpu[0]! / flat.final)}x final`
    )
    const m = c.key === "sqlite" || c.key === "moleculer" ? [600, 1500] : [600]
    for (const count of m)
      console.log(`  predicted CPU/order of a ${count}-order window after W: ${ws.map((w) => `W=${w} ${fmt(windowCpu(cpu, size, w, count))} (${fmt(windowCpu(cpu, size, w, count) / flat.final)}x)`).join(", ")}`)
  }
}

/** The summary again from a log of `curve` (its `round` lines), e.g. with other criteria. */
const reread = (file: string) => {
  const text = readFileSync(file, "utf8")
  const size = Number(/segments of (\d+)/.exec(text)?.[1] ?? 300)
  const runs = new Map<string, Array<Array<Segment>>>()
  for (const [, name, segments] of text.matchAll(/^round \d+ (.+?) \(load [^)]*\): (.*)$/gm)) {
    const c = curves.find((x) => x.name === name)
    if (c === undefined) continue
    const parsed = segments!.split(" | ").map((seg) => {
      const [, rate, cpu, redis] = /^(\d+)\/s (\S+?)(?:\+r(\S+))?$/.exec(seg) ?? []
      return { perSecond: Number(rate), cpuMsPerOrder: Number(cpu), redisMsPerOrder: redis === undefined ? Number.NaN : Number(redis) }
    })
    runs.set(c.key, [...(runs.get(c.key) ?? []), parsed])
  }
  summary(runs, size)
}

/** The scenarios' own burst runs, each on a fresh contender with `BENCH_WARMUP` orders first. */
const scenarios: ReadonlyArray<{ readonly key: string; readonly name: string; readonly run: () => Promise<{ readonly perSecond: number; readonly cpuMsPerOrder: number }> }> = [
  { key: "sqlite", name: "2. Baton durable 1500", run: async () => flow(await OrderFlow.baton({}, 1500)) },
  { key: "moleculer", name: "2. Moleculer 1500", run: async () => flow(await OrderFlow.moleculer(1500)) },
  { key: "mediator", name: "3. Baton mediator 600", run: async () => ({ perSecond: (await Workflows.baton(600)).perSecond!, cpuMsPerOrder: Number.NaN }) },
  { key: "bullmq", name: "3. BullMQ 600", run: async () => ({ perSecond: (await Workflows.bullmq(600)).perSecond!, cpuMsPerOrder: Number.NaN }) },
  { key: "sqlite", name: "7. SQLite 1 instance 600", run: async () => flow(await OrderFlow.baton({}, 600)) },
  { key: "pg", name: "7. PostgreSQL 1 instance 600", run: async () => flow(await Cluster.orderFlow(1, 600, { redis: false })) }
].filter((s) => only === undefined || only.includes(s.key))
const flow = (r: { readonly ordersPerSecond?: number; readonly cpuMsPerOrder?: number }) => ({ perSecond: r.ordersPerSecond!, cpuMsPerOrder: r.cpuMsPerOrder! })

const warmups = async (list: ReadonlyArray<number>) => {
  console.log(`warmup: ${rounds} rounds, W in ${list.join(", ")}; load ${load()}`)
  type Run = { readonly perSecond: number; readonly cpuMsPerOrder: number; readonly wallSeconds: number }
  const runs = new Map(list.flatMap((w) => scenarios.map((s) => [`${w}|${s.name}`, [] as Array<Run>])))
  for (let round = 0; round < rounds; round++)
    for (const w of round % 2 === 0 ? list : [...list].reverse())
      for (const s of (round + list.indexOf(w)) % 2 === 0 ? scenarios : [...scenarios].reverse()) {
        process.env.BENCH_WARMUP = String(w)
        const t0 = performance.now()
        const r = await s.run()
        const run = { ...r, wallSeconds: (performance.now() - t0) / 1000 }
        runs.get(`${w}|${s.name}`)!.push(run)
        console.log(`round ${round} W=${w} ${s.name}: ${Math.round(r.perSecond)}/s, CPU ${fmt(r.cpuMsPerOrder)} ms/order, run ${fmt(run.wallSeconds, 1)} s (load ${load()})`)
      }
  const of = (w: number, name: string) => runs.get(`${w}|${name}`) ?? []
  const ratio = (w: number, a: string, b: string, key: "perSecond" | "cpuMsPerOrder" = "perSecond") => median(of(w, a).map((x, i) => x[key] / (of(w, b)[i]?.[key] ?? Number.NaN)))
  console.log(`\nmedians over ${rounds} rounds (throughput /s, CPU ms/order, wall s of the whole run)`)
  for (const w of list) {
    console.log(`W=${w}:`)
    for (const s of scenarios) {
      const rs = of(w, s.name)
      console.log(`  ${s.name.padEnd(30)} ${String(Math.round(median(rs.map((r) => r.perSecond)))).padStart(5)}/s  CPU ${fmt(median(rs.map((r) => r.cpuMsPerOrder)))}  run ${fmt(median(rs.map((r) => r.wallSeconds)), 1)} s`)
    }
    console.log(
      `  throughput ratios: Baton/Moleculer ${fmt(ratio(w, "2. Baton durable 1500", "2. Moleculer 1500"))}, mediator/BullMQ ${fmt(ratio(w, "3. Baton mediator 600", "3. BullMQ 600"))}, PostgreSQL/SQLite ${fmt(ratio(w, "7. PostgreSQL 1 instance 600", "7. SQLite 1 instance 600"))}`
    )
    console.log(
      `  CPU per order ratios: Baton/Moleculer ${fmt(ratio(w, "2. Baton durable 1500", "2. Moleculer 1500", "cpuMsPerOrder"))}, PostgreSQL/SQLite ${fmt(ratio(w, "7. PostgreSQL 1 instance 600", "7. SQLite 1 instance 600", "cpuMsPerOrder"))}`
    )
  }
  console.log(`load ${load()}`)
}

if (mode === "curve") await curve(Number(third ?? 300))
else if (mode === "reread") reread(roundsArg)
else if (mode === "warmup") await warmups((third ?? ws.join(",")).split(",").map(Number))
else {
  console.error("usage: node bench/src/warmCurve.ts curve [rounds] [segment] | warmup [rounds] [W,W,...] | reread <log of curve>")
  process.exit(2)
}
process.exit(0)
