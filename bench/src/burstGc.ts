/**
 * `node bench/src/burstGc.ts [<orders>] [<rounds>] [<tree>]`: the collector's pauses during the order
 * flow's burst (SQLite, 500 in flight, after 200 orders of warm-up), per set of Node/V8 flags, in
 * interleaved rounds. `BURSTGC_FLAGS`: the sets separated by `|`, put after the runtime's own
 * (`Process.nodeOptions`, which later ones override); by default `--allocation-site-pretenuring|`,
 * V8's pretenuring back on against the runtime as it runs. From `--trace-gc-nvp`, per run: the
 * scavenges and their pauses (median, p95, max, total), the bytes they promoted per order, the
 * mark-compacts and their pauses; at the end the medians over the rounds.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { Process } from "@baton/testkit"
import { median, percentile } from "./lib.ts"
import { placeOrders } from "./scenarios/orders.ts"

const [countArg = "2000", roundsArg = "4", treeArg = "."] = process.argv.slice(2)
const [count, rounds, main] = [Number(countArg), Number(roundsArg), join(resolve(treeArg), "runtime/src/main.ts")]
const sets = (process.env.BURSTGC_FLAGS ?? "--allocation-site-pretenuring|").split("|").map((s) => s.split(" ").filter(Boolean))

interface Run {
  readonly scavenges: number
  readonly scavengeMedianMs: number
  readonly scavengeP95Ms: number
  readonly scavengeMaxMs: number
  readonly scavengeTotalMs: number
  readonly promotedKbPerOrder: number
  readonly markCompacts: number
  readonly markCompactTotalMs: number
}

/** One runtime with `flags`: the collections of its burst (those logged after the warm-up). */
const run = async (flags: ReadonlyArray<string>): Promise<Run> => {
  const dataDir = mkdtempSync(join(tmpdir(), "baton-burstgc-"))
  const r = await Process.startProcess(dataDir, { BATON_PUBLISH_RATE: "1000000" }, ["--trace-gc-nvp", ...flags, main])
  try {
    await placeOrders(r.mqttPort!, 200, "events/order-shipped")
    const from = r.output().length
    await placeOrders(r.mqttPort!, count, "events/order-shipped")
    const gcs = [...r.output().slice(from).matchAll(/pause=([\d.]+) .*? gc=(\w+) .*? promoted=(\d+)/g)].map((m) => ({ pause: Number(m[1]), kind: m[2]!, promoted: Number(m[3]) }))
    const scavenges = gcs.filter((g) => g.kind === "s")
    const pauses = scavenges.map((g) => g.pause)
    const full = gcs.filter((g) => g.kind !== "s")
    const sum = (xs: ReadonlyArray<number>) => xs.reduce((a, b) => a + b, 0)
    return {
      scavenges: scavenges.length,
      scavengeMedianMs: median(pauses),
      scavengeP95Ms: percentile(pauses, 95),
      scavengeMaxMs: Math.max(...pauses),
      scavengeTotalMs: sum(pauses),
      promotedKbPerOrder: sum(scavenges.map((g) => g.promoted)) / count / 1024,
      markCompacts: full.length,
      markCompactTotalMs: sum(full.map((g) => g.pause))
    }
  } finally {
    await r.kill("SIGKILL")
    rmSync(dataDir, { recursive: true, force: true })
  }
}

const name = (i: number) => `[${sets[i]!.join(" ") || "runtime's flags"}]`
const show = (r: Run) =>
  `${r.scavenges} scavenges, pause median ${r.scavengeMedianMs.toFixed(2)} p95 ${r.scavengeP95Ms.toFixed(2)} max ${r.scavengeMaxMs.toFixed(1)} total ${r.scavengeTotalMs.toFixed(0)} ms, ` +
  `promoted ${r.promotedKbPerOrder.toFixed(2)} KB/order, ${r.markCompacts} mark-compacts (${r.markCompactTotalMs.toFixed(0)} ms)`
const results: Array<Array<Run>> = sets.map(() => [])
for (let round = 0; round < rounds; round++) {
  const order = round % 2 === 0 ? [...sets.keys()] : [...sets.keys()].reverse()
  for (const i of order) {
    const r = await run(sets[i]!)
    results[i]!.push(r)
    console.log(`round ${round + 1} ${name(i)}: ${show(r)}`)
  }
}
for (const [i, runs] of results.entries()) {
  const m = (f: (r: Run) => number) => median(runs.map(f))
  console.log(
    `${name(i)} medians: ${show({
      scavenges: m((r) => r.scavenges),
      scavengeMedianMs: m((r) => r.scavengeMedianMs),
      scavengeP95Ms: m((r) => r.scavengeP95Ms),
      scavengeMaxMs: m((r) => r.scavengeMaxMs),
      scavengeTotalMs: m((r) => r.scavengeTotalMs),
      promotedKbPerOrder: m((r) => r.promotedKbPerOrder),
      markCompacts: m((r) => r.markCompacts),
      markCompactTotalMs: m((r) => r.markCompactTotalMs)
    })}`
  )
}
process.exit(0)
