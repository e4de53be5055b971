/**
 * Latency scenarios. Accept: publish → PUBACK of `initiate/place-order` at a fixed rate (the
 * PUBACK means the event is committed to the ingress log), from each publish's scheduled time
 * (`pacing.ts`). Request-reply: sequential round trips (a closed loop: each timed from its send)
 * in the correlation-id and temporary-queue modes against the ping processor, and a raw MQTT
 * ping-pong baseline (a hand-written MQTT.js echo on a bare Aedes). Comments: accepting
 * `initiate/post-comment` versus the synchronous `POST /comments`.
 */
import mqtt from "mqtt"
import { Log } from "@baton/core"
import { make, type Mode } from "@baton/request-reply"
import { burst, child, counter, noDelay, rrWarmup, sleep, warmup, within } from "../lib.ts"
import { paced, tracker, type LatencySummary } from "../pacing.ts"
import { placeOrders } from "./orders.ts"
import { onRuntime } from "./runtime.ts"

export type Latency = LatencySummary

const order = (i: number) => JSON.stringify({ customerId: `acc-${i % 100}`, email: "a@example.com", items: [{ sku: `BOOK-${(i % 5) + 1}`, qty: 1, price: 9.5 }], payment: { card: "4242424242424242" } })

export const accept = (rate: number, count: number, env: Record<string, string> = {}): Promise<Latency> =>
  onRuntime(env, async (r) => {
    // The warm-up every fixed-rate scenario gets (orders through to the end: nothing left running).
    await placeOrders(r.mqttPort!, warmup(), "events/order-shipped")
    const client = noDelay(await mqtt.connectAsync(`mqtt://127.0.0.1:${r.mqttPort}`, { protocolVersion: 4, reconnectPeriod: 0 }))
    const accepted = tracker<number>()
    const pending: Array<Promise<unknown>> = []
    await paced(rate, count, (i, due) => {
      accepted.sent(i, due)
      pending.push(client.publishAsync("initiate/place-order", order(i), { qos: 1 }).then(() => accepted.done(i)))
    })
    await Promise.all(pending)
    await client.endAsync()
    return accepted.summary()
  })

const roundTrips = async (count: number, once: () => Promise<unknown>, warm = 20): Promise<Latency> => {
  for (let i = 0; i < warm; i++) await once() // warm-up
  const trips = tracker<number>()
  for (let i = 0; i < count; i++) {
    trips.sent(i)
    await once()
    trips.done(i)
  }
  return trips.summary()
}

/**
 * Request-reply and its raw baseline get the same treatment, so that both are measured in the
 * steady state a long-running process is in: a full collection once started (the runtime with
 * `--expose-gc` and `/healthz?gc=1`, the echo's peer `settle.ts`; `PEER_SETTLE=0`: neither side),
 * then a warm-up of their own (`BENCH_RR_WARMUP` round trips, 10,000; lib.ts `rrWarmup` says why
 * 1,000, the other scenarios' `BENCH_WARMUP`, was too few for a round trip). With 20 round trips of
 * warm-up both sides still carried their start, the runtime most (`bench/src/rrFair.ts`, 300 round
 * trips, six interleaved rounds, load 2-5, medians of the p50s, 2026-12-02: the echo alone
 * collected, as until then, Baton 0.91 ms against 0.42, 2.2x; both 0.88 against 0.36, 2.4x;
 * neither 0.97 against 0.64, 1.5x; after 1,000 round trips, both collected 0.47 against 0.21,
 * 2.3x; neither 0.50-0.54 against 0.25-0.27, 2.0x).
 */
const settled = (): boolean => process.env.PEER_SETTLE !== "0"

/**
 * `main`: the runtime to run (`rr.ts`: each tree's, under this tree's harness); the testkit's by
 * default. `env`: more of the runtime's environment (`rr.ts`: its arm's `BATON_AB_TREE_ENV`); its
 * `NODE_OPTIONS` keeps `--expose-gc`, which the settling needs.
 */
export const requestReply = (mode: Mode, count: number, main?: string, env: Readonly<Record<string, string>> = {}): Promise<Latency> =>
  onRuntime({ BATON_APP: "ping", ...env, ...(settled() ? { NODE_OPTIONS: `${env.NODE_OPTIONS ?? process.env.NODE_OPTIONS ?? ""} --expose-gc`.trim() } : {}) }, async (r) => {
    if (settled()) await (await fetch(`http://127.0.0.1:${r.httpPort}/healthz?gc=1`)).arrayBuffer()
    const clientId = `bench-${mode}`
    const client = noDelay(await mqtt.connectAsync(`mqtt://127.0.0.1:${r.mqttPort}`, { protocolVersion: 4, clientId, reconnectPeriod: 0 }))
    const requester = await make(client, { clientId, mode, timeoutMs: 10_000, logger: Log.silent })
    try {
      let n = 0
      return await roundTrips(count, () => requester.request("initiate/ping", { n: n++ }), rrWarmup())
    } finally {
      await requester.close()
      await client.endAsync()
    }
  }, main)

