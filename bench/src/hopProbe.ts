/**
 * `node bench/src/hopProbe.ts <rounds> [layers] [count] [burst]`: where the tail of a paced hop at
 * 1,000 messages/s comes from, layer by layer, in interleaved rounds (issue #16). Each layer paces
 * `count` (default 1000) messages at 1,000/s with `pacing.ts`'s `paced` and records them from the
 * scheduled send (`tracker`), as the bench's latency scenarios do:
 *
 * - `cyclic`: no Node: `cyclic.c` (compiled into the temp folder) waking every 1 ms on an absolute
 *   schedule: the machine's own floor (scheduler, timers, the VM).
 * - `spin`: `cyclic.c spin`: a thread spinning on the clock for a second, the gaps it did not run.
 * - `fault`: `cyclic.c fault`: ms to touch 64 MB of fresh memory (a page fault a page), and again.
 * - `timer`: Node, nothing but `paced` itself: each message is "done" when it is sent. The sender's
 *   lateness: the harness's and the machine's floor under every paced figure.
 * - `tcp`: a raw TCP relay in its own Node process (8 bytes a message, from one connection of this
 *   process to another, TCP_NODELAY): the hop with Node's sockets and no MQTT.
 * - `aedes`: the bench's scenario 7 hop (`cluster.ts` `hop`): a QoS 1 message from a publisher to a
 *   subscriber (both MQTT.js, in this process) through `peers/aedes.ts` (its own process), after
 *   `burst` messages at 500 in flight (default 3000, the quick bench's; `0`: none, a warm-up of 200).
 * - `aedes0`: the same with no burst before it (a warm-up of 200 messages at 50 in flight).
 * - `aedesS`, `aedes0S`: the same, the peer settled as it starts (`settle.ts`: one full GC before
 *   its `ready`, as the peer now does by default), so that its start's garbage is not collected in
 *   the paced window; `aedes` and `aedes0` run it with PEER_SETTLE=0 (as before).
 *
 * For `tcp`/`aedes` the broker or relay runs with `tailProbe.mjs` preloaded (its stalls over 3 ms
 * and GCs; `HOP_PROBE=0`: not), and this process records its own GCs and, with `HOP_SELF=1`, its
 * stalls (a 1 ms interval, as the probe's). Each run prints p50/p99/p99.9/max from the schedule, the
 * sender's lateness, the messages over 5 ms, and those attributed to what overlapped them: the
 * sender late (> 2 ms), a GC or stall in this process, or in the peer's; the rest "unexplained".
 * Layers default to `cyclic,timer,tcp,aedes,aedes0`; `uptime`'s load is printed each round.
 */
import { execFileSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createConnection, type Socket } from "node:net"
import { loadavg, tmpdir } from "node:os"
import { join } from "node:path"
import { PerformanceObserver } from "node:perf_hooks"
import { fileURLToPath } from "node:url"
import mqtt from "mqtt"
import { burst, child, counter, median, minorFaults, noDelay, sleep, within, type Child } from "./lib.ts"
import { paced, recorder } from "./pacing.ts"

const [roundsArg = "3", layersArg = "cyclic,timer,tcp,aedes,aedes0", countArg = "1000", burstArg = "3000"] = process.argv.slice(2)
const [rounds, count, burstCount] = [Number(roundsArg), Number(countArg), Number(burstArg)]
const layers = layersArg.split(",")
const work = mkdtempSync(join(tmpdir(), "baton-hop-probe-"))
const cyclic = join(work, "cyclic")
execFileSync("gcc", ["-O2", "-o", cyclic, fileURLToPath(new URL("./cyclic.c", import.meta.url))])

type Span = readonly [at: number, ms: number]
interface Probe {
  readonly gcs: Array<Span>
  readonly stalls: Array<Span>
}
interface Msg {
  due: number
  sent: number
  done: number
}

