/**
 * The runtime as a child process, as a user runs it: for crash tests (SIGKILL at a kill point of
 * its own, `BATON_CRASH_AT`, or from outside; restart on the same data directory; read the store
 * to check what survived) and for benchmarks that must not share a process with the load.
 */
import { spawn, type ChildProcess } from "node:child_process"
import { fileURLToPath } from "node:url"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { DatabaseSync } from "node:sqlite"
import mqtt from "mqtt"

const main = fileURLToPath(import.meta.resolve("@baton/runtime/main"))

/**
 * The Node options the runtime runs with, as `pnpm start` and `pnpm baton` give them (package.json;
 * README, "Configuration"): young-generation semi-spaces of at most 8 MB, so that each scavenge is
 * short; no allocation-site pretenuring, so that V8 does not allocate in the old space objects that
 * die young, which would keep the young objects they point to alive past scavenges (nepotism).
 */
export const nodeOptions: ReadonlyArray<string> = ["--max-semi-space-size=8", "--no-allocation-site-pretenuring"]

export interface Running {
  readonly child: ChildProcess
  readonly mqttPort: number | undefined
  readonly httpPort: number
  /** Resolves with the exit code, or the signal that ended the process. */
  readonly exited: Promise<number | string>
  readonly output: () => string
  readonly kill: (signal?: NodeJS.Signals) => Promise<number | string>
}

/**
 * `BATON_TEST_FRONT=log` (or `thread`): the ingress mode (`BATON_FRONT`, docs/front-thread.md,
 * section 10) of every runtime a suite starts, spawned here and in process (runtime/test/support.ts),
 * so that a whole suite runs in it unchanged; none for a runtime on PostgreSQL or an external
 * broker (`unsupported`), which the mode refuses (section 8). The caller's own setting comes after.
 */
export const testFront = (unsupported: boolean): Record<string, string> => {
  const front = process.env.BATON_TEST_FRONT
  return front === undefined || front === "" || unsupported ? {} : { BATON_FRONT: front }
}

/**
 * Starts the runtime and waits until it is ready (or until it died trying). `args`: what Node runs,
 * `main.ts` by default (`[cli.ts, "start", "--app", path]` runs a user's app as `baton start` does).
 */
export const startProcess = async (dataDir: string, env: Record<string, string> = {}, args: ReadonlyArray<string> = [main], readyMs = 30_000): Promise<Running> => {
  const child = spawn(process.execPath, [...nodeOptions, ...args], {
    env: { ...process.env, BATON_MQTT_PORT: "0", BATON_WS_PORT: "off", BATON_HTTP_PORT: "0", BATON_DATA_DIR: dataDir, BATON_RESTART_DELAY_MS: "10", ...testFront(env.BATON_DATABASE_URL !== undefined || env.BATON_BROKER_URL !== undefined), ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let output = ""
  child.stdout!.on("data", (b: Buffer) => (output += b.toString()))
  child.stderr!.on("data", (b: Buffer) => (output += b.toString()))
  const exited = new Promise<number | string>((resolve) => child.on("exit", (code, signal) => resolve(code ?? signal ?? "unknown")))
  // Given up (not ready in time, or exited): the polling stops, and a process still running is
  // killed (not left holding its ports and data directory after the test that started it failed).
  let settled = false
  let timer: NodeJS.Timeout | undefined
  let ready: RegExpMatchArray
  try {
    ready = await Promise.race([
      new Promise<RegExpMatchArray>((resolve) => {
        const check = () => {
          if (settled) return
          const m = output.match(/runtime ready .*http=(\d+)(?: mqtt=(\d+))?/)
          if (m !== null) resolve(m)
          else setTimeout(check, 20)
        }
        check()
      }),
      exited.then((code) => {
        throw new Error(`runtime exited (${code}) before it was ready:\n${output}`)
      }),
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`runtime not ready after ${readyMs / 1000} s:\n${output}`)), readyMs)))
    ])
  } catch (error) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL")
      await exited
    }
    throw error
  } finally {
    settled = true
    clearTimeout(timer)
  }
  return {
    child,
    httpPort: Number(ready[1]),
    mqttPort: ready[2] === undefined ? undefined : Number(ready[2]),
    exited,
    output: () => output,
    kill: (signal = "SIGKILL") => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
      return exited
    }
  }
}

/** Reads the store (read-only; the runtime may be running, WAL allows it). */
export const readStore = <A>(dataDir: string, f: (db: DatabaseSync) => A): A => {
  const db = new DatabaseSync(join(dataDir, "baton.db"), { readOnly: true })
  try {
    return f(db)
  } finally {
    db.close()
  }
}

export const count = (db: DatabaseSync, sql: string, ...params: Array<string | number>): number =>
  Number(Object.values(db.prepare(sql).get(...params) ?? { n: 0 })[0])

/** Polls until `done` holds or the time is up. */
export const eventually = async (done: () => boolean, timeoutMs: number, what: string): Promise<void> => {
  const until = Date.now() + timeoutMs
  while (!done()) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** The client ids of a runtime's sessions on an external broker (`<instance>.<name>`). */
export const sessionIds = (instance: string, processors: ReadonlyArray<string>): ReadonlyArray<string> =>
  [...processors, "ingress"].map((name) => `${instance}.${name}`)

/**
 * A crash scenario on a fresh data directory: `start` runs the runtime on it (again and again);
 * at the end every process still alive is killed and the directory removed.
 */
export const onDataDir = async <A>(body: (ctx: { readonly dataDir: string; readonly start: (env?: Record<string, string>) => Promise<Running> }) => Promise<A>): Promise<A> => {
  const dataDir = mkdtempSync(join(tmpdir(), "baton-crash-"))
  const started: Array<Running> = []
  try {
    return await body({
      dataDir,
      start: async (env = {}) => {
        const running = await startProcess(dataDir, env)
        started.push(running)
        return running
      }
    })
  } finally {
    for (const running of started) await running.kill("SIGKILL")
    rmSync(dataDir, { recursive: true, force: true })
  }
}

/**
 * An outside watcher of every event and rejection: a persistent session (subscribed, then offline)
 * on the runtime's embedded broker. The runtime writes no outbox row for an event nobody would get;
 * with the watcher every event has an audience, so the relay publishes each one (and its kill points
 * are reached), before and after a restart (the broker keeps the session on disk).
 */
export const watchEverything = async (url: string): Promise<void> => {
  const client = await mqtt.connectAsync(url, { protocolVersion: 4, clientId: `watcher-${crypto.randomUUID().slice(0, 8)}`, clean: false, reconnectPeriod: 0 })
  await client.subscribeAsync(["events/#", "errors/#"], { qos: 1 })
  await client.endAsync()
}
