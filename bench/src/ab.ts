/**
 * `node bench/src/ab.ts <sqlite|pg> <orders> <rounds> <tree> [<tree> ...]`: the order flow (burst)
 * on one runtime process per git tree (each tree's own `runtime/src/main.ts`), in interleaved
 * rounds, so that a change is measured against a base commit on the same machine at the same
 * time. Per run: orders/s, the runtime process's CPU per order (utime + stime from /proc), the
 * statements per order (the store's own count, `/healthz`; n/a for a tree that does not count them), the runtime's read and write syscalls per order, its main thread's scheduling per order (time on a core, time runnable but waiting for one, preemptions, sleeps: `schedOf`), and on PostgreSQL the CPU of the
 * server's processes per order (every backend: other users of the server count too). With
 * `BATON_AB_BREAKDOWN=1`, the statements of the last run of each tree per order, by text. With
 * `BATON_AB_TOPOLOGY=mediator`, the mediator's order workflow instead (to `workflow-completed`).
 * With `BATON_AB_DRAIN=1`, orders/s until every processor's backlog is done too (its inbox done
 * marks stop for 300 ms; at most 30 s), not only until the last order has shipped: a tree that
 * leaves off-path work (the notifications) for after the last shipment is not flattered.
 * With `BATON_AB_PGSTATS=1` (pg), per run: this process's CPU per order (the load generator), the machine's other busy CPU, the database's transactions and buffer accesses (hits
 * and reads, `pg_stat_database`: other clients of the database count too), WAL bytes per order,
 * the runtime's tables' dead and live rows at the end of the run, and the catalogs' dead rows.
 * With `BATON_AB_PGSTATEMENTS=1` (pg), per run: the statements that took the server's time in the measured
 * orders (`pg_stat_statements`, reset after the warm-up), per order: calls, execution time (wall, on
 * the server: a loaded machine's preemption counts), buffer hits and WAL bytes a call. It needs a server
 * with `shared_preload_libraries = 'pg_stat_statements'` (the shared one on 5432 has none, and restarting
 * it would disturb its other users): one of your own, given through `BATON_TEST_POSTGRES_URL` (say
 * `initdb` as `postgres` into a folder, `postgres -D <dir> -p 5442 -c shared_preload_libraries=pg_stat_statements
 * -c autovacuum=off -c shared_buffers=128MB`, the shared server's settings). It counts every client of the
 * database: a server of your own has none other.
 * With `BATON_AB_PGACTIVITY=1` (pg), per run: what the runtime's backends (its store's pool and the cluster's own two) were doing during the measured
 * orders, sampled every 10 ms from `pg_stat_activity` on one connection of its own: the shares of their
 * time running a statement (and of it waiting on the WAL, a lock, an LWLock or I/O), in a transaction
 * waiting for the runtime's next statement (`idle in transaction`: the runtime is the one behind), and
 * idle (no transaction: a connection the pool has spare). It tells a run bound by the server from one
 * bound by the runtime or its round trips. Its queries count in `BATON_AB_PGSTATS`'s transactions (read-only, about 100 a second).
 * With `BATON_AB_DATABASE=1` (pg), each run in a database of its own (from `template0`, dropped
 * after the run) instead of a schema of `postgres`. With `BATON_AB_KEEP=1` (pg), the run's schema is
 * kept and its URL printed (`kept ...`), for `EXPLAIN (ANALYZE, BUFFERS)` and the statistics views afterwards.
 * With `BATON_AB_BROKER=mosquitto`, every run against a throwaway Mosquitto of its own (on a free
 * port, `persistence false`, no queue limit; `BATON_AB_MOSQUITTO_INFLIGHT` sets its
 * `max_inflight_messages`, 20 by default as Mosquitto's), through `BATON_BROKER_URL`: every hop
 * goes through that broker, and the orders are placed on it. A tree given as `<tree>#mosquitto` runs
 * so alone (the other arms as set); `<tree>#aedes` against Baton's own broker (`packages/broker-aedes`,
 * sessions on disk, PUBACK once stored) started alone in a process of its own (`peers/aedes.ts`),
 * `<tree>#aedes-memory` the same with sessions in memory: the broker off the runtime's thread. Either
 * way the broker process's CPU per order is given too (`broker ... ms CPU/order`).
 * With `BATON_AB_LOG=<dir>`, each run's runtime output is kept in `<dir>/<instance>.log` and a run
 * that fails appends the inbox's pending rows, the outbox's, the partitions and the members (pg);
 * `BATON_AB_DONE_MS` (600000) is how long a run waits for its orders to finish.
 * A tree given as `<tree>#unix` (pg) runs connected through the server's Unix socket (the folder
 * `BATON_AB_PGSOCKET`, `/var/run/postgresql` by default) rather than TCP on 127.0.0.1: the same tree
 * twice, `. .#unix`, measures the transport alone.
 * Each runtime runs with the runtime's own Node flags (`Process.nodeOptions`, those of `pnpm start`;
 * without them V8 sizes the young generation for the machine's memory: 32 MB semi-spaces on 24 GB).
 * `BATON_AB_NODE_FLAGS` puts more V8/Node flags on every runtime's command line; `BATON_AB_TREE_FLAGS`,
 * flag sets separated by `|`, one per tree argument in order, after those (the same tree may be given
 * twice, say `. .` with `BATON_AB_TREE_FLAGS="|--min-semi-space-size=8"`, to compare flags alone).
 * `BATON_AB_TREE_ENV`, likewise one set of `NAME=value` words per tree argument, separated by `|`, sets
 * the runtime's environment for that arm alone (`treeEnvs`, as acceptAb.ts's and rr.ts's): `. .` with `BATON_AB_TREE_ENV="|BATON_DURABLE=false"`
 * measures what durability costs on the same tree.
 */