/** This process's GCs (and with HOP_SELF=1 its stalls over 3 ms), in epoch ms, while `body` runs. */
const selfProbe = async <A>(body: () => Promise<A>): Promise<{ readonly result: A; readonly probe: Probe }> => {
  const probe: Probe = { gcs: [], stalls: [] }
  const t0 = performance.timeOrigin
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) probe.gcs.push([t0 + e.startTime, e.duration])
  })
  observer.observe({ entryTypes: ["gc"] })
  let last = performance.now()
  const interval =
    process.env.HOP_SELF === "1"
      ? setInterval(() => {
          const now = performance.now()
          if (now - last > 3) probe.stalls.push([t0 + last, now - last])
          last = now
        }, 1)
      : undefined
  try {
    return { result: await body(), probe }
  } finally {
    clearInterval(interval)
    observer.disconnect()
  }
}

/** A peer process's probe (tailProbe.mjs), read after SIGUSR2. */
const peerProbe = async (peer: Child, file: string): Promise<Probe> => {
  if (process.env.HOP_PROBE === "0") return { gcs: [], stalls: [] }
  peer.child.kill("SIGUSR2")
  for (let i = 0; i < 50; i++) {
    try {
      const p = JSON.parse(readFileSync(file, "utf8")) as { gcs: Array<[number, number, number]>; stalls: Array<Span> }
      return { gcs: p.gcs.map(([at, d]) => [at, d] as const), stalls: p.stalls }
    } catch {
      await sleep(20)
    }
  }
  throw new Error(`no probe output in ${file}`)
}

/** HOP_PEER_V8 (say `--trace-gc`): V8 flags the peer sets as it starts (NODE_OPTIONS refuses them), its output printed after each run. */
const v8Preload = join(work, "v8flags.mjs")
writeFileSync(v8Preload, `import v8 from "node:v8"\nv8.setFlagsFromString(process.env.HOP_PEER_V8 ?? "")\n`)
/** The peer's environment: the probe preloaded (unless HOP_PROBE=0), and HOP_PEER_V8's flags. */
const probeEnv = (file: string): Record<string, string> => {
  const options = `${process.env.NODE_OPTIONS ?? ""}${process.env.HOP_PEER_V8 === undefined ? "" : ` --import ${v8Preload}`}`
  return process.env.HOP_PROBE === "0" ? { NODE_OPTIONS: options } : { NODE_OPTIONS: `${options} --import ${fileURLToPath(new URL("./tailProbe.mjs", import.meta.url))}`, PROBE_OUT: file }
}
const peerOutput = (peer: Child): string => (process.env.HOP_PEER_V8 === undefined ? "" : `\n${peer.output().trim()}`)

/** Paces `count` messages; `send(i)` sends message i, and `msgs[i].done` is set (epoch ms) by the caller when it arrives. */
const pacedRun = async (send: (i: number) => void, arrived: Promise<unknown>): Promise<Array<Msg>> => {
  const t0 = performance.timeOrigin
  const msgs: Array<Msg> = []
  await paced(1000, count, (i, due) => {
    msgs[i] = { due: t0 + due, sent: t0 + performance.now(), done: Number.NaN }
    send(i)
  })
  await within(arrived, 60_000, "paced messages")
  return msgs
}

const nowEpoch = () => performance.timeOrigin + performance.now()

interface Result {
  readonly line: string
  readonly p99: number
}

