/**
 * `node bench/src/rr.ts <round trips> <rounds> <tree> [<tree> ...]`: request-reply round trips
 * (correlation mode, the ping processor; each tree's own runtime, `<tree>/runtime/src/main.ts`,
 * under this tree's harness, so that every tree gets the same warm-up and settling: see
 * `requestReply`) and the raw MQTT echo, in interleaved rounds, so that a change is measured
 * against a base tree on the same machine at the same time. Prints each run's p50/p99 and, at
 * the end, the medians per tree and their ratios to the first tree's.
 * `BATON_AB_TREE_ENV`, as ab.ts's (`treeEnvs`): one set of `NAME=value` words per tree argument,
 * separated by `|`, the runtime's environment for that arm alone: `. .` with
 * `BATON_AB_TREE_ENV="|BATON_FRONT=log"` compares the front thread's log against none on one tree.
 */
import { resolve } from "node:path"
import { median, treeEnvs, withEnv } from "./lib.ts"
import { rawPingPong, requestReply } from "./scenarios/latency.ts"

const [countArg = "2000", roundsArg = "4", ...trees] = process.argv.slice(2)
if (trees.length === 0) {
  console.error("usage: node bench/src/rr.ts <round trips> <rounds> <tree> [<tree> ...]")
  process.exit(2)
}
const count = Number(countArg)
const envs = treeEnvs(process.env.BATON_AB_TREE_ENV, trees.length)
/** Each tree argument's name in the output, with its environment (the same tree may be given twice). */
const names = trees.map((t, i) => withEnv(t, envs[i]!))
const p50s = trees.map((): Array<number> => [])
const p99s = trees.map((): Array<number> => [])
const raw: Array<number> = []
for (let round = 0; round < Number(roundsArg); round++) {
  // Alternate which tree goes first.
  const order = round % 2 === 0 ? trees.map((_, i) => i) : trees.map((_, i) => i).reverse()
  for (const i of order) {
    const s = await requestReply("correlation", count, resolve(trees[i]!, "runtime/src/main.ts"), envs[i])
    p50s[i]!.push(s.p50)
    p99s[i]!.push(s.p99)
    console.log(`round ${round} ${names[i]}: p50 ${s.p50.toFixed(3)} ms, p99 ${s.p99.toFixed(3)} ms`)
  }
  const r = await rawPingPong(count)
  raw.push(r.p50)
  console.log(`round ${round} raw echo: p50 ${r.p50.toFixed(3)} ms, p99 ${r.p99.toFixed(3)} ms`)
}
const rawMedian = median(raw)
for (const [i, tree] of names.entries()) {
  const p50 = median(p50s[i]!)
  const pairwise = median(p50s[i]!.map((v, r) => v / p50s[0]![r]!))
  console.log(`${tree}: p50 ${p50.toFixed(3)} ms (pairwise ${pairwise.toFixed(2)}x), p99 ${median(p99s[i]!).toFixed(3)} ms, ${(p50 / rawMedian).toFixed(2)}x raw echo (${rawMedian.toFixed(3)} ms)`)
}