import { spawn } from "node:child_process"
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { Process } from "@baton/testkit"
import { freshDatabase, freshSchema, query, session } from "@baton/testkit/postgres"
import { externalBroker } from "./externalBroker.ts"
import { benchRuntimeEnv, cpuMs, ioCalls, median, overUnixSocket, schedOf, treeEnvs, withEnv } from "./lib.ts"
import { placeOrders } from "./scenarios/orders.ts"

const [engine = "sqlite", countArg = "1000", roundsArg = "3", ...trees] = process.argv.slice(2)
if ((engine !== "sqlite" && engine !== "pg") || trees.length === 0) {
  console.error("usage: node bench/src/ab.ts <sqlite|pg> <orders> <rounds> <tree> [<tree> ...]")
  process.exit(2)
}
const count = Number(countArg)
const rounds = Number(roundsArg)
const warmup = Math.min(200, Math.ceil(count / 5))
const mediator = process.env.BATON_AB_TOPOLOGY === "mediator"
const doneTopic = mediator ? "events/workflow-completed" : "events/order-shipped"
/** CPU so far of every `postgres` process on this machine (the server's backends and workers), by pid. */
const postgresCpuByPid = (): Map<number, number> => {
  const byPid = new Map<number, number>()
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      if (readFileSync(`/proc/${pid}/stat`, "utf8").includes("(postgres)")) byPid.set(Number(pid), cpuMs(Number(pid)))
    } catch {
      // gone meanwhile
    }
  }
  return byPid
}

/**
 * CPU since `before` of the backends serving this runtime (found by its application name,
 * `baton/<instance>`, unique to the round) and of the server's own processes (WAL writer,
 * checkpointer, autovacuum...), not of other clients' backends on the same server (a test suite
 * running beside the benchmark, another round's backends still closing).
 */
const runtimeBackendsCpuMs = async (url: string, instance: string, before: Map<number, number>): Promise<number> => {
  const pids = (await query<{ pid: number }>(url, "SELECT pid FROM pg_stat_activity WHERE application_name = $1 OR backend_type <> 'client backend'", [`baton/${instance}`])).map((r) => r.pid)
  let total = 0
  for (const pid of pids) {
    try {
      total += cpuMs(pid) - (before.get(pid) ?? 0)
    } catch {
      // closed meanwhile
    }
  }
  return total
}


const healthz = async (port: number, statements = false) =>
  (await (await fetch(`http://127.0.0.1:${port}/healthz${statements ? "?statements=1" : ""}`)).json()) as {
    /** Absent in trees from before the store counted its statements. */
    statements?: number
    statementTexts?: ReadonlyArray<{ text: string; count: number }>
  }

