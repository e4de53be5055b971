/**
 * `node bench/src/abCluster.ts <instances> <orders> <rounds> <tree> [<tree> ...]`: scenario 7's
 * order flow (bench/src/scenarios/cluster.ts) on a cluster of `instances` runtimes per git tree
 * (each tree's own `runtime/src/main.ts`), sharing PostgreSQL (every store) and Redis (one logical
 * broker), in interleaved rounds, as `ab.ts` does for one instance. Per run: orders/s (until the
 * last `order-shipped`), the CPU per order of the instances, of this cluster's PostgreSQL backends
 * (and the server's own processes) and of the Redis server (all of it: other users count), from
 * /proc; the statements per order of all instances together (`/healthz`). `instances` may be a
 * list (`1,2,3`): each count is measured in every round. `BATON_AB_PROFILE=<dir>`: every instance
 * runs under `node --cpu-prof` and writes its profile there (`profileTop.ts` reads one).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { Process } from "@baton/testkit"
import { freshSchema, query } from "@baton/testkit/postgres"
import * as TestRedis from "@baton/testkit/redis"
import { cpuMs, ioCalls, median, sleep } from "./lib.ts"
import { placeSpread } from "./scenarios/cluster.ts"
import { placeOrders } from "./scenarios/orders.ts"

const [instancesArg = "2", countArg = "600", roundsArg = "3", ...trees] = process.argv.slice(2)
if (trees.length === 0) {
  console.error("usage: node bench/src/abCluster.ts <instances[,instances...]> <orders> <rounds> <tree> [<tree> ...]")
  process.exit(2)
}
const sizes = instancesArg.split(",").map(Number)
const count = Number(countArg)
const rounds = Number(roundsArg)
const warmup = Math.min(200, Math.ceil(count / 5))
/** `BATON_AB_OBSERVER=one`: one subscriber to the orders' outcome in all (`placeSpread`), not one per instance. */
const observer = process.env.BATON_AB_OBSERVER === "one" ? "one" : "each"
const redisUrl = process.env.BATON_BENCH_REDIS_URL ?? "redis://127.0.0.1:6379/6"


/** Pids of the processes whose command name is `name` (`postgres`, `redis-server`). */
const pidsNamed = (name: string): ReadonlyArray<number> =>
  readdirSync("/proc")
    .filter((d) => /^\d+$/.test(d))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/stat`, "utf8").includes(`(${name})`)
      } catch {
        return false
      }
    })
    .map(Number)

/** System (kernel) CPU time of a process so far, ms: the syscalls, socket writes and wake-ups mostly. */
const sysMs = (pid: number): number => (Number(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")[12]) * 1000) / 100

const cpuOf = (pids: ReadonlyArray<number>): Map<number, number> => {
  const m = new Map<number, number>()
  for (const pid of pids)
    try {
      m.set(pid, cpuMs(pid))
    } catch {
      // gone meanwhile
    }
  return m
}

const since = (before: Map<number, number>, pids: ReadonlyArray<number>): number =>
  pids.reduce((n, pid) => {
    try {
      return n + cpuMs(pid) - (before.get(pid) ?? 0)
    } catch {
      return n
    }
  }, 0)

const healthz = async (port: number) =>
  (await (await fetch(`http://127.0.0.1:${port}/healthz?statements=1`)).json()) as { statements?: number; statementTexts?: ReadonlyArray<{ text: string; count: number }> }
/** The statements of every instance together, by text (`BATON_AB_BREAKDOWN=1` prints those of each run per order). */
const statements = async (ports: ReadonlyArray<number>) => {
  const byText = new Map<string, number>()
  let total = 0
  for (const h of await Promise.all(ports.map(healthz))) {
    total += h.statements ?? Number.NaN
    for (const t of h.statementTexts ?? []) byText.set(t.text, (byText.get(t.text) ?? 0) + t.count)
  }
  return { total, byText }
}

interface Result {
  readonly perSecond: number
  readonly cpuMsPerOrder: number
  readonly pgCpuMsPerOrder: number
  readonly redisCpuMsPerOrder: number
  readonly statementsPerOrder: number
  /** The instances' write syscalls per order (PostgreSQL, Redis and MQTT sockets). */
  readonly writesPerOrder: number
  /** The part of the instances' CPU spent in the kernel. */
  readonly sysMsPerOrder: number
}

