/**
 * A cluster of runtime processes on this machine's PostgreSQL (every store) and Redis (the
 * embedded brokers as one) or an external broker, with publishers that fail over to another
 * instance when theirs dies, and the checks of what the shared store holds at the end.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import mqtt, { type MqttClient } from "mqtt"
import { expect } from "vitest"
import { Contract } from "@baton/order-entry"
import { Process } from "@baton/testkit"
import { freshSchema, query } from "@baton/testkit/postgres"
import * as TestRedis from "@baton/testkit/redis"
import { sleep } from "./support.ts"

export interface Instance {
  readonly name: string
  readonly dir: string
  running: Process.Running | undefined
}

/** The environment of a cluster's instances (each gets the database and its name from `startCluster`). */
export const clusterEnv = (broker: { readonly redisUrl: string } | { readonly brokerUrl: string }, extra: Record<string, string> = {}) => ({
  ...("redisUrl" in broker ? { BATON_REDIS_URL: broker.redisUrl } : { BATON_BROKER_URL: broker.brokerUrl }),
  BATON_HEARTBEAT_MS: "250",
  BATON_DEAD_AFTER_MS: "2000",
  ...extra
})

export const startCluster = async (size: number, env: Record<string, string>) => {
  const schema = await freshSchema()
  const instances: Array<Instance> = Array.from({ length: size }, (_, i) => ({ name: `n${i + 1}`, dir: mkdtempSync(join(tmpdir(), `baton-cluster-n${i + 1}-`)), running: undefined }))
  // The brokers' Redis keys under a prefix of this cluster's, deleted when it stops.
  const redis = env.BATON_REDIS_URL === undefined ? undefined : TestRedis.scoped(env.BATON_REDIS_URL)
  const fullEnv = { ...env, ...(redis === undefined ? {} : { BATON_REDIS_URL: redis.url }), BATON_DATABASE_URL: schema.url }
  const start = async (i: Instance) => {
    i.running = await Process.startProcess(i.dir, { ...fullEnv, BATON_INSTANCE: i.name })
  }
  // All at once: the migrations must hold when instances start together.
  await Promise.all(instances.map(start))
  const sql = <R extends Record<string, unknown>>(text: string, params: ReadonlyArray<unknown> = []) => query<R & import("pg").QueryResultRow>(schema.url, text, params)
  const number = async (text: string, params: ReadonlyArray<unknown> = []) => Number(Object.values((await sql(text, params))[0] ?? { n: 0 })[0])
  return {
    schema,
    instances,
    sql,
    number,
    start,
    /** Waits until every live instance is a member and every partition has a live owner. */
    settled: async (timeoutMs = 20_000) => {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const live = instances.filter((i) => i.running !== undefined).map((i) => i.name)
        const owners = (await sql<{ owner: string | null }>("SELECT owner FROM cluster_partitions")).map((r) => r.owner)
        const spread = new Set(owners)
        if (owners.length > 0 && owners.every((o) => o !== null && live.includes(o)) && live.every((l) => spread.has(l))) return
        if (Date.now() > deadline) throw new Error(`partitions not spread over ${live.join(",")} in ${timeoutMs} ms: ${JSON.stringify(owners)}`)
        await sleep(100)
      }
    },
    stop: async () => {
      // BATON_CLUSTER_LOGS=<dir> keeps each instance's output there (debugging a long run).
      const keep = process.env.BATON_CLUSTER_LOGS
      if (keep !== undefined) for (const i of instances) writeFileSync(join(keep, `${i.name}-${Date.now()}.log`), i.running?.output() ?? "")
      const codes = await Promise.all(instances.map((i) => i.running?.kill("SIGTERM")))
      for (const i of instances) rmSync(i.dir, { recursive: true, force: true })
      await schema.drop()
      await redis?.clean()
      return codes
    },
    output: () => instances.map((i) => i.running?.output() ?? "").join("\n")
  }
}

export type Cluster = Awaited<ReturnType<typeof startCluster>>

/**
 * An MQTT publisher that sends to one instance and, when that instance stops answering, resends
 * the same message (same envelope id: the cluster takes it once) through the next one.
 */