interface Result {
  readonly tree: string
  readonly perSecond: number
  readonly cpuMsPerOrder: number
  readonly statementsPerOrder: number
  /** The runtime's write syscalls per order (sockets and files): round trips to PostgreSQL, mostly. */
  readonly writesPerOrder: number
  /** Its read syscalls per order (SQLite pages not in its cache, sockets). */
  readonly readsPerOrder: number
  readonly pgCpuMsPerOrder?: number
  /** This process's CPU per order (the load generator: the orders' client, their outcomes' subscriber). */
  readonly loadCpuMsPerOrder: number
  /** An external broker's process (`#mosquitto`, `#aedes`), its CPU per order. */
  readonly brokerCpuMsPerOrder?: number
  /**
   * Its main thread per order: ms on a core, ms runnable but waiting for one (another task had it),
   * times preempted (switched off a core while runnable: most often on return from a socket write
   * that woke the peer) and times gone to sleep for want of work (`schedOf`).
   */
  readonly main: { readonly runMs: number; readonly waitMs: number; readonly preempted: number; readonly slept: number }
  readonly breakdown?: ReadonlyArray<{ text: string; count: number }>
  readonly pgStats?: string
  readonly statementCosts?: string
  readonly activity?: string
}

/**
 * `BATON_AB_PGACTIVITY=1`: samples the states of the backends of application `name` every 10 ms until
 * `stop`, then gives their shares of the backends' time (see the header).
 */
const sampleActivity = async (url: string, name: string) => {
  const db = await session(url)
  const counts = new Map<string, number>()
  let samples = 0
  let backends = 0
  let stopped = false
  const loop = (async () => {
    while (!stopped) {
      const rows = await db.query<{ state: string; wait: string | null }>(
        "SELECT state, wait_event_type || ':' || wait_event AS wait FROM pg_stat_activity WHERE application_name = $1 AND backend_type = 'client backend'",
        [name]
      )
      samples++
      backends += rows.length
      for (const r of rows) {
        const k = r.state === "active" ? `active ${r.wait ?? "running"}` : r.state
        counts.set(k, (counts.get(k) ?? 0) + 1)
      }
      await new Promise((r) => setTimeout(r, 10))
    }
  })()
  return async (): Promise<string> => {
    stopped = true
    await loop
    await db.end()
    const all = [...counts.values()].reduce((n, c) => n + c, 0)
    const share = (k: string) => ((100 * (counts.get(k) ?? 0)) / all).toFixed(0)
    const active = [...counts.entries()].filter(([k]) => k.startsWith("active")).sort((a, b) => b[1] - a[1])
    return (
      `backends ${(backends / samples).toFixed(1)} (${samples} samples): idle ${share("idle")}%, in a transaction waiting for the runtime ${share("idle in transaction")}%, ` +
      `active ${((100 * active.reduce((n, [, c]) => n + c, 0)) / all).toFixed(0)}% (${active.map(([k, c]) => `${k.slice(7)} ${((100 * c) / all).toFixed(1)}`).join(", ")})`
    )
  }
}

/** The database's counters (`BATON_AB_PGSTATS=1`): transactions, buffer hits and reads, WAL position. */
const pgCounters = async (url: string) =>
  (
    await query<{ xacts: string; hits: string; reads: string; wal: string }>(
      url,
      "SELECT xact_commit + xact_rollback AS xacts, blks_hit AS hits, blks_read AS reads, pg_current_wal_lsn() - '0/0' AS wal FROM pg_stat_database WHERE datname = current_database()"
    )
  ).map((r) => ({ xacts: Number(r.xacts), hits: Number(r.hits), reads: Number(r.reads), wal: Number(r.wal) }))[0]!

/** `BATON_AB_PGSTATEMENTS=1`: counts from now on (the extension's view made in `public` once per database). */
const pgStatementsReset = async (url: string): Promise<void> => {
  await query(url, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements WITH SCHEMA public")
  await query(url, "SELECT public.pg_stat_statements_reset()")
}

/** The statements that took the server's time since `pgStatementsReset`, per order, most first. */
const pgStatementCosts = async (url: string, orders: number): Promise<string> => {
  const rows = await query<{ calls: string; ms: number; hits: string; wal: string; text: string }>(
    url,
    `SELECT calls, total_exec_time AS ms, shared_blks_hit AS hits, wal_bytes AS wal, query AS text FROM public.pg_stat_statements
      WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY total_exec_time DESC LIMIT 14`
  )
  const all = rows.reduce((n, r) => n + r.ms, 0)
  return (
    `statements (top ${rows.length}: ${((all * 1000) / orders).toFixed(0)} us/order): calls/order, us/order, us/call, hits/call, WAL B/call\n` +
    rows
      .map((r) => {
        const calls = Number(r.calls)
        return `    ${(calls / orders).toFixed(2)}  ${((r.ms * 1000) / orders).toFixed(1)}  ${((r.ms * 1000) / calls).toFixed(1)}  ${(Number(r.hits) / calls).toFixed(1)}  ${(Number(r.wal) / calls).toFixed(0)}  ${r.text.replace(/\s+/g, " ").slice(0, 110)}`
      })
      .join("\n")
  )
}

/** The machine's busy CPU so far (every process, in ms: /proc/stat's first line, clock ticks of 10 ms). */
const machineBusyMs = (): number => {
  const [user, nice, system, , , irq, softirq, steal] = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number)
  return (user! + nice! + system! + irq! + softirq! + steal!) * 10
}