/** Percentiles from the schedule, and the slow messages (> 5 ms) attributed to what overlapped them. */
const summarize = (msgs: ReadonlyArray<Msg>, self: Probe, peer: Probe): Result => {
  const rec = recorder()
  for (const m of msgs) rec.record(m.due, m.sent, m.done)
  const s = rec.summary()
  const slow = msgs.filter((m) => m.done - Math.min(m.due, m.sent) > 5)
  const overlaps = (spans: ReadonlyArray<Span>, m: Msg) => spans.some(([at, d]) => at < m.done && at + d > m.due)
  const causes = { senderLate: 0, selfGc: 0, selfStall: 0, peerGc: 0, peerStall: 0, unexplained: 0 }
  for (const m of slow) {
    const hits = {
      senderLate: m.sent - m.due > 2,
      selfGc: overlaps(self.gcs, m),
      selfStall: overlaps(self.stalls, m),
      peerGc: overlaps(peer.gcs, m),
      peerStall: overlaps(peer.stalls, m)
    }
    for (const [k, v] of Object.entries(hits)) if (v) causes[k as keyof typeof hits]++
    if (!Object.values(hits).some((v) => v)) causes.unexplained++
  }
  const gcMax = (gcs: ReadonlyArray<Span>) => Math.max(0, ...gcs.map(([, d]) => d)).toFixed(1)
  const inRun = (spans: ReadonlyArray<Span>) => spans.filter(([at]) => at >= msgs[0]!.due && at <= Math.max(...msgs.map((m) => m.done)))
  const f = (v: number) => v.toFixed(2)
  return {
    p99: s.p99,
    line:
      `p50 ${f(s.p50)} p99 ${f(s.p99)} p99.9 ${f(s.p999)} max ${f(s.max)} ms (from the send: p99 ${f(s.p99Sent)}); sender late max ${f(s.senderLateMax)}; ` +
      `> 5 ms: ${slow.length} [${Object.entries(causes)
        .filter(([, v]) => v > 0)
        .map(([k, v]) => `${k} ${v}`)
        .join(", ")}]; gcs self ${inRun(self.gcs).length} (max ${gcMax(inRun(self.gcs))}) peer ${inRun(peer.gcs).length} (max ${gcMax(inRun(peer.gcs))}), peer stalls ${inRun(peer.stalls).length}`
  }
}

/** `cyclic.c` in a mode; its p99 in ms (for `fault`: the ms per MB touched the first time). */
const runCyclic = (mode: "" | "spin" | "fault"): Result => {
  const args = mode === "" ? ["1000", String(count)] : mode === "spin" ? ["1000", "1000", "spin"] : ["0", "64", "fault"]
  const lines = execFileSync(cyclic, args, { encoding: "utf8" }).trim().split("\n")
  const first = JSON.parse(lines[0]!) as { p99?: number; msPerMb?: number }
  return { line: lines.join(" "), p99: first.p99 === undefined ? first.msPerMb! : first.p99 / 1000 }
}

const runTimer = async (): Promise<Result> => {
  const { result: msgs, probe } = await selfProbe(() =>
    pacedRun(() => {}, Promise.resolve()).then((ms) => {
      for (const m of ms) m.done = m.sent
      return ms
    })
  )
  return summarize(msgs, probe, { gcs: [], stalls: [] })
}

const connect = (port: number): Promise<Socket> =>
  new Promise((resolve, reject) => {
    const s = createConnection({ port, host: "127.0.0.1", noDelay: true }, () => resolve(s))
    s.on("error", reject)
  })

const runTcp = async (): Promise<Result> => {
  const file = join(work, "tcp-probe.json")
  const peer = await child("hopRelay.cjs", probeEnv(file))
  try {
    const port = Number(peer.info.port)
    const pub = await connect(port)
    await sleep(50)
    const sub = await connect(port)
    await sleep(50)
    const buf = Buffer.alloc(8)
    let pending = Buffer.alloc(0)
    const got = counter(count + 200)
    let msgs: Array<Msg> = []
    sub.on("data", (b: Buffer) => {
      pending = Buffer.concat([pending, b])
      const at = nowEpoch()
      for (; pending.length >= 8; pending = pending.subarray(8)) {
        const i = pending.readInt32LE(0)
        if (i >= 0 && msgs[i] !== undefined) msgs[i]!.done = at
        got.hit()
      }
    })
    const send = (i: number) => {
      buf.writeInt32LE(i, 0)
      pub.write(Buffer.from(buf))
    }
    for (let i = 0; i < 200; i++) send(-1 - i) // warm-up
    await sleep(200)
    const { result, probe } = await selfProbe(async () => {
      const t0 = performance.timeOrigin
      await paced(1000, count, (i, due) => {
        msgs[i] = { due: t0 + due, sent: t0 + performance.now(), done: Number.NaN }
        send(i)
      })
      await within(got.done, 60_000, "tcp relay")
      return msgs
    })
    msgs = result
    const peerP = await peerProbe(peer, file)
    pub.destroy()
    sub.destroy()
    return summarize(msgs, probe, peerP)
  } finally {
    await peer.stop()
  }
}