let runs = 0
const runOnce = async (tree: string, instances: number): Promise<Result> => {
  const schema = await freshSchema()
  const redis = TestRedis.scoped(redisUrl)
  const dirs = Array.from({ length: instances }, () => mkdtempSync(join(tmpdir(), "baton-abc-")))
  const names = dirs.map((_, i) => `abc${process.pid}-${++runs}-${i + 1}`)
  const profile = process.env.BATON_AB_PROFILE
  const env = {
    BATON_DATABASE_URL: schema.url,
    BATON_REDIS_URL: redis.url,
    BATON_PUBLISH_RATE: "1000000",
    ...(profile === undefined ? {} : { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${profile}` })
  }
  const running = await Promise.all(dirs.map((dir, i) => Process.startProcess(dir, { ...env, BATON_INSTANCE: names[i]! }, [join(tree, "runtime/src/main.ts")])))
  try {
    for (let tries = 0; ; tries++) {
      const owners = new Set((await query<{ owner: string | null }>(schema.url, "SELECT owner FROM cluster_partitions")).map((r) => r.owner))
      if (owners.size === instances && !owners.has(null)) break
      if (tries > 400) throw new Error("partitions not spread over the instances")
      await sleep(50)
    }
    const share = (n: number) => (i: number) => Math.floor(n / instances) + (i < n % instances ? 1 : 0)
    const place = (n: number) =>
      observer === "one"
        ? placeSpread(running.map((r) => r.mqttPort!), n)
        : Promise.all(running.map((r, i) => placeOrders(r.mqttPort!, share(n)(i), "events/order-shipped", undefined, Math.ceil(500 / instances))))
    await place(warmup)
    await sleep(300)
    const pgPids = (await query<{ pid: number }>(schema.url, "SELECT pid FROM pg_stat_activity WHERE application_name = ANY($1) OR backend_type <> 'client backend'", [names.map((n) => `baton/${n}`)])).map((r) => r.pid)
    const redisPids = pidsNamed("redis-server")
    const own = running.map((r) => r.child.pid!)
    const s0 = await statements(running.map((r) => r.httpPort))
    const before = cpuOf([...own, ...pgPids, ...redisPids])
    const w0 = own.map((pid) => ioCalls(pid, "syscw"))
    const k0 = own.map(sysMs)
    const t0 = performance.now()
    await place(count)
    const seconds = (performance.now() - t0) / 1000
    await sleep(300) // the tail (relay deletes, last done marks) of the measured orders
    const cpu = (pids: ReadonlyArray<number>) => since(before, pids) / count
    const writesPerOrder = own.reduce((n, pid, i) => n + ioCalls(pid, "syscw") - w0[i]!, 0) / count
    const sysMsPerOrder = own.reduce((n, pid, i) => n + sysMs(pid) - k0[i]!, 0) / count
    const result = { perSecond: count / seconds, cpuMsPerOrder: cpu(own), pgCpuMsPerOrder: cpu(pgPids), redisCpuMsPerOrder: cpu(redisPids), writesPerOrder, sysMsPerOrder }
    const s1 = await statements(running.map((r) => r.httpPort))
    if (process.env.BATON_AB_BREAKDOWN === "1")
      for (const [text, n] of [...s1.byText].map(([t, n]) => [t, (n - (s0.byText.get(t) ?? 0)) / count] as const).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]))
        console.log(`  ${n.toFixed(2)}  ${text.replace(/\s+/g, " ").slice(0, 150)}`)
    return { ...result, statementsPerOrder: (s1.total - s0.total) / count }
  } finally {
    await Promise.all(running.map((r) => r.kill("SIGTERM")))
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
    await schema.drop()
    await redis.clean()
  }
}

const roots = trees.map((t) => resolve(t))
const results = new Map<string, Array<Result>>()
const keyOf = (tree: string, n: number) => `${n} ${tree}`
const line = (r: Result) =>
  `${r.perSecond.toFixed(1)} orders/s, instances ${r.cpuMsPerOrder.toFixed(2)} ms CPU/order (${r.sysMsPerOrder.toFixed(2)} in the kernel), postgres ${r.pgCpuMsPerOrder.toFixed(2)}, redis ${r.redisCpuMsPerOrder.toFixed(2)}, ${r.statementsPerOrder.toFixed(1)} statements/order, ${r.writesPerOrder.toFixed(1)} writes/order`
for (let round = 0; round < rounds; round++)
  for (const n of sizes) {
    const order = round % 2 === 0 ? roots : [...roots].reverse()
    for (const tree of order) {
      const r = await runOnce(tree, n)
      results.set(keyOf(tree, n), [...(results.get(keyOf(tree, n)) ?? []), r])
      console.log(`round ${round + 1} x${n} ${tree}: ${line(r)}`)
    }
  }
for (const n of sizes) {
  const base = results.get(keyOf(roots[0]!, n))!
  for (const tree of roots) {
    const rs = results.get(keyOf(tree, n))!
    const m = (f: (r: Result) => number) => median(rs.map(f))
    const ratio = (f: (r: Result) => number) => (m(f) / median(base.map(f))).toFixed(2)
    console.log(
      `x${n} ${tree}: median ${m((r) => r.perSecond).toFixed(1)} orders/s (${ratio((r) => r.perSecond)}x), instances ${m((r) => r.cpuMsPerOrder).toFixed(2)} ms CPU/order (${ratio((r) => r.cpuMsPerOrder)}x), ` +
        `postgres ${m((r) => r.pgCpuMsPerOrder).toFixed(2)} (${ratio((r) => r.pgCpuMsPerOrder)}x), redis ${m((r) => r.redisCpuMsPerOrder).toFixed(2)} (${ratio((r) => r.redisCpuMsPerOrder)}x), ` +
        `${m((r) => r.statementsPerOrder).toFixed(1)} statements/order (${ratio((r) => r.statementsPerOrder)}x), ${m((r) => r.writesPerOrder).toFixed(1)} writes/order (${ratio((r) => r.writesPerOrder)}x)`
    )
  }
}
process.exit(0)