/** The runtime's tables with the most dead rows at the end of a run, and the catalogs' dead rows. */
const pgTables = async (url: string, orders: number): Promise<string> => {
  const own = await query<{ relname: string; dead: string; live: string; hot: string; upd: string; kb: string; seq: string; seqread: string; idx: string; idxfetch: string }>(
    url,
    `SELECT relname, n_dead_tup AS dead, n_live_tup AS live, n_tup_hot_upd AS hot, n_tup_upd AS upd, pg_total_relation_size(relid) / 1024 AS kb,
            seq_scan AS seq, seq_tup_read AS seqread, idx_scan AS idx, idx_tup_fetch AS idxfetch
       FROM pg_stat_user_tables WHERE schemaname = current_schema() ORDER BY n_dead_tup DESC LIMIT 4`
  )
  const catalogs = await query<{ relname: string; dead: string }>(
    url,
    "SELECT relname, n_dead_tup AS dead FROM pg_stat_sys_tables WHERE relname IN ('pg_attribute', 'pg_class', 'pg_depend') ORDER BY relname"
  )
  // Buffer hits of the whole run (warm-up too), by index and by table's heap: where a run's hits per order grow.
  const indexes = await query<{ name: string; hits: string }>(
    url,
    `SELECT indexrelname AS name, idx_blks_hit AS hits FROM pg_statio_user_indexes WHERE schemaname = current_schema()
     UNION ALL SELECT relname || ' heap', heap_blks_hit FROM pg_statio_user_tables WHERE schemaname = current_schema() ORDER BY hits DESC LIMIT 6`
  )
  return (
    own.map((t) => `${t.relname} ${t.dead}d/${t.live}l hot ${t.hot}/${t.upd} ${t.kb}kB seq ${t.seq}/${t.seqread} idx ${t.idx}/${t.idxfetch}`).join(", ") +
    ` | hits ${indexes.map((i) => `${i.name} ${(Number(i.hits) / orders).toFixed(1)}`).join(", ")}/order` +
    ` | catalogs ${catalogs.map((t) => `${t.relname} ${t.dead}d`).join(" ")}`
  )
}

