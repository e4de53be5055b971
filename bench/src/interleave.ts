/**
 * Interleaved rounds for side-by-side measurements of several git trees (`acceptAb.ts`,
 * `rrCounters.ts`): each round runs every tree once, alternating which goes first; then per tree
 * the median of each figure, its pairwise ratio to the first tree's (the median of the per-round
 * ratios) and in how many rounds the tree had the lowest value of each figure in `lowest`.
 */
import { ioCalls, median } from "./lib.ts"

/** A runtime's store statements so far (its own count, `/healthz`; NaN for a tree that does not count them). */
export const statements = async (httpPort: number): Promise<number> => ((await (await fetch(`http://127.0.0.1:${httpPort}/healthz`)).json()) as { statements?: number }).statements ?? Number.NaN
/**
 * The main thread's idle spin so far (`/metrics`: windows started after a reply, requests caught
 * while polling); NaN from a tree older than these counters.
 */
export const idleSpin = async (httpPort: number): Promise<{ readonly windows: number; readonly hits: number }> => {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text()
  const read = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? Number.NaN)
  return { windows: read("baton_idle_spin_windows_total"), hits: read("baton_idle_spin_hits_total") }
}
/** Write syscalls of a process so far (`syscw` of /proc/<pid>/io: WAL frames, socket writes). */
export const writes = (pid: number): number => ioCalls(pid, "syscw")

export const interleave = async <R extends Record<K, number>, K extends string>(options: {
  readonly trees: ReadonlyArray<string>
  readonly rounds: number
  /** One run of a tree (`index`: its place among the tree arguments, which may name one tree twice). */
  readonly run: (tree: string, index: number) => Promise<R>
  /** One run's line. */
  readonly line: (run: R) => string
  readonly keys: ReadonlyArray<K>
  readonly lowest: ReadonlyArray<K>
  readonly digits: number
}): Promise<void> => {
  const { trees, rounds } = options
  const runs = trees.map((): Array<R> => [])
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? trees.map((_, i) => i) : trees.map((_, i) => i).reverse()
    for (const i of order) {
      const r = await options.run(trees[i]!, i)
      runs[i]!.push(r)
      console.log(`round ${round} ${trees[i]}: ${options.line(r)}`)
    }
  }
  const wins = (k: K) => {
    const counts = trees.map(() => 0)
    for (let r = 0; r < rounds; r++) {
      const values: Array<number> = runs.map((rs) => rs[r]![k])
      counts[values.indexOf(Math.min(...values))]!++
    }
    return counts
  }
  const lowest = options.lowest.map((k) => [k, wins(k)] as const)
  for (const [i, tree] of trees.entries()) {
    const figures = options.keys.map((k) => `${k} ${median(runs[i]!.map((s) => s[k])).toFixed(options.digits)} (${median(runs[i]!.map((s, r) => s[k] / runs[0]![r]![k])).toFixed(2)}x)`)
    console.log(`${tree}: ${figures.join(", ")}; ${lowest.map(([k, w]) => `lowest ${k} in ${w[i]}/${rounds} rounds`).join(", ")}`)
  }
}
