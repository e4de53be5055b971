/**
 * Scenario 7, scale-out. Order flow with 1, 2 and 3 runtime instances sharing PostgreSQL (every
 * store) and Redis (one logical broker), the load spread over the instances; and the per-hop cost
 * of the Redis-clustered broker: a QoS 1 message from a publisher to a subscriber on one Aedes,
 * versus on two Aedes nodes joined by Redis (publisher on one, subscriber on the other).
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import mqtt from "mqtt"
import { Process } from "@baton/testkit"
import { freshSchema, query } from "@baton/testkit/postgres"
import * as TestRedis from "@baton/testkit/redis"
import { burst, child, counter, cpuDuring, noDelay, sleep, warmup, within } from "../lib.ts"
import { paced, tracker, type LatencySummary } from "../pacing.ts"
import { order, placeOrders } from "./orders.ts"

const redisUrl = process.env.BATON_BENCH_REDIS_URL ?? "redis://127.0.0.1:6379/6"

/** Clustered runtimes started: their processes, and `batch` to run orders through them. */
export interface ClusterPeer {
  /** The instances' processes (PostgreSQL's and Redis's are not counted: other work shares them). */
  readonly pids: ReadonlyArray<number>
  /** `count` orders, 500 in flight spread over the instances; resolves with the seconds until the last shipped. */
  readonly batch: (count: number) => Promise<number>
}

/**
 * Starts `instances` runtimes on a fresh PostgreSQL schema (and, with `redis`, one logical broker
 * on Redis), waits until the partitions are spread over every instance, and stops them after
 * `body`. Without `redis`: one instance whose only shared part is PostgreSQL (its embedded
 * broker's sessions on disk, as on SQLite).
 */
export const clusterPeer = async <A>(instances: number, options: { readonly redis: boolean }, body: (peer: ClusterPeer) => Promise<A>): Promise<A> => {
  const schema = await freshSchema()
  const dirs = Array.from({ length: instances }, () => mkdtempSync(join(tmpdir(), "baton-bench-cluster-")))
  // The brokers' Redis keys under a prefix of this run's, deleted after it.
  const redis = TestRedis.scoped(redisUrl)
  const env = { BATON_DATABASE_URL: schema.url, ...(options.redis ? { BATON_REDIS_URL: redis.url } : {}), BATON_PUBLISH_RATE: "1000000" }
  const running = await Promise.all(dirs.map((dir, i) => Process.startProcess(dir, { ...env, BATON_INSTANCE: `bench-${i + 1}` })))
  try {
    // Partitions spread over every instance before the clock starts.
    for (let tries = 0; ; tries++) {
      const owners = new Set((await query<{ owner: string | null }>(schema.url, "SELECT owner FROM cluster_partitions")).map((r) => r.owner))
      if (owners.size === instances && !owners.has(null)) break
      if (tries > 200) throw new Error("partitions not spread over the instances")
      await sleep(50)
    }
    const share = (n: number) => (i: number) => Math.floor(n / instances) + (i < n % instances ? 1 : 0)
    return await body({
      pids: running.map((r) => r.child.pid!),
      batch: async (count) => {
        const t0 = performance.now()
        await Promise.all(running.map((r, i) => placeOrders(r.mqttPort!, share(count)(i), "events/order-shipped", undefined, Math.ceil(500 / instances))))
        return (performance.now() - t0) / 1000
      }
    })
  } finally {
    await Promise.all(running.map((r) => r.kill("SIGTERM")))
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
    await schema.drop()
    await redis.clean()
  }
}

/**
 * `count` orders through `instances` clustered runtimes (`clusterPeer`), after the warm-up every
 * contender gets (`BENCH_WARMUP` orders, spread the same way); the CPU per order is the
 * instances'. Without `redis`: the figure to set against one instance on SQLite.
 */
export const orderFlow = (instances: number, count: number, options: { readonly redis: boolean } = { redis: true }): Promise<{ readonly ordersPerSecond: number; readonly cpuMsPerOrder: number }> =>
  clusterPeer(instances, options, async (peer) => {
    await peer.batch(warmup())
    await sleep(300)
    const { result: seconds, cpuMs } = await cpuDuring(peer.pids, () => peer.batch(count))
    return { ordersPerSecond: count / seconds, cpuMsPerOrder: cpuMs / count }
  })

