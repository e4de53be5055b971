/**
 * `node bench/src/rrFair.ts <round trips> <rounds> <option> [<option> ...]`: the request-reply
 * scenario (Baton's correlation mode, `requestReply`) and its raw MQTT echo (`rawPingPong`) under
 * several treatments, in interleaved rounds (which side goes first alternates too). An option is
 * `<warm-up round trips>:<settled 1|0>[:requester]` (`BENCH_RR_WARMUP` and `PEER_SETTLE` for both
 * sides: a full collection of the runtime and of the echo's peer once started, or of neither;
 * `requester`: the echo asked through `@baton/request-reply`, `BENCH_RR_RAW_CLIENT`). Prints each
 * run's p50/p99 and their ratio, then per option the medians and the median of the ratios.
 */
import { median } from "./lib.ts"
import { rawPingPong, requestReply } from "./scenarios/latency.ts"

const [countArg = "300", roundsArg = "4", ...options] = process.argv.slice(2)
if (options.length === 0) {
  console.error("usage: node bench/src/rrFair.ts <round trips> <rounds> <warm-up>:<settled 1|0> [...]")
  process.exit(2)
}
const count = Number(countArg)
const runs = new Map(options.map((o) => [o, { baton: [] as Array<{ p50: number; p99: number }>, raw: [] as Array<{ p50: number; p99: number }> }]))
const ms = (v: number) => v.toFixed(3)
for (let round = 0; round < Number(roundsArg); round++) {
  for (const o of round % 2 === 0 ? options : [...options].reverse()) {
    const [warm = "20", settled = "1", rawClient = "raw"] = o.split(":")
    process.env.BENCH_RR_WARMUP = warm
    process.env.PEER_SETTLE = settled
    process.env.BENCH_RR_RAW_CLIENT = rawClient
    const x = runs.get(o)!
    for (const side of round % 2 === 0 ? ["baton", "raw"] : ["raw", "baton"]) {
      if (side === "baton") x.baton.push(await requestReply("correlation", count))
      else x.raw.push(await rawPingPong(count))
    }
    const [b, r] = [x.baton.at(-1)!, x.raw.at(-1)!]
    console.log(`round ${round} ${o}: Baton p50 ${ms(b.p50)} p99 ${ms(b.p99)} | raw p50 ${ms(r.p50)} p99 ${ms(r.p99)} | ${(b.p50 / r.p50).toFixed(2)}x`)
  }
}
for (const [o, { baton, raw }] of runs) {
  const m = (xs: Array<{ p50: number; p99: number }>, k: "p50" | "p99") => median(xs.map((x) => x[k]))
  const ratios = baton.map((b, i) => b.p50 / raw[i]!.p50)
  console.log(`${o}: Baton p50 ${ms(m(baton, "p50"))} p99 ${ms(m(baton, "p99"))}; raw p50 ${ms(m(raw, "p50"))} p99 ${ms(m(raw, "p99"))}; p50 ${(m(baton, "p50") / m(raw, "p50")).toFixed(2)}x (median of the rounds' ratios ${median(ratios).toFixed(2)}x)`)
}
