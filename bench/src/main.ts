/**
 * `pnpm bench` (quick, about three minutes) or `pnpm bench --full`: runs each scenario's contenders
 * side by side in one run, alternating which goes first round by round (these machines are noisy),
 * and reports medians with min-max and the ratios against the targets. Writes
 * bench/results/latest.json and latest.md, and the README's table between its bench markers.
 * `BENCH_ONLY=one-hop,order-flow` runs some scenarios only (the README is then left alone).
 */
import { cpus, loadavg } from "node:os"
import { mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { summarize, type Summary } from "./lib.ts"
import * as Cluster from "./scenarios/cluster.ts"
import * as Latency from "./scenarios/latency.ts"
import * as OneHop from "./scenarios/oneHop.ts"
import * as OrderFlow from "./scenarios/orderFlow.ts"
import * as Workflows from "./scenarios/workflows.ts"

const full = process.argv.includes("--full")
const root = fileURLToPath(new URL("../../", import.meta.url))
const command = `pnpm bench${full ? " --full" : ""}`
const only = process.env.BENCH_ONLY?.split(",")
const size = full
  ? { rounds: 5, hop: 20_000, orders: 10_000, paced: 2_000, workflows: 3_000, pacedWorkflows: 1_000, memory: [1_000, 100_000], accept: 10_000, roundTrips: 2_000, comments: 200, context: 50_000, cluster: 5_000, clusterHop: 20_000, pgBurst: 10_000 }
  : { rounds: 3, hop: 4_000, orders: 1_500, paced: 400, workflows: 600, pacedWorkflows: 300, memory: [1_000, 5_000], accept: 3_000, roundTrips: 300, comments: 50, context: 10_000, cluster: 600, clusterHop: 3_000, pgBurst: 3_000 }

const started = Date.now()
// The machine may be shared: the load average at the start and the end goes with the figures.
const loadAtStart = loadavg()[0]!
const progress = (line: string) => process.stdout.write(`[${String(Math.round((Date.now() - started) / 1000)).padStart(4)} s] ${line}\n`)

interface Contender<R> {
  readonly name: string
  readonly guarantee: string
  readonly run: () => Promise<R>
}

interface Row {
  readonly scenario: string
  readonly contender: string
  readonly guarantee: string
  readonly metric: string
  readonly unit: string
  readonly result: Summary
}

const rows: Array<Row> = []
const failures: Array<{ readonly scenario: string; readonly contender: string; readonly round: number; readonly reason: string }> = []
process.on("unhandledRejection", (error) => progress(`unhandled: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`))
const extra: Record<string, unknown> = {}

/** Runs the contenders `rounds` times, alternating their order, and records each metric. */
const compare = async <R extends object>(
  scenario: string,
  rounds: number,
  contenders: ReadonlyArray<Contender<R>>,
  metrics: ReadonlyArray<{ readonly key: keyof R & string; readonly metric: string; readonly unit: string }>
) => {
  const samples = new Map<string, Array<R>>(contenders.map((c) => [c.name, []]))
  for (let round = 1; round <= rounds; round++) {
    for (const c of round % 2 === 1 ? contenders : [...contenders].reverse()) {
      let r: R
      try {
        r = await c.run()
      } catch (error) {
        // A failed run is reported and left out; the other contenders and scenarios go on.
        progress(`${scenario} round ${round}/${rounds}  ${c.name.padEnd(34)} FAILED: ${error instanceof Error ? error.message : String(error)}`)
        failures.push({ scenario, contender: c.name, round, reason: error instanceof Error ? error.message : String(error) })
        continue
      }
      samples.get(c.name)!.push(r)
      progress(`${scenario} round ${round}/${rounds}  ${c.name.padEnd(34)} ${metrics.map((m) => `${m.metric} ${((r[m.key] as number | undefined) ?? Number.NaN).toFixed(1)} ${m.unit}`).join(", ")}`)
    }
  }
  for (const c of contenders)
    for (const m of metrics) {
      const xs = samples.get(c.name)!.map((r) => r[m.key] as number | undefined).filter((x): x is number => x !== undefined)
      if (xs.length > 0)
        rows.push({ scenario, contender: c.name, guarantee: c.guarantee, metric: m.metric, unit: m.unit, result: summarize(xs) })
    }
}

/** Runs a measurement that is not a comparison; a failure is reported and the run goes on. */
const attempt = async (scenario: string, run: () => Promise<void>) => {
  try {
    await run()
  } catch (error) {
    progress(`${scenario} FAILED: ${error instanceof Error ? error.message : String(error)}`)
    failures.push({ scenario, contender: "Baton", round: 1, reason: error instanceof Error ? error.message : String(error) })
  }
}

const get = (scenario: string, contender: string, metric: string): number =>
  rows.find((r) => r.scenario === scenario && r.contender === contender && r.metric === metric)?.result.median ?? Number.NaN

const wanted = (name: string) => only === undefined || only.includes(name)

// Fixed-rate scenarios: latencies from each message's scheduled send (the honest figure: a sender
// that fell behind does not hide the wait), then from its actual send, and how late the sender was.
const scheduled = (suffix = "") =>
  [
    { key: "p50", metric: `p50 latency${suffix}`, unit: "ms" },
    { key: "p99", metric: `p99 latency${suffix}`, unit: "ms" },
    { key: "p999", metric: `p99.9 latency${suffix}`, unit: "ms" },
    { key: "max", metric: `max latency${suffix}`, unit: "ms" },
    { key: "p50Sent", metric: "p50 from the actual send", unit: "ms" },
    { key: "p99Sent", metric: "p99 from the actual send", unit: "ms" },
    { key: "senderLateMax", metric: "sender late by at most", unit: "ms" }
  ] as const
const closedLoop = [
  { key: "p50", metric: "p50 latency", unit: "ms" },
  { key: "p99", metric: "p99 latency", unit: "ms" }
] as const
const cpuPerOrder = { key: "cpuMsPerOrder", metric: "CPU per order", unit: "ms" } as const

const g = {
  durable: "PUBACK after the ingress log commit; effects, inbox and outbox in one SQLite transaction (synchronous=NORMAL, group commit); sessions on disk; effects once across SIGKILL",
  front: "BATON_FRONT=thread (opt-in): the broker and a log of initiating events of their own on a worker thread, PUBACK after that log's commit, handed over to the store under a mark; the same guarantees",
  nonDurable: "the same code path with SQLite synchronous=OFF and broker sessions in memory: a crash may lose acknowledged messages",
  raw: "QoS 1 hops, no store: a crash loses what is in flight",
  moleculer: "at most once (MQTT transporter at QoS 1, but the client acknowledges before the handler runs, clean sessions, no store; events sent before discovery are dropped)",
  mediator: "durable workflows (state in SQLite), commands and acknowledgements in the inboxes, effects once across SIGKILL",
  bullmq: "at least once (jobs in Redis, no AOF here): a stage can run twice after a crash",
  broker: "QoS 1 pub/sub, no application work",
  cluster: "every store in PostgreSQL (shared), partitions owned by one instance each, fenced; effects once across SIGKILL of an instance",
  postgres: "every store in PostgreSQL (a cluster of one: partitions owned and fenced), sessions of its embedded broker on disk; effects once across SIGKILL",
  hopMemory: "QoS 1, sessions in memory",
  hopRedis: "QoS 1, sessions in Redis",
  hopCluster: "QoS 1, sessions in Redis, publisher and subscriber on different nodes (mqemitter-redis)"
}

if (wanted("one-hop"))
  await compare(
    "1. one hop, QoS 1, 500 in flight",
    size.rounds,
    [
      { name: "raw MQTT.js relay on Aedes", guarantee: g.raw, run: async () => ({ rate: await OneHop.raw(size.hop) }) },
      { name: "Baton, non-durable", guarantee: g.nonDurable, run: async () => ({ rate: await OneHop.baton(size.hop, { BATON_DURABLE: "false" }) }) },
      { name: "Baton, durable", guarantee: g.durable, run: async () => ({ rate: await OneHop.baton(size.hop, {}) }) }
    ],
    [{ key: "rate", metric: "throughput", unit: "msg/s" }]
  )

if (wanted("order-flow")) {
  await compare(
    `2. order flow burst, ${size.orders} orders`,
    size.rounds,
    [
      { name: "Baton, durable", guarantee: g.durable, run: async () => OrderFlow.baton({}, size.orders) },
      { name: "Baton, non-durable", guarantee: g.nonDurable, run: async () => OrderFlow.baton({ BATON_DURABLE: "false" }, size.orders) },
      { name: "Baton, durable, front thread", guarantee: g.front, run: async () => OrderFlow.baton({ BATON_FRONT: "thread" }, size.orders) },
      { name: "Moleculer 0.15, 7 services in 3 processes", guarantee: g.moleculer, run: async () => OrderFlow.moleculer(size.orders) }
    ],
    [{ key: "ordersPerSecond", metric: "throughput", unit: "orders/s" }, cpuPerOrder]
  )
  await compare(
    `2. order flow at 200 orders/s, ${size.paced} orders`,
    Math.max(2, size.rounds - 1),
    [
      { name: "Baton, durable", guarantee: g.durable, run: async () => OrderFlow.baton({}, size.paced, 200) },
      { name: "Moleculer 0.15, 7 services in 3 processes", guarantee: g.moleculer, run: async () => OrderFlow.moleculer(size.paced, 200) }
    ],
    scheduled()
  )
}

if (wanted("workflows")) {
  await compare(
    `3. mediator workflow burst, ${size.workflows} workflows`,
    Math.max(2, size.rounds - 1),
    [
      { name: "Baton mediator, durable", guarantee: g.mediator, run: async () => Workflows.baton(size.workflows) },
      { name: "BullMQ 5 flows, 2 worker processes", guarantee: g.bullmq, run: async () => Workflows.bullmq(size.workflows) }
    ],
    [{ key: "perSecond", metric: "throughput", unit: "workflows/s" }]
  )
  await compare(
    `3. mediator workflow at 100 workflows/s, ${size.pacedWorkflows} workflows`,
    Math.max(2, size.rounds - 1),
    [
      { name: "Baton mediator, durable", guarantee: g.mediator, run: async () => Workflows.baton(size.pacedWorkflows, 100) },
      { name: "BullMQ 5 flows, 2 worker processes", guarantee: g.bullmq, run: async () => Workflows.bullmq(size.pacedWorkflows, 100) }
    ],
    scheduled()
  )
  const [few, many] = size.memory as [number, number]
  await attempt("3. memory", async () => {
    const memory = await Workflows.memory(few, many, (done) => progress(`3. memory: ${done}/${many} workflows completed`))
    progress(`3. memory: heap in use ${memory.heapFewMb} MB after ${few}, ${memory.heapManyMb} MB after ${many}; RSS ${memory.rssFewMb} -> ${memory.rssManyMb} MB`)
    extra.memory = memory
  })
}

if (wanted("accept")) {
  await compare(
    `4. accept latency at 1000 events/s, ${size.accept} events`,
    2,
    [
      { name: "Baton, durable", guarantee: "PUBACK once the event is committed to the ingress log", run: () => Latency.accept(1000, size.accept) },
      { name: "Baton, durable, front thread", guarantee: g.front, run: () => Latency.accept(1000, size.accept, { BATON_FRONT: "thread" }) }
    ],
    scheduled()
  )
}

if (wanted("request-reply")) {
  await compare(
    `5. request-reply round trip, ${size.roundTrips} sequential`,
    Math.max(2, size.rounds - 1),
    [
      { name: "raw MQTT ping-pong on Aedes", guarantee: "an MQTT.js echo, no store", run: () => Latency.rawPingPong(size.roundTrips) },
      { name: "Baton, correlation-id mode", guarantee: "request durable before its PUBACK, reply at QoS 0", run: () => Latency.requestReply("correlation", size.roundTrips) },
      { name: "Baton, temporary-queue mode", guarantee: "the same, plus a SUBSCRIBE and UNSUBSCRIBE per request", run: () => Latency.requestReply("temporary", size.roundTrips) }
    ],
    closedLoop
  )
  await attempt("5. comments", async () => {
    const comments = await Latency.comments(size.comments, 3)
    progress(`5. comments: accept p50 ${comments.accept.p50.toFixed(1)} ms p99 ${comments.accept.p99.toFixed(1)} ms; POST /comments p50 ${comments.synchronous.p50.toFixed(0)} ms`)
    for (const [contender, r, guarantee] of [
      ["initiate/post-comment (asynchronous accept)", comments.accept, "durable before the PUBACK; checks run after"],
      ["POST /comments (synchronous)", comments.synchronous, "answers after the three checks (1 s each)"]
    ] as const) {
      rows.push({ scenario: "5. comment posting, time until the author has an answer", contender, guarantee, metric: "p50 latency", unit: "ms", result: summarize([r.p50]) })
      rows.push({ scenario: "5. comment posting, time until the author has an answer", contender, guarantee, metric: "p99 latency", unit: "ms", result: summarize([r.p99]) })
    }
  })
}

if (wanted("brokers"))
  await compare(
    `6. context: one publisher, one subscriber, QoS 1, 100 in flight, ${size.context} messages`,
    Math.max(2, size.rounds - 1),
    [
      { name: "embedded Aedes 1.2 (memory)", guarantee: g.broker, run: async () => ({ rate: await Latency.aedesPubSub(size.context) }) },
      { name: "Mosquitto 2 (127.0.0.1:1883)", guarantee: g.broker, run: async () => ({ rate: await Latency.pubSub(1883, size.context) }) }
    ],
    [{ key: "rate", metric: "throughput", unit: "msg/s" }]
  )

if (wanted("cluster")) {
  await compare(
    `7. order flow burst over a cluster, ${size.cluster} orders`,
    // As many rounds as the order flow's: the PostgreSQL/SQLite ratio is a target, and its median
    // should be a round's, not the mean of two.
    size.rounds,
    [
      { name: "Baton, 1 instance, SQLite", guarantee: g.durable, run: async () => OrderFlow.baton({}, size.cluster) },
      { name: "Baton, 1 instance, PostgreSQL", guarantee: g.postgres, run: async () => Cluster.orderFlow(1, size.cluster, { redis: false }) },
      { name: "Baton cluster, 1 instance", guarantee: g.cluster, run: async () => Cluster.orderFlow(1, size.cluster) },
      { name: "Baton cluster, 2 instances", guarantee: g.cluster, run: async () => Cluster.orderFlow(2, size.cluster) },
      { name: "Baton cluster, 3 instances", guarantee: g.cluster, run: async () => Cluster.orderFlow(3, size.cluster) }
    ],
    [{ key: "ordersPerSecond", metric: "throughput", unit: "orders/s" }, cpuPerOrder]
  )
  // The issue's PostgreSQL/SQLite target, over a burst long enough that both are past V8's
  // warm-up (about 3,300 orders on PostgreSQL, where the 600-order rows above catch it at about
  // 1.4x its steady CPU an order, SQLite at 1.1x): the target row reads this scenario.
  await compare(
    `7. order flow burst on one instance, SQLite against PostgreSQL, ${size.pgBurst} orders`,
    size.rounds,
    [
      { name: "Baton, 1 instance, SQLite", guarantee: g.durable, run: async () => OrderFlow.baton({}, size.pgBurst) },
      { name: "Baton, 1 instance, PostgreSQL", guarantee: g.postgres, run: async () => Cluster.orderFlow(1, size.pgBurst, { redis: false }) }
    ],
    [{ key: "ordersPerSecond", metric: "throughput", unit: "orders/s" }, cpuPerOrder]
  )
  await compare(
    `7. one broker hop, ${size.clusterHop} messages`,
    size.rounds,
    [
      { name: "one Aedes", guarantee: g.hopMemory, run: async () => Cluster.singleBroker(size.clusterHop) },
      { name: "one Aedes, Redis sessions", guarantee: g.hopRedis, run: async () => Cluster.singleBroker(size.clusterHop, { REDIS_URL: process.env.BATON_BENCH_REDIS_URL ?? "redis://127.0.0.1:6379/6" }) },
      { name: "two Aedes clustered on Redis", guarantee: g.hopCluster, run: async () => Cluster.redisClustered(size.clusterHop) }
    ],
    [{ key: "rate", metric: "throughput", unit: "msg/s" }, ...scheduled(" at 1000/s")]
  )
}

// Targets, as ratios measured in this run.
const s = {
  hop: "1. one hop, QoS 1, 500 in flight",
  burst: `2. order flow burst, ${size.orders} orders`,
  paced: `2. order flow at 200 orders/s, ${size.paced} orders`,
  wf: `3. mediator workflow burst, ${size.workflows} workflows`,
  wfPaced: `3. mediator workflow at 100 workflows/s, ${size.pacedWorkflows} workflows`,
  accept: `4. accept latency at 1000 events/s, ${size.accept} events`,
  rr: `5. request-reply round trip, ${size.roundTrips} sequential`,
  comments: "5. comment posting, time until the author has an answer",
  cluster: `7. order flow burst over a cluster, ${size.cluster} orders`,
  pgBurst: `7. order flow burst on one instance, SQLite against PostgreSQL, ${size.pgBurst} orders`
}
const targets = [
  { target: "one hop: Baton non-durable >= 0.7x raw", value: get(s.hop, "Baton, non-durable", "throughput") / get(s.hop, "raw MQTT.js relay on Aedes", "throughput"), goal: 0.7, unit: "x" },
  { target: "one hop: durable >= 0.6x non-durable", value: get(s.hop, "Baton, durable", "throughput") / get(s.hop, "Baton, non-durable", "throughput"), goal: 0.6, unit: "x" },
  { target: "order flow: durable >= 0.6x non-durable", value: get(s.burst, "Baton, durable", "throughput") / get(s.burst, "Baton, non-durable", "throughput"), goal: 0.6, unit: "x" },
  { target: "order flow: >= 2x Moleculer", value: get(s.burst, "Baton, durable", "throughput") / get(s.burst, "Moleculer 0.15, 7 services in 3 processes", "throughput"), goal: 2, unit: "x" },
  { target: "order flow: >= 5,000 orders/s", value: get(s.burst, "Baton, durable", "throughput"), goal: 5000, unit: "orders/s" },
  { target: "order flow at 200/s: p50 <= 2 ms (from the scheduled send)", value: get(s.paced, "Baton, durable", "p50 latency"), goal: 2, unit: "ms", lower: true },
  { target: "order flow at 200/s: p99 <= 5 ms (from the scheduled send)", value: get(s.paced, "Baton, durable", "p99 latency"), goal: 5, unit: "ms", lower: true },
  { target: "workflows: >= 2x BullMQ", value: get(s.wf, "Baton mediator, durable", "throughput") / get(s.wf, "BullMQ 5 flows, 2 worker processes", "throughput"), goal: 2, unit: "x" },
  { target: "workflows at 100/s: p99 <= 30 ms (from the scheduled send)", value: get(s.wfPaced, "Baton mediator, durable", "p99 latency"), goal: 30, unit: "ms", lower: true },
  { target: "accept at 1000/s: p99 < 5 ms (from the scheduled send)", value: get(s.accept, "Baton, durable", "p99 latency"), goal: 5, unit: "ms", lower: true },
  { target: "accept at 1000/s with BATON_FRONT=thread (opt-in): p99 < 5 ms (from the scheduled send)", value: get(s.accept, "Baton, durable, front thread", "p99 latency"), goal: 5, unit: "ms", lower: true },
  { target: "request-reply: correlation p50 <= 1.3x raw ping-pong", value: get(s.rr, "Baton, correlation-id mode", "p50 latency") / get(s.rr, "raw MQTT ping-pong on Aedes", "p50 latency"), goal: 1.3, unit: "x", lower: true },
  { target: `order flow over ${size.pgBurst} orders: 1 instance on PostgreSQL >= 0.4x 1 on SQLite`, value: get(s.pgBurst, "Baton, 1 instance, PostgreSQL", "throughput") / get(s.pgBurst, "Baton, 1 instance, SQLite", "throughput"), goal: 0.4, unit: "x" },
  { target: "comment accept: p99 < 25 ms", value: get(s.comments, "initiate/post-comment (asynchronous accept)", "p99 latency"), goal: 25, unit: "ms", lower: true }
]
  .filter((t) => Number.isFinite(t.value))
  .map((t) => ({ ...t, met: t.lower === true ? t.value <= t.goal : t.value >= t.goal }))

const machine = { cores: cpus().length, cpu: cpus()[0]?.model ?? "?", node: process.version, load1: [loadAtStart, loadavg()[0]!] }
const report = { date: new Date().toISOString(), machine, mode: full ? "full" : "quick", command, size, rows, targets, failures, ...extra }

const fmt = (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(1))
const cell = (r: Row) => (r.result.samples.length > 1 ? `${fmt(r.result.median)} ${r.unit} [${fmt(r.result.min)}-${fmt(r.result.max)}]` : `${fmt(r.result.median)} ${r.unit}`)
const grouped = new Map<string, Array<Row>>()
for (const r of rows) grouped.set(`${r.scenario}|${r.contender}`, [...(grouped.get(`${r.scenario}|${r.contender}`) ?? []), r])
const memory = extra.memory as { few: number; many: number; rssFewMb: number; rssManyMb: number; heapFewMb: number; heapManyMb: number } | undefined
const md = [
  `Measured ${report.date.slice(0, 10)} on ${machine.cores} cores (${machine.cpu}), Node ${machine.node}, \`${command}\`${only === undefined ? "" : ` (BENCH_ONLY=${only.join(",")})`}, load average ${machine.load1.map((l) => l.toFixed(1)).join(" at the start, ")} at the end; medians of alternating rounds, min-max in brackets.`,
  "Latencies at a fixed rate count from each message's scheduled send (`bench/src/pacing.ts`), so a sender that fell behind does not hide the wait; the figures from the actual send, and how late the sender was, stand beside them. CPU per order: user + system time of the processes doing the work (Baton's runtime; Moleculer's three service processes and its Aedes), not the load generator's.",
  "",
  "| Scenario | Contender | Result | What it guarantees |",
  "|---|---|---|---|",
  ...[...grouped.values()].map((rs) => `| ${rs[0]!.scenario} | ${rs[0]!.contender} | ${rs.map((r) => `${r.metric} ${cell(r)}`).join("; ")} | ${rs[0]!.guarantee} |`),
  ...(memory === undefined
    ? []
    : ["", `Mediator memory (durable): V8 heap in use ${memory.heapFewMb} MB after ${memory.few} completed workflows, ${memory.heapManyMb} MB after ${memory.many} (workflow state is deleted on completion); RSS ${memory.rssFewMb} MB, then ${memory.rssManyMb} MB.`]),
  "",
  "| Target | Measured | Met |",
  "|---|---|---|",
  ...targets.map((t) => `| ${t.target} | ${fmt(t.value)} ${t.unit} | ${t.met ? "yes" : "**no**"} |`),
  ...(failures.length === 0 ? [] : ["", `Failed runs (left out of the medians): ${failures.map((f) => `${f.contender} in "${f.scenario}" round ${f.round}: ${f.reason}`).join("; ")}.`])
].join("\n")

mkdirSync(`${root}bench/results`, { recursive: true })
writeFileSync(`${root}bench/results/latest.json`, `${JSON.stringify(report, null, 2)}\n`)
writeFileSync(`${root}bench/results/latest.md`, `${md}\n`)
if (only === undefined) {
  const readme = readFileSync(`${root}README.md`, "utf8")
  writeFileSync(`${root}README.md`, readme.replace(/<!-- bench:start -->[\s\S]*<!-- bench:end -->/, `<!-- bench:start -->\n${md}\n<!-- bench:end -->`))
}
process.stdout.write(`\n${md}\n\nwritten: bench/results/latest.json, bench/results/latest.md${only === undefined ? ", README.md" : ""}\n`)
process.exit(0)