/** The raw echo (`peers/aedes.ts`); `peerEnv` picks another peer there (`rrFloor.ts`'s `PEER=durable-echo`). */
export const rawPingPong = async (count: number, peerEnv: Readonly<Record<string, string>> = { PEER: "echo" }): Promise<Latency> => {
  const peer = await child("peers/aedes.ts", { ...peerEnv, PEER_SETTLE: settled() ? "1" : "0" })
  const client = noDelay(await mqtt.connectAsync(`mqtt://127.0.0.1:${String(peer.info.port)}`, { protocolVersion: 4, clientId: "raw-requester", reconnectPeriod: 0 }))
  try {
    // `BENCH_RR_RAW_CLIENT=requester`: the echo asked through `@baton/request-reply`, Baton's own client.
    if (process.env.BENCH_RR_RAW_CLIENT === "requester") {
      const requester = await make(client, { clientId: "raw-requester", mode: "correlation", timeoutMs: 10_000, logger: Log.silent })
      let n = 0
      return await roundTrips(count, () => requester.request("rr/req", { n: n++ }), rrWarmup())
    }
    let waiting: (() => void) | undefined
    client.on("message", () => waiting?.())
    await client.subscribeAsync("reply/raw-requester/replies", { qos: 1 })
    let n = 0
    return await roundTrips(count, async () => {
      const replied = new Promise<void>((resolve) => (waiting = resolve))
      await client.publishAsync("rr/req", JSON.stringify({ id: String(n++), replyTo: "reply/raw-requester/replies", data: { n } }), { qos: 1 })
      await replied
    }, rrWarmup())
  } finally {
    await client.endAsync()
    await peer.stop()
  }
}

export const comments = (accepts: number, synchronous: number): Promise<{ readonly accept: Latency; readonly synchronous: Latency }> =>
  onRuntime({ BATON_APP: "comments" }, async (r) => {
    const client = noDelay(await mqtt.connectAsync(`mqtt://127.0.0.1:${r.mqttPort}`, { protocolVersion: 4, reconnectPeriod: 0 }))
    const comment = (i: number) => ({ author: `a${i}`, email: "a@example.com", text: `Comment number ${i}.` })
    const accepted = await roundTrips(accepts, async () => client.publishAsync("initiate/post-comment", JSON.stringify(comment(Math.random())), { qos: 1 }))
    await client.endAsync()
    // One request every 50 ms, each timed from its scheduled start.
    const posts = tracker<number>()
    const t0 = performance.now()
    await Promise.all(
      Array.from({ length: synchronous }, async (_, i) => {
        await sleep(i * 50)
        posts.sent(i, t0 + i * 50)
        const res = await fetch(`http://127.0.0.1:${r.httpPort}/comments`, { method: "POST", body: JSON.stringify(comment(i)) })
        await res.json()
        posts.done(i)
      })
    )
    return { accept: accepted, synchronous: posts.summary() }
  })

/** Context: one publisher, one subscriber, QoS 1, 64-byte messages, 100 in flight, on a broker at `port`. */
export const pubSub = async (port: number, count: number): Promise<number> => {
  const topic = `bench/ctx/${crypto.randomUUID().slice(0, 8)}`
  const sub = noDelay(await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0 }))
  const pub = noDelay(await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0 }))
  const got = counter(count)
  sub.on("message", () => got.hit())
  await sub.subscribeAsync(topic, { qos: 1 })
  const payload = Buffer.alloc(64, 120)
  const t0 = performance.now()
  // 100 in flight: Mosquitto queues at most 1,000 messages for a subscriber by default and drops
  // the rest, so a deeper window would measure its drops.
  await burst(count, 100, () => pub.publishAsync(topic, payload, { qos: 1 }))
  await within(got.done, 30_000, `${count} messages through the broker (${got.count()} arrived)`)
  const rate = count / ((performance.now() - t0) / 1000)
  await Promise.all([sub.endAsync(), pub.endAsync()])
  return rate
}

export const aedesPubSub = async (count: number): Promise<number> => {
  const peer = await child("peers/aedes.ts")
  try {
    return await pubSub(Number(peer.info.port), count)
  } finally {
    await peer.stop()
  }
}
