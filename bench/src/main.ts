/**
 * `pnpm bench` (quick, a few minutes) or `pnpm bench --full`: runs each scenario's contenders side
 * by side in one run, alternating them round by round (these machines are noisy), and reports
 * medians with min-max and the ratio between contenders. Writes bench/results/latest.json and
 * latest.md, and the README's benchmark table between its bench markers.
 */
import { cpus } from "node:os"
import { mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { orderFlow } from "./orderFlow.ts"

const full = process.argv.includes("--full")
const root = fileURLToPath(new URL("../../", import.meta.url))
const settings = full ? { orders: 10_000, rounds: 5 } : { orders: Number(process.env.BENCH_ORDERS ?? 2_000), rounds: Number(process.env.BENCH_ROUNDS ?? 3) }
const command = `pnpm bench${full ? " --full" : ""}`

const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

interface Contender {
  readonly name: string
  readonly guarantee: string
  readonly env: Record<string, string>
}

const contenders: ReadonlyArray<Contender> = [
  {
    name: "Baton, durable",
    guarantee: "PUBACK after the ingress log commit; effects, inbox and outbox in one SQLite transaction (synchronous=NORMAL, group commit); sessions on disk; effects once across SIGKILL",
    env: { BATON_DURABLE: "true" }
  },
  {
    name: "Baton, non-durable",
    guarantee: "same code path; SQLite synchronous=OFF, broker sessions in memory: a crash may lose acknowledged orders",
    env: { BATON_DURABLE: "false" }
  }
]

const results: Record<string, Array<number>> = Object.fromEntries(contenders.map((c) => [c.name, []]))
const started = Date.now()
for (let round = 1; round <= settings.rounds; round++) {
  // Alternate which contender goes first, so drift on the machine hits both alike.
  const order = round % 2 === 1 ? contenders : [...contenders].reverse()
  for (const c of order) {
    const r = await orderFlow({ orders: settings.orders, env: c.env })
    results[c.name]!.push(r.ordersPerSecond)
    process.stdout.write(`round ${round}/${settings.rounds}  ${c.name.padEnd(20)} ${r.ordersPerSecond.toFixed(0).padStart(6)} orders/s  (${((Date.now() - started) / 1000).toFixed(0)} s elapsed)\n`)
  }
}

const summary = contenders.map((c) => {
  const xs = results[c.name]!
  return { contender: c.name, guarantee: c.guarantee, median: median(xs), min: Math.min(...xs), max: Math.max(...xs), samples: xs }
})
const ratio = summary[0]!.median / summary[1]!.median
const machine = { cores: cpus().length, cpu: cpus()[0]?.model ?? "?", node: process.version }
const report = {
  date: new Date().toISOString(),
  machine,
  mode: full ? "full" : "quick",
  command,
  scenarios: [
    {
      name: "broker-topology order flow, one client, all orders approved",
      configuration: { orders: settings.orders, rounds: settings.rounds, qos: 1, partitions: 4 },
      unit: "orders/s to order-shipped",
      results: summary,
      ratio: { "durable / non-durable": ratio }
    }
  ]
}

const fmt = (n: number) => n.toFixed(0)
const md = [
  `Measured ${report.date.slice(0, 10)} on ${machine.cores} cores (${machine.cpu}), Node ${machine.node}, \`${command}\`; medians of ${settings.rounds} alternating rounds, min-max in brackets.`,
  "",
  "| Scenario | Contender | Throughput | What it guarantees |",
  "|---|---|---|---|",
  ...summary.map((s) => `| order flow, ${settings.orders} orders | ${s.contender} | ${fmt(s.median)} orders/s [${fmt(s.min)}-${fmt(s.max)}] | ${s.guarantee} |`),
  "",
  `Durable / non-durable throughput: **${ratio.toFixed(2)}x** (target >= 0.6x).`
].join("\n")

mkdirSync(`${root}bench/results`, { recursive: true })
writeFileSync(`${root}bench/results/latest.json`, `${JSON.stringify(report, null, 2)}\n`)
writeFileSync(`${root}bench/results/latest.md`, `${md}\n`)
const readme = readFileSync(`${root}README.md`, "utf8")
const updated = readme.replace(/<!-- bench:start -->[\s\S]*<!-- bench:end -->/, `<!-- bench:start -->\n${md}\n<!-- bench:end -->`)
writeFileSync(`${root}README.md`, updated)
process.stdout.write(`\n${md}\n\nwritten: bench/results/latest.json, bench/results/latest.md, README.md\n`)