export const failoverPublisher = (urls: () => ReadonlyArray<string>, first: number) => {
  let index = first
  let client: MqttClient | undefined
  const connect = async () => {
    for (;;) {
      const list = urls()
      const url = list[index % list.length]!
      try {
        client = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 2000 })
        client.on("error", () => undefined)
        return client
      } catch {
        index++
        await sleep(100)
      }
    }
  }
  const publish = async (topic: string, payload: string): Promise<void> => {
    for (;;) {
      const c = client ?? (await connect())
      try {
        await Promise.race([c.publishAsync(topic, payload, { qos: 1 }), sleep(3000).then(() => Promise.reject(new Error("no PUBACK")))])
        return
      } catch {
        c.end(true)
        client = undefined
        index++
      }
    }
  }
  return { publish, close: () => client?.end(true) }
}

/** Waits for `done` to hold, showing progress, failing with the cluster's output after `timeoutMs`. */
export const waitFor = async (what: string, done: () => Promise<number>, target: number, timeoutMs: number, output: () => string) => {
  const deadline = Date.now() + timeoutMs
  let last = -1
  for (;;) {
    const n = await done()
    if (n >= target) return
    if (n !== last) {
      last = n
      process.stdout.write(`  ${what}: ${n}/${target}\n`)
    }
    if (Date.now() > deadline) throw new Error(`${what}: ${n}/${target} after ${timeoutMs} ms\n${output().split("\n").filter((l) => /warn|error|cluster|partition|adopt/.test(l)).slice(-60).join("\n")}`)
    await sleep(250)
  }
}

/**
 * Effects once for this run's orders (customer ids starting with `run`: other tests publish on a
 * shared external broker too): one order, allocation and payment each, stock taken exactly as
 * allocated, and nothing of the run left pending, unsent or unforwarded.
 */
export const checkOrderEffects = async (c: Pick<Cluster, "sql" | "number">, run: string, orders: number) => {
  const initial = new Map(Contract.catalogue.map((p) => [p.sku, p.units]))
  const ours = `${run}-%`
  expect(await c.number("SELECT COUNT(*) FROM orders WHERE customer_id LIKE $1", [ours])).toBe(orders)
  expect(await c.number("SELECT COUNT(DISTINCT correlation_id) FROM orders WHERE customer_id LIKE $1", [ours])).toBe(orders)
  expect(await c.number("SELECT COUNT(*) FROM stock_allocations a JOIN orders o ON o.id = a.order_id WHERE o.customer_id LIKE $1", [ours])).toBe(orders)
  expect(await c.number("SELECT COUNT(*) FROM payments p JOIN orders o ON o.id = p.order_id WHERE o.customer_id LIKE $1", [ours])).toBe(orders)
  // Stock as seeded against every allocation in the store that was not released (each is committed
  // with its stock update, each release with its give-back).
  const taken = new Map<string, number>()
  for (const row of await c.sql<{ lines: string }>("SELECT lines FROM stock_allocations WHERE order_id NOT IN (SELECT order_id FROM stock_releases)"))
    for (const line of JSON.parse(row.lines) as Array<{ sku: string; qty: number }>) taken.set(line.sku, (taken.get(line.sku) ?? 0) + line.qty)
  for (const row of await c.sql<{ sku: string; units: string }>("SELECT sku, on_hand - backordered AS units FROM stock"))
    expect(initial.get(row.sku)! - Number(row.units), `units taken of ${row.sku}`).toBe(taken.get(row.sku) ?? 0)
  const mentions = `%${run}%`
  expect(await c.number("SELECT COUNT(*) FROM inbox WHERE status = 'pending' AND payload LIKE $1", [mentions])).toBe(0)
  expect(await c.number("SELECT COUNT(*) FROM outbox WHERE payload LIKE $1", [mentions])).toBe(0)
  expect(await c.number("SELECT COUNT(*) FROM ingress_log WHERE forwarded_at IS NULL AND encode(payload, 'escape') LIKE $1", [mentions])).toBe(0)
}
