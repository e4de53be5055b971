/**
 * `node bench/src/hopAb.ts <count> <rounds> <tree> [<tree> ...]`: scenario 7's "one Aedes" hop
 * (`<tree>/bench/src/scenarios/cluster.ts` `singleBroker(count)`: a burst of `count` QoS 1
 * messages, then 1,000 at 1,000/s timed from the scheduled send) of each tree, in interleaved
 * rounds (`interleave.ts`): a change to the hop's harness or peer against a base tree, side by side.
 */
import { resolve } from "node:path"
import { pathToFileURL } from "node:url"
import type { HopResult } from "./scenarios/cluster.ts"
import { interleave } from "./interleave.ts"

const [countArg = "3000", roundsArg = "4", ...trees] = process.argv.slice(2)
if (trees.length === 0) {
  console.error("usage: node bench/src/hopAb.ts <count> <rounds> <tree> [<tree> ...]")
  process.exit(2)
}
const hop = async (tree: string): Promise<HopResult> => {
  const cluster = (await import(pathToFileURL(resolve(tree, "bench/src/scenarios/cluster.ts")).href)) as { singleBroker: (count: number) => Promise<HopResult> }
  return cluster.singleBroker(Number(countArg))
}
const fmt = (v: number) => v.toFixed(2)
await interleave({
  trees,
  rounds: Number(roundsArg),
  run: hop,
  line: (s) => `p50 ${fmt(s.p50)} p99 ${fmt(s.p99)} (from the send ${fmt(s.p99Sent)}) p99.9 ${fmt(s.p999)} max ${fmt(s.max)} ms; sender late by at most ${fmt(s.senderLateMax)} ms; ${s.rate.toFixed(0)} msg/s`,
  keys: ["p50", "p99", "p999", "max", "rate"],
  lowest: ["p99"],
  digits: 2
})
process.exit(0)
