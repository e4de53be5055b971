/**
 * `node bench/src/rrCurve.ts <round trips> <per segment> [<rounds>]`: how request-reply's p50
 * moves over a fresh process's life. In alternating rounds, Baton (the ping processor, correlation
 * mode, this tree's runtime, settled by a full collection as scenario 5's) and the raw echo
 * (`peers/aedes.ts`, `PEER=echo`, its own MQTT.js requester) each answer `<round trips>`
 * sequential round trips with no warm-up; printed: the p50 of each segment of `<per segment>`, in
 * microseconds, then per side the median over the rounds of each segment. What it answers: how
 * many round trips of warm-up (`BENCH_RR_WARMUP`, lib.ts `rrWarmup`) put scenario 5 in each side's
 * steady state. `RR_CURVE_ENV="NAME=value ..."`: more of the runtime's environment.
 */
import mqtt from "mqtt"
import { Log } from "@baton/core"
import { make } from "@baton/request-reply"
import { child, median, noDelay } from "./lib.ts"
import { onRuntime } from "./scenarios/runtime.ts"

const [totalArg = "12000", segmentArg = "1000", roundsArg = "2"] = process.argv.slice(2)
const total = Number(totalArg)
const segment = Number(segmentArg)
const env: Record<string, string> = { BATON_APP: "ping", NODE_OPTIONS: "--expose-gc" }
for (const word of (process.env.RR_CURVE_ENV ?? "").split(" ").filter((w) => w !== "")) {
  const at = word.indexOf("=")
  env[word.slice(0, at)] = word.slice(at + 1)
}

/** The p50 of each segment of `total` sequential calls of `once`, in microseconds. */
const curve = async (once: () => Promise<unknown>): Promise<Array<number>> => {
  const times: Array<number> = []
  for (let i = 0; i < total; i++) {
    const t = performance.now()
    await once()
    times.push(performance.now() - t)
  }
  const p50s: Array<number> = []
  for (let i = 0; i < total; i += segment) p50s.push(median(times.slice(i, i + segment)) * 1000)
  return p50s
}

const baton = () =>
  onRuntime(env, async (r) => {
    await (await fetch(`http://127.0.0.1:${r.httpPort}/healthz?gc=1`)).arrayBuffer()
    const client = noDelay(await mqtt.connectAsync(`mqtt://127.0.0.1:${r.mqttPort}`, { protocolVersion: 4, clientId: "bench-curve", reconnectPeriod: 0 }))
    const requester = await make(client, { clientId: "bench-curve", mode: "correlation", timeoutMs: 10_000, logger: Log.silent })
    try {
      let n = 0
      return await curve(() => requester.request("initiate/ping", { n: n++ }))
    } finally {
      await requester.close()
      await client.endAsync()
    }
  })

const raw = async () => {
  const peer = await child("peers/aedes.ts", { PEER: "echo", PEER_SETTLE: "1" })
  const client = noDelay(await mqtt.connectAsync(`mqtt://127.0.0.1:${String(peer.info.port)}`, { protocolVersion: 4, clientId: "raw-requester", reconnectPeriod: 0 }))
  try {
    let waiting: (() => void) | undefined
    client.on("message", () => waiting?.())
    await client.subscribeAsync("reply/raw-requester/replies", { qos: 1 })
    let n = 0
    return await curve(async () => {
      const replied = new Promise<void>((resolve) => (waiting = resolve))
      await client.publishAsync("rr/req", JSON.stringify({ id: String(n++), replyTo: "reply/raw-requester/replies", data: { n } }), { qos: 1 })
      await replied
    })
  } finally {
    await client.endAsync()
    await peer.stop()
  }
}

const sides = { baton, "raw echo": raw } as const
const runs: Record<string, Array<Array<number>>> = { baton: [], "raw echo": [] }
for (let round = 0; round < Number(roundsArg); round++) {
  const order = round % 2 === 0 ? (["baton", "raw echo"] as const) : (["raw echo", "baton"] as const)
  for (const side of order) {
    const p50s = await sides[side]()
    runs[side]!.push(p50s)
    console.log(`round ${round} ${side}: p50 us per ${segment} round trips: ${p50s.map((p) => p.toFixed(0)).join(" ")}`)
  }
}
for (const [side, rounds] of Object.entries(runs)) {
  const merged = rounds[0]!.map((_, i) => median(rounds.map((r) => r[i]!)))
  console.log(`${side}: median p50 us per ${segment} round trips: ${merged.map((p) => p.toFixed(0)).join(" ")}`)
}
