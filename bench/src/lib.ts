/** Measuring helpers: statistics, child processes, bursts, CPU time. (Paced load: `pacing.ts`.) */
import { spawn, type ChildProcess } from "node:child_process"
import { readFileSync } from "node:fs"
import type { Socket } from "node:net"
import { fileURLToPath } from "node:url"
import type { MqttClient } from "mqtt"

/** The middle value; for an even count the mean of the two middle ones (not the lower: two rounds would report their slower). */
export const median = (xs: ReadonlyArray<number>): number => {
  if (xs.length === 0) return Number.NaN
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

/** Nearest-rank percentile. */
export const percentile = (xs: ReadonlyArray<number>, p: number): number => {
  if (xs.length === 0) return Number.NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!
}

export interface Summary {
  readonly median: number
  readonly min: number
  readonly max: number
  readonly samples: ReadonlyArray<number>
}

export const summarize = (samples: ReadonlyArray<number>): Summary => ({ median: median(samples), min: Math.min(...samples), max: Math.max(...samples), samples })

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

export const noDelay = (client: MqttClient): MqttClient => {
  ;(client.stream as Partial<Socket>).setNoDelay?.(true)
  return client
}

export interface Child {
  readonly child: ChildProcess
  /** The JSON the child printed on its `ready` line. */
  readonly info: Record<string, unknown>
  readonly output: () => string
  readonly stop: () => Promise<void>
}

/** Runs `bench/src/<script>` in its own Node process and waits for its `ready {json}` line. */
export const child = async (script: string, env: Record<string, string> = {}, args: ReadonlyArray<string> = []): Promise<Child> => {
  const path = fileURLToPath(new URL(script, import.meta.url))
  const proc = spawn(process.execPath, [path, ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] })
  let output = ""
  proc.stdout!.on("data", (b: Buffer) => (output += b.toString()))
  proc.stderr!.on("data", (b: Buffer) => (output += b.toString()))
  const exited = new Promise<void>((resolve) => proc.on("exit", () => resolve()))
  const info = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${script} not ready after 30 s:\n${output}`)), 30_000)
    const check = () => {
      const m = output.match(/^ready (\{.*\})$/m)
      if (m !== null) {
        clearTimeout(timer)
        resolve(JSON.parse(m[1]!) as Record<string, unknown>)
      } else if (proc.exitCode !== null) {
        clearTimeout(timer)
        reject(new Error(`${script} exited (${proc.exitCode}):\n${output}`))
      } else setTimeout(check, 20)
    }
    check()
  })
  return {
    child: proc,
    info,
    output: () => output,
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM")
      await Promise.race([exited, sleep(5000)])
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL")
      await exited
    }
  }
}

/** Publishes `count` messages with at most `window` unacknowledged, as fast as the broker allows. */
export const burst = async (count: number, window: number, publish: (i: number) => Promise<unknown>): Promise<void> => {
  const inFlight = new Set<Promise<unknown>>()
  for (let i = 0; i < count; i++) {
    const p = publish(i)
    inFlight.add(p)
    void p.finally(() => inFlight.delete(p))
    if (inFlight.size >= window) await Promise.race(inFlight)
  }
  await Promise.all(inFlight)
}

/** Resolves when `n` calls of the returned `hit` happened. */
/**
 * Orders (or workflows) every contender runs, unmeasured, before a measured run: the same number for
 * each, so that no one's figures carry its JIT warm-up (the first orders on a fresh runtime take
 * several times as long). `BENCH_WARMUP` sets it. 1,000 by default: `warmCurve.ts curve` found
 * Baton on SQLite, Moleculer, the mediator and BullMQ within about 10% of their steady CPU per
 * order after 600-1,200 orders (Moleculer's first 300 at about 3x its final figure), Baton on
 * PostgreSQL only after several thousand; 50, the earlier default, left every contender's short
 * rounds carrying part of its warm-up, Moleculer's and PostgreSQL's most.
 */
export const warmup = (): number => Number(process.env.BENCH_WARMUP ?? 1000)

/**
 * Round trips every request-reply contender (Baton's modes, the raw echo, `rrFloor.ts`'s floors)
 * runs, unmeasured, before a measured run: `BENCH_RR_WARMUP`, 10,000 by default. An order runs
 * the runtime's per-message code about ten times (its hops), a round trip once, so 1,000 round
 * trips left Baton's per-request functions short of the 3,000 calls after which V8 optimizes a
 * function with TurboFan. Measured (`rrCurve.ts 12000 1000 2`, 2026-12-04, an Intel Xeon, medians
 * of the p50 per 1,000 round trips): Baton 518, 288, 266, 258, 255, 241, 241, 228, 227, 229, 241,
 * 203 us; the raw echo 200, 182, then 137-165 from 2,000 on. Scenario 5 measured round trips
 * 1,000-1,300, before either's steady state: with 10,000 (`rr.ts 300 2`, alternated) Baton 0.230-0.235
 * ms against 0.267-0.288, the echo 0.132-0.137 against 0.150-0.156, the ratio 1.72-1.75x against
 * 1.77-1.85x. A lower TurboFan threshold for the runtime (`--invocation-count-for-turbofan`, 300
 * or 1,000) reached Baton's steady p50 sooner (0.85-0.90x at round trips 1,000-1,300) but cost the
 * order flow burst 0.88-0.91x orders/s at 1.30-1.45x CPU an order (compiles on the second core in
 * the measured window): not kept.
 */
export const rrWarmup = (): number => Number(process.env.BENCH_RR_WARMUP ?? 10_000)

export const counter = (n: number) => {
  let count = 0
  let resolve: () => void = () => {}
  const done = new Promise<void>((r) => (resolve = r))
  if (n === 0) resolve()
  return {
    done,
    hit: () => {
      count++
      if (count === n) resolve()
    },
    count: () => count
  }
}

/** Waits for `done`, or fails after `ms` with what is missing. */
export const within = <A>(done: Promise<A>, ms: number, what: string): Promise<A> =>
  Promise.race([done, sleep(ms).then(() => Promise.reject(new Error(`${what}: not done within ${ms} ms`)))])

/** CPU time (user + system, all threads) a process has used so far, in ms, from /proc (Linux). */
/** Write (`syscw`) or read (`syscr`) syscalls of a process so far, from /proc/<pid>/io. */
export const ioCalls = (pid: number, field: "syscw" | "syscr"): number =>
  Number(new RegExp(`${field}: (\\d+)`).exec(readFileSync(`/proc/${pid}/io`, "utf8"))?.[1] ?? Number.NaN)

/**
 * `url` connecting through the PostgreSQL server's Unix socket rather than TCP: its folder
 * `BATON_AB_PGSOCKET` (`/var/run/postgresql` by default), as the `host` of the query string (pg reads it there).
 */
export const overUnixSocket = (url: string): string =>
  `${url}${url.includes("?") ? "&" : "?"}host=${encodeURIComponent(process.env.BATON_AB_PGSOCKET ?? "/var/run/postgresql")}`

export const cpuMs = (pid: number): number => {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100 // utime, stime in USER_HZ ticks (100)
}

/**
 * How a process's main thread (its tid is the pid) was scheduled so far, from /proc (Linux): its
 * time on a core and waiting on a run queue (runnable, not running: another task had the core), in
 * ms (`schedstat`), and its switches off a core while runnable (`nonvoluntary_ctxt_switches`:
 * preempted) and while going to sleep (`voluntary_ctxt_switches`: waiting in epoll for work). A
 * V8 CPU profile samples the thread by the wall clock, so the time it waits for a core after a
 * system call shows as that call's (`writev`'s, when the write woke the peer that took the core).
 * Order flow on 2 cores shared with other load (`ab.ts pg 3000`, 2026-12-03): on PostgreSQL 0.70
 * ms on a core, 0.66-0.88 waiting for one, preempted 2.0 times an order (in a `perf` record of
 * its switches, 68% of them on return from a write or writev); on SQLite 0.38, 0.15-0.27 and 0.7-1.0.
 */
export const schedOf = (pid: number): { readonly runMs: number; readonly waitMs: number; readonly preempted: number; readonly slept: number } => {
  const [run, wait] = readFileSync(`/proc/${pid}/schedstat`, "utf8").split(" ").map(Number)
  const status = new Map(readFileSync(`/proc/${pid}/status`, "utf8").split("\n").map((line) => line.split(":\t") as [string, string]))
  return { runMs: run! / 1e6, waitMs: wait! / 1e6, preempted: Number(status.get("nonvoluntary_ctxt_switches")), slept: Number(status.get("voluntary_ctxt_switches")) }
}

/** Minor page faults of a process so far (all threads), from /proc: each a first touch of a fresh page (some 15 us on this VM, `cyclic.c fault`). */
export const minorFaults = (pid: number): number => Number(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")[7])

/** The CPU ms that `processes` use while `body` runs, with `settleMs` after it for the work it left behind. */
export const cpuDuring = async <A>(pids: ReadonlyArray<number>, body: () => Promise<A>, settleMs = 300): Promise<{ readonly result: A; readonly cpuMs: number }> => {
  const total = () => pids.reduce((sum, pid) => sum + cpuMs(pid), 0)
  const before = total()
  const result = await body()
  await sleep(settleMs)
  return { result, cpuMs: total() - before }
}

/**
 * `BATON_AB_TREE_ENV` of the A/B tools (`ab.ts`, `acceptAb.ts`, `rr.ts`): one set of `NAME=value`
 * words per tree argument, separated by `|`, the runtime's environment for that arm alone
 * (`"|BATON_FRONT=log"` with `. .`: the second arm with it). The environments of `arms` tree
 * arguments in order, empty for an arm without a set. A word that is no `NAME=value`, or more sets
 * than arms, is refused: a typo would measure an arm without its setting, or the wrong arm with it.
 */
export const treeEnvs = (spec: string | undefined, arms: number): ReadonlyArray<Readonly<Record<string, string>>> => {
  const sets = (spec ?? "").split("|")
  if (sets.length > arms) throw new Error(`BATON_AB_TREE_ENV has ${sets.length} sets (separated by |) for ${arms} tree arguments: one set per tree, in order`)
  return Array.from({ length: arms }, (_, i) =>
    Object.fromEntries(
      (sets[i] ?? "")
        .split(" ")
        .filter((w) => w !== "")
        .map((w) => {
          const eq = w.indexOf("=")
          if (eq < 1) throw new Error(`BATON_AB_TREE_ENV: "${w}" is not NAME=value (words separated by spaces, sets by |)`)
          return [w.slice(0, eq), w.slice(eq + 1)]
        })
    )
  )
}

/** An arm's name in a tool's output: `name`, and its `BATON_AB_TREE_ENV` environment in braces when it has one. */
export const withEnv = (name: string, env: Readonly<Record<string, string>>): string => {
  const words = Object.entries(env).map(([k, v]) => `${k}=${v}`)
  return words.length === 0 ? name : `${name} {${words.join(" ")}}`
}

/**
 * The environment of a runtime that `ab.ts` or `profile.ts` starts: ephemeral ports, its own data
 * folder, no publish limit; the mediator topology or a PostgreSQL store when given.
 */
export const benchRuntimeEnv = (dataDir: string, options: { readonly mediator: boolean; readonly databaseUrl?: string | undefined }): NodeJS.ProcessEnv => ({
  ...process.env,
  BATON_MQTT_PORT: "0",
  BATON_WS_PORT: "off",
  BATON_HTTP_PORT: "0",
  BATON_DATA_DIR: dataDir,
  BATON_PUBLISH_RATE: "1000000",
  ...(options.mediator ? { BATON_TOPOLOGY: "mediator" } : {}),
  ...(options.databaseUrl === undefined ? {} : { BATON_DATABASE_URL: options.databaseUrl })
})

/**
 * Starts `tree`'s runtime (`runtime/src/main.ts`) with `flags` and `env`, and waits until it reports
 * ready: the process and its MQTT port. Its output is kept; it is the error when it exits first.
 */
export const readyRuntime = async (tree: string, flags: ReadonlyArray<string>, env: NodeJS.ProcessEnv): Promise<{ readonly child: ChildProcess; readonly mqtt: number }> => {
  const child = spawn(process.execPath, [...flags, `${tree}/runtime/src/main.ts`], { env, stdio: ["ignore", "pipe", "pipe"] })
  let output = ""
  child.stdout!.on("data", (b: Buffer) => (output += b.toString()))
  child.stderr!.on("data", (b: Buffer) => (output += b.toString()))
  const ready = await new Promise<RegExpMatchArray>((ok, fail) => {
    const check = () => {
      const m = output.match(/runtime ready .*http=(\d+)(?: mqtt=(\d+))?/)
      if (m !== null) ok(m)
      else if (child.exitCode !== null) fail(new Error(`runtime not ready:\n${output}`))
      else setTimeout(check, 20)
    }
    check()
  })
  return { child, mqtt: Number(ready[2]) }
}