/** The scenario 7 hop (cluster.ts `hop`), one Aedes, publisher and subscriber in this process. */
const runAedes = async (before: number, settled: boolean): Promise<Result> => {
  const file = join(work, "aedes-probe.json")
  rmSync(file, { force: true })
  const node = await child("peers/aedes.ts", { ...probeEnv(file), PEER_SETTLE: settled ? "1" : "0" })
  try {
    const port = Number(node.info.port)
    const sub = noDelay(await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0 }))
    const pub = noDelay(await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0 }))
    const topic = `bench/hop/${Math.random().toString(36).slice(2)}`
    await sub.subscribeAsync(topic, { qos: 1 })
    await sleep(200)
    const msgs: Array<Msg> = []
    let got = counter(before === 0 ? 200 : before)
    sub.on("message", (_t, payload) => {
      const i = Number(payload.toString())
      if (i >= 0 && msgs[i] !== undefined) msgs[i]!.done = nowEpoch()
      got.hit()
    })
    await burst(before === 0 ? 200 : before, before === 0 ? 50 : 500, (i) => pub.publishAsync(topic, String(-1 - i), { qos: 1 }))
    await within(got.done, 60_000, "burst")
    got = counter(count)
    const faults = () => [minorFaults(node.child.pid!), minorFaults(process.pid)]
    const faults0 = faults()
    const { probe } = await selfProbe(async () => {
      const t0 = performance.timeOrigin
      await paced(1000, count, (i, due) => {
        msgs[i] = { due: t0 + due, sent: t0 + performance.now(), done: Number.NaN }
        void pub.publishAsync(topic, String(i), { qos: 1 })
      })
      await within(got.done, 60_000, "paced hop")
    })
    const [peerFaults, selfFaults] = faults().map((n, i) => n - faults0[i]!)
    const peerP = await peerProbe(node, file)
    await sub.endAsync()
    await pub.endAsync()
    const r = summarize(msgs, probe, peerP)
    return { ...r, line: `${r.line}; page faults peer ${peerFaults} self ${selfFaults}${peerOutput(node)}` }
  } finally {
    await node.stop()
  }
}

const run = (layer: string): Promise<Result> | Result => {
  switch (layer) {
    case "cyclic":
      return runCyclic("")
    case "spin":
      return runCyclic("spin")
    case "fault":
      return runCyclic("fault")
    case "timer":
      return runTimer()
    case "tcp":
      return runTcp()
    case "aedes":
      return runAedes(burstCount, false)
    case "aedes0":
      return runAedes(0, false)
    case "aedesS":
      return runAedes(burstCount, true)
    case "aedes0S":
      return runAedes(0, true)
    default:
      throw new Error(`unknown layer ${layer}`)
  }
}

const p99s = new Map<string, Array<number>>()
try {
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? layers : [...layers].reverse()
    for (const layer of order) {
      const load = loadavg()[0]!.toFixed(2)
      const r = await run(layer)
      p99s.set(layer, [...(p99s.get(layer) ?? []), r.p99])
      console.log(`round ${round} load ${load} ${layer}: ${r.line}`)
    }
  }
  for (const [layer, xs] of p99s) console.log(`${layer}: p99 median ${median(xs).toFixed(2)} ms [${xs.map((x) => x.toFixed(2)).join(" ")}]`)
} finally {
  rmSync(work, { recursive: true, force: true })
}
process.exit(0)