/**
 * `count` orders placed through every instance in `ports` (an even share each, `inFlight`
 * unacknowledged in all), tracked until each one's `order-shipped` by ONE observer connected to
 * the first instance: each instance sends the event once per order it ships, as in a deployment
 * with one consumer of the outcome. (`placeOrders` on every instance makes each of them deliver
 * every order's event to its own subscriber too: N deliveries an order, the instances' CPU growing
 * with their number for the load generator's sake.) Resolves with the orders per second.
 */
export const placeSpread = async (ports: ReadonlyArray<number>, count: number, inFlight = 500): Promise<number> => {
  const observer = noDelay(await mqtt.connectAsync(`mqtt://127.0.0.1:${ports[0]}`, { protocolVersion: 4, reconnectPeriod: 0 }))
  const publishers = await Promise.all(ports.map(async (port) => noDelay(await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0 }))))
  const open = new Set<string>()
  const done = counter(count)
  observer.on("message", (_t, payload) => {
    if (open.delete((JSON.parse(payload.toString()) as { correlationId: string }).correlationId)) done.hit()
  })
  await observer.subscribeAsync("events/order-shipped", { qos: 1 })
  const t0 = performance.now()
  await burst(count, inFlight, (i) => {
    const id = crypto.randomUUID()
    open.add(id)
    return publishers[i % publishers.length]!.publishAsync("initiate/place-order", JSON.stringify({ id, type: "place-order", data: order(i) }), { qos: 1 })
  })
  await within(done.done, 600_000, `${count} events on events/order-shipped`)
  const perSecond = count / ((performance.now() - t0) / 1000)
  await Promise.all([observer, ...publishers].map((c) => c.endAsync()))
  return perSecond
}

export type HopResult = { readonly rate: number } & LatencySummary

/** Throughput (500 in flight) and latency (at 1000/s, from the scheduled send) of QoS 1 messages from `pubPort` to a subscriber on `subPort`. */
const hop = async (pubPort: number, subPort: number, count: number): Promise<HopResult> => {
  const sub = noDelay(await mqtt.connectAsync(`mqtt://127.0.0.1:${subPort}`, { protocolVersion: 4, reconnectPeriod: 0 }))
  const pub = noDelay(await mqtt.connectAsync(`mqtt://127.0.0.1:${pubPort}`, { protocolVersion: 4, reconnectPeriod: 0 }))
  const topic = `bench/hop/${Math.random().toString(36).slice(2)}`
  await sub.subscribeAsync(topic, { qos: 1 })
  await sleep(200) // the subscription reaches the other node through Redis
  const messages = tracker<number>()
  let got = counter(count)
  sub.on("message", (_t, payload) => {
    messages.done(Number(payload.toString()))
    got.hit()
  })
  const t0 = performance.now()
  await burst(count, 500, (i) => pub.publishAsync(topic, String(-1 - i), { qos: 1 }))
  await within(got.done, 60_000, `${count} messages across the hop`)
  const rate = count / ((performance.now() - t0) / 1000)
  got = counter(Math.min(count, 1000))
  await paced(1000, Math.min(count, 1000), (i, due) => {
    messages.sent(i, due)
    void pub.publishAsync(topic, String(i), { qos: 1 })
  })
  await within(got.done, 60_000, "paced messages across the hop")
  await sub.endAsync()
  await pub.endAsync()
  return { rate, ...messages.summary() }
}

export const singleBroker = async (count: number, env: Record<string, string> = {}): Promise<HopResult> => {
  const node = await child("peers/aedes.ts", env)
  try {
    return await hop(Number(node.info.port), Number(node.info.port), count)
  } finally {
    await node.stop()
  }
}

export const redisClustered = async (count: number): Promise<HopResult> => {
  const redis = TestRedis.scoped(redisUrl)
  const nodes = await Promise.all([1, 2].map(() => child("peers/aedes.ts", { REDIS_URL: redis.url, CLUSTER: "1" })))
  try {
    return await hop(Number(nodes[0]!.info.port), Number(nodes[1]!.info.port), count)
  } finally {
    await Promise.all(nodes.map((n) => n.stop()))
    await redis.clean()
  }
}