let runs = 0
const runOnce = async (spec: string, treeFlags: ReadonlyArray<string>, treeEnv: Readonly<Record<string, string>>): Promise<Result> => {
  const [tree = spec, variant] = spec.split("#")
  const dataDir = mkdtempSync(join(tmpdir(), "baton-ab-"))
  const fresh = engine !== "pg" ? undefined : process.env.BATON_AB_DATABASE === "1" ? await freshDatabase() : await freshSchema()
  const schema = fresh === undefined || variant !== "unix" ? fresh : { ...fresh, url: overUnixSocket(fresh.url) }
  const instance = `ab${process.pid}-${++runs}`
  // BATON_AB_NODE_FLAGS: V8/Node flags for the runtime only (e.g. "--log-deopt --logfile=/tmp/v8-%p.log"), which NODE_OPTIONS refuses
  const nodeFlags = (process.env.BATON_AB_NODE_FLAGS ?? "").split(" ").filter((f) => f !== "")
  const broker = await externalBroker(variant ?? (process.env.BATON_AB_BROKER === "mosquitto" ? "mosquitto" : undefined))
  // The runtime's own flags first (`Process.nodeOptions`, as `pnpm start` and the testkit run it), which later ones override.
  const child = spawn(process.execPath, [...Process.nodeOptions, ...nodeFlags, ...treeFlags, join(tree, "runtime/src/main.ts")], {
    env: { ...benchRuntimeEnv(dataDir, { mediator, databaseUrl: schema?.url }), BATON_INSTANCE: instance, ...(broker === undefined ? {} : { BATON_BROKER_URL: broker.url }), ...treeEnv },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let output = ""
  const logFile = process.env.BATON_AB_LOG === undefined ? undefined : join(process.env.BATON_AB_LOG, `${instance}.log`)
  const keep = (b: Buffer) => {
    output += b.toString()
    if (logFile !== undefined) appendFileSync(logFile, b)
  }
  child.stdout.on("data", keep)
  child.stderr.on("data", keep)
  const doneMs = Number(process.env.BATON_AB_DONE_MS ?? 600_000)
  try {
    const ready = await new Promise<RegExpMatchArray>((ok, fail) => {
      const started = Date.now()
      const check = () => {
        const m = output.match(/runtime ready .*http=(\d+)(?: mqtt=(\d+))?/)
        if (m !== null) ok(m)
        else if (child.exitCode !== null || Date.now() - started > 30_000) fail(new Error(`runtime not ready:\n${output}`))
        else setTimeout(check, 20)
      }
      check()
    })
    const http = Number(ready[1])
    const mqtt = broker?.port ?? Number(ready[2])
    await placeOrders(mqtt, warmup, doneTopic, undefined, undefined, doneMs)
    await new Promise((r) => setTimeout(r, 300))
    const breakdown = process.env.BATON_AB_BREAKDOWN === "1"
    const s0 = await healthz(http, breakdown)
    const c0 = cpuMs(child.pid!)
    const b0 = broker === undefined ? 0 : cpuMs(broker.pid)
    const w0 = ioCalls(child.pid!, "syscw")
    const r0 = ioCalls(child.pid!, "syscr")
    const sched0 = schedOf(child.pid!)
    const p0 = schema === undefined ? new Map<number, number>() : postgresCpuByPid()
    const pgStats = schema !== undefined && process.env.BATON_AB_PGSTATS === "1"
    const g0 = pgStats ? await pgCounters(schema.url) : undefined
    const statementsStats = schema !== undefined && process.env.BATON_AB_PGSTATEMENTS === "1"
    if (statementsStats) await pgStatementsReset(schema.url)
    const activity = schema !== undefined && process.env.BATON_AB_PGACTIVITY === "1" ? await sampleActivity(schema.url, `baton/${instance}`) : undefined
    const m0 = machineBusyMs()
    const own0 = process.cpuUsage()
    const t0 = performance.now()
    const placed = await placeOrders(mqtt, count, doneTopic, undefined, undefined, doneMs)
    let perSecond = placed.perSecond!
    // The tail (relay deletes, last done marks) of the measured orders.
    if (process.env.BATON_AB_DRAIN !== "1") await new Promise((r) => setTimeout(r, 300))
    else {
      const settled = async () => (await healthz(http, true)).statementTexts?.filter((t) => /^(WITH s AS \()?UPDATE inbox SET status/.test(t.text)).reduce((n, t) => n + t.count, 0) ?? 0
      let last = -1
      let lastAt = performance.now()
      while (performance.now() - lastAt < 300 && performance.now() - t0 < 30_000) {
        const n = await settled()
        if (n !== last) [last, lastAt] = [n, performance.now()]
        await new Promise((r) => setTimeout(r, 20))
      }
      perSecond = count / ((lastAt - t0) / 1000)
    }
    const c1 = cpuMs(child.pid!)
    const b1 = broker === undefined ? 0 : cpuMs(broker.pid)
    const activityText = await activity?.()
    const m1 = machineBusyMs()
    const own = process.cpuUsage(own0)
    const elapsedMs = performance.now() - t0
    const w1 = ioCalls(child.pid!, "syscw")
    const r1 = ioCalls(child.pid!, "syscr")
    const sched1 = schedOf(child.pid!)
    const pgCpuMs = schema === undefined ? 0 : await runtimeBackendsCpuMs(schema.url, instance, p0)
    const s1 = await healthz(http, breakdown)
    const statementCosts = statementsStats ? await pgStatementCosts(schema!.url, count) : undefined
    let pgStatsText: string | undefined
    if (g0 !== undefined) {
      // The backends report their counters at most once a second.
      await new Promise((r) => setTimeout(r, 1_100))
      const g1 = await pgCounters(schema!.url)
      // Everything but the runtime and its backends: other clients (the bench's own MQTT client, other users of the machine).
      // This process (the load generator: the orders' client, their outcomes' subscriber) apart.
      const loadMs = (own.user + own.system) / 1000
      const othersCpu = (m1 - m0 - (c1 - c0) - pgCpuMs - loadMs) / elapsedMs
      pgStatsText =
        `load generator ${(loadMs / count).toFixed(2)} ms CPU/order, others' CPU ${othersCpu.toFixed(2)} cores, load ${readFileSync("/proc/loadavg", "utf8").split(" ")[0]}, xacts ${((g1.xacts - g0.xacts) / count).toFixed(2)}/order, hits ${((g1.hits - g0.hits) / count).toFixed(0)}/order, reads ${((g1.reads - g0.reads) / count).toFixed(1)}/order, ` +
        `WAL ${((g1.wal - g0.wal) / count / 1024).toFixed(1)} kB/order | ${await pgTables(schema!.url, count + warmup)}`
    }
    const before = new Map((s0.statementTexts ?? []).map((t) => [t.text, t.count]))
    return {
      tree,
      perSecond: perSecond!,
      cpuMsPerOrder: (c1 - c0) / count,
      loadCpuMsPerOrder: (own.user + own.system) / 1000 / count,
      ...(broker === undefined ? {} : { brokerCpuMsPerOrder: (b1 - b0) / count }),
      statementsPerOrder: ((s1.statements ?? Number.NaN) - (s0.statements ?? Number.NaN)) / count,
      writesPerOrder: (w1 - w0) / count,
      readsPerOrder: (r1 - r0) / count,
      main: {
        runMs: (sched1.runMs - sched0.runMs) / count,
        waitMs: (sched1.waitMs - sched0.waitMs) / count,
        preempted: (sched1.preempted - sched0.preempted) / count,
        slept: (sched1.slept - sched0.slept) / count
      },
      ...(schema === undefined ? {} : { pgCpuMsPerOrder: pgCpuMs / count }),
      ...(pgStatsText === undefined ? {} : { pgStats: pgStatsText }),
      ...(statementCosts === undefined ? {} : { statementCosts }),
      ...(activityText === undefined ? {} : { activity: activityText }),
      ...(breakdown
        ? {
            breakdown: (s1.statementTexts ?? [])
              .map((t) => ({ text: t.text, count: (t.count - (before.get(t.text) ?? 0)) / count }))
              .filter((t) => t.count > 0)
              .sort((a, b) => b.count - a.count)
          }
        : {})
    }
  } catch (error) {
    if (logFile !== undefined && schema !== undefined) {
      const dump = async (sql: string) => JSON.stringify(await query(schema.url, sql).catch((e: unknown) => String(e)))
      appendFileSync(
        logFile,
        `\n=== run failed: ${String(error)}\n` +
          `inbox: ${await dump("SELECT processor, status, count(*) FROM inbox GROUP BY 1, 2 ORDER BY 1, 2")}\n` +
          `outbox: ${await dump("SELECT count(*) FROM outbox")}\n` +
          `partitions: ${await dump("SELECT * FROM cluster_partitions ORDER BY part")}\n` +
          `members: ${await dump("SELECT * FROM cluster_members")}\n` +
          `activity: ${await dump("SELECT pid, state, wait_event_type, wait_event, now() - xact_start AS xact_age, left(query, 200) AS query FROM pg_stat_activity WHERE application_name LIKE 'baton/%'")}\n` +
          `locks: ${await dump("SELECT locktype, relation::regclass, mode, granted, pid FROM pg_locks WHERE NOT granted")}\n`
      )
    }
    throw error
  } finally {
    child.kill("SIGTERM")
    await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.on("exit", r)))
    await broker?.stop()
    rmSync(dataDir, { recursive: true, force: true })
    // BATON_AB_KEEP=1: the schema stays, for EXPLAIN and the like afterwards.
    if (process.env.BATON_AB_KEEP === "1") console.log(`kept ${schema?.url}`)
    else await schema?.drop()
  }
}

/** A figure, or n/a where a tree does not report it. */
const na = (x: number, digits = 1): string => (Number.isNaN(x) ? "n/a" : x.toFixed(digits))

const treeFlags = (process.env.BATON_AB_TREE_FLAGS ?? "").split("|").map((set) => set.split(" ").filter((f) => f !== ""))
const envs = treeEnvs(process.env.BATON_AB_TREE_ENV, trees.length)
/** Each tree argument (with its `#unix`) with its own flags and environment, named by them (the key of its results). */
const arms = trees.map((t, i) => ({
  root: resolve(t.split("#")[0]!) + (t.includes("#") ? t.slice(t.indexOf("#")) : ""),
  flags: treeFlags[i] ?? [],
  env: envs[i]!
}))
const roots = arms.map((r) => withEnv([r.root, ...(r.flags.length === 0 ? [] : [`[${r.flags.join(" ")}]`])].join(" "), r.env))
const results = new Map<string, Array<Result>>(roots.map((t) => [t, []]))
for (let round = 0; round < rounds; round++) {
  // Alternate which tree goes first.
  const order = round % 2 === 0 ? [...roots.keys()] : [...roots.keys()].reverse()
  for (const i of order) {
    const tree = roots[i]!
    const arm = arms[i]!
    const r = await runOnce(arm.root, arm.flags, arm.env)
    results.get(tree)!.push(r)
    console.log(
      `round ${round + 1} ${tree}: ${r.perSecond.toFixed(1)} orders/s, ${r.cpuMsPerOrder.toFixed(2)} ms CPU/order, ${na(r.statementsPerOrder)} statements/order, ${r.writesPerOrder.toFixed(1)} writes/order, ${r.readsPerOrder.toFixed(1)} reads/order` +
        (r.pgCpuMsPerOrder === undefined ? "" : `, postgres ${r.pgCpuMsPerOrder.toFixed(2)} ms CPU/order`) +
        (r.brokerCpuMsPerOrder === undefined ? "" : `, broker ${r.brokerCpuMsPerOrder.toFixed(2)} ms CPU/order`) +
        `, load generator ${r.loadCpuMsPerOrder.toFixed(2)} ms CPU/order` +
        ` | main thread ${r.main.runMs.toFixed(2)} ms on a core and ${r.main.waitMs.toFixed(2)} waiting for one, preempted ${r.main.preempted.toFixed(1)} and slept ${r.main.slept.toFixed(1)} times/order`
    )
    if (r.pgStats !== undefined) console.log(`  ${r.pgStats}`)
    if (r.statementCosts !== undefined) console.log(`  ${r.statementCosts}`)
    if (r.activity !== undefined) console.log(`  ${r.activity}`)
  }
}
const base = results.get(roots[0]!)!
for (const tree of roots) {
  const rs = results.get(tree)!
  const m = (f: (r: Result) => number) => median(rs.map(f))
  const ratio = (f: (r: Result) => number) => (m(f) / median(base.map(f))).toFixed(2)
  console.log(
    `${engine} ${tree}: median ${m((r) => r.perSecond).toFixed(1)} orders/s (${ratio((r) => r.perSecond)}x), ${m((r) => r.cpuMsPerOrder).toFixed(2)} ms CPU/order (${ratio((r) => r.cpuMsPerOrder)}x), ` +
      `${na(m((r) => r.statementsPerOrder))} statements/order (${na(m((r) => r.statementsPerOrder) / median(base.map((r) => r.statementsPerOrder)), 2)}x), ${m((r) => r.writesPerOrder).toFixed(1)} writes/order (${ratio((r) => r.writesPerOrder)}x), ${m((r) => r.readsPerOrder).toFixed(1)} reads/order (${ratio((r) => r.readsPerOrder)}x)` +
      (engine === "pg" ? `, postgres ${m((r) => r.pgCpuMsPerOrder ?? 0).toFixed(2)} ms CPU/order (${ratio((r) => r.pgCpuMsPerOrder ?? 0)}x)` : "") +
      `, broker ${m((r) => r.brokerCpuMsPerOrder ?? 0).toFixed(2)} ms CPU/order | main thread ${m((r) => r.main.runMs).toFixed(2)} ms on a core (${ratio((r) => r.main.runMs)}x), ${m((r) => r.main.waitMs).toFixed(2)} waiting (${ratio((r) => r.main.waitMs)}x)` +
      ` | orders/s ${Math.min(...rs.map((r) => r.perSecond)).toFixed(0)}-${Math.max(...rs.map((r) => r.perSecond)).toFixed(0)}`
  )
  const last = rs.at(-1)?.breakdown
  if (last !== undefined) for (const t of last) console.log(`  ${t.count.toFixed(2)}  ${t.text.replace(/\s+/g, " ").slice(0, 150)}`)
}
// The runtimes are stopped; a client or pool a scenario left open would keep the process waiting.
process.exit(0)
