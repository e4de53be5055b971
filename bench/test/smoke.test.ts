/** Each benchmark scenario, tiny, so that they do not rot. No figure is asserted: benchmarks are not tests. */
import { describe, expect, it } from "vitest"
import * as Cluster from "../src/scenarios/cluster.ts"
import * as Latency from "../src/scenarios/latency.ts"
import * as OneHop from "../src/scenarios/oneHop.ts"
import * as OrderFlow from "../src/scenarios/orderFlow.ts"
import * as Workflows from "../src/scenarios/workflows.ts"

const positive = (n: number | undefined) => expect(n).toBeGreaterThan(0)
// A short warm-up: the scenarios read it at each run (the smoke runs check that it runs, not its size).
process.env.BENCH_WARMUP ??= "5"

describe("benchmark scenarios, smoke runs", () => {
  it("one hop: raw relay and Baton", async () => {
    positive(await OneHop.raw(200))
    positive(await OneHop.baton(200, { BATON_DURABLE: "false" }))
  })
  it("order flow: Baton burst and paced, Moleculer burst", async () => {
    const burst = await OrderFlow.baton({}, 50)
    positive(burst.ordersPerSecond)
    positive(burst.cpuMsPerOrder)
    const paced = await OrderFlow.baton({}, 20, 100)
    expect(paced.count).toBe(20)
    expect(paced.p99).toBeGreaterThanOrEqual(paced.p99Sent!)
    const moleculer = await OrderFlow.moleculer(50)
    positive(moleculer.ordersPerSecond)
    positive(moleculer.cpuMsPerOrder)
  })
  it("workflows: Baton mediator, BullMQ, memory", async () => {
    positive((await Workflows.baton(20)).perSecond)
    positive((await Workflows.bullmq(20)).perSecond)
    positive((await Workflows.memory(10, 20, () => {})).heapManyMb)
  })
  it("latencies: accept, request-reply modes, raw ping-pong, comments, brokers", async () => {
    const accepted = await Latency.accept(500, 100)
    expect(accepted.count).toBe(100)
    expect(accepted.p99).toBeGreaterThanOrEqual(accepted.p99Sent)
    positive((await Latency.requestReply("correlation", 10)).p50)
    positive((await Latency.requestReply("temporary", 10)).p50)
    positive((await Latency.rawPingPong(10)).p50)
    positive((await Latency.comments(5, 1)).synchronous.p50)
    positive(await Latency.aedesPubSub(500))
    positive(await Latency.pubSub(Number(process.env.BATON_TEST_MOSQUITTO_PORT ?? 1883), 500))
  })
  it("scale-out: order flow over two clustered instances and on PostgreSQL alone, one hop on one and on two clustered Aedes", async () => {
    positive((await Cluster.orderFlow(2, 20)).cpuMsPerOrder)
    positive((await Cluster.orderFlow(1, 20, { redis: false })).ordersPerSecond)
    positive((await Cluster.singleBroker(200)).rate)
    positive((await Cluster.redisClustered(200)).p50)
  })
})
