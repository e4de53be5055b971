/**
 * The machine's one Mosquitto, taken in turns. Tests that run a runtime on it subscribe to the
 * topic contract's topics (`initiate/#`, `events/#`), so two at once see each other's traffic: a
 * runtime processes the other test's orders, and its persistent sessions fill up with them past
 * Mosquitto's `max_queued_messages` (1000), which drops the rest (seen: a cluster's orders stuck
 * when another Mosquitto test ran beside it). Vitest runs two files at a time here, so these tests
 * take a lock shared by every process of the machine: a directory, created atomically, holding the
 * holder's pid; one left by a process that died is taken over. `start` runs a Mosquitto of the
 * caller's own instead (a free port, nothing shared).
 */
import { spawn } from "node:child_process"
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createConnection } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { freePort } from "./Ports.ts"

const lock = join(tmpdir(), "baton-test-mosquitto.lock")

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** Waits for the lock (another one at `path`, for its own test); gives the function that releases it. */
export const acquire = async (path = lock): Promise<() => void> => {
  for (;;) {
    try {
      mkdirSync(path)
      writeFileSync(join(path, "pid"), String(process.pid))
      return () => rmSync(path, { recursive: true, force: true })
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error
      let holder = Number.NaN
      try {
        holder = Number(readFileSync(join(path, "pid"), "utf8"))
      } catch {
        // Not written yet: its holder is between the two steps above.
      }
      if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && !alive(holder)) {
        rmSync(path, { recursive: true, force: true })
        continue
      }
      await new Promise((r) => setTimeout(r, 100))
    }
  }
}

/** Runs `f` holding the lock. */
export const exclusive = async <A>(f: () => Promise<A>, path = lock): Promise<A> => {
  const release = await acquire(path)
  try {
    return await f()
  } finally {
    release()
  }
}

/** A Mosquitto of one test's (or one benchmark run's) own (`start`). */
export interface Private {
  readonly port: number
  readonly url: string
  /** Stops it (SIGTERM) and removes its folder. */
  readonly stop: () => Promise<void>
}

/**
 * Starts a Mosquitto of the caller's own on a free loopback port, in a temporary folder: no
 * persistence, no limit on the messages queued for a session, TCP_NODELAY, and `inflight`
 * unacknowledged QoS 1/2 messages per client (`max_inflight_messages`, Mosquitto's default 20).
 * Nothing shared: no lock needed. Resolves once it accepts connections.
 */
export const start = async (options: { readonly inflight?: number } = {}): Promise<Private> => {
  const dir = mkdtempSync(join(tmpdir(), "baton-mosquitto-"))
  const port = await freePort()
  const conf = join(dir, "mosquitto.conf")
  writeFileSync(
    conf,
    `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\nmax_inflight_messages ${options.inflight ?? 20}\nset_tcp_nodelay true\n`
  )
  const broker = spawn(process.env.BATON_TEST_MOSQUITTO_BIN ?? "mosquitto", ["-c", conf], { stdio: ["ignore", "ignore", "pipe"] })
  let log = ""
  broker.stderr.on("data", (b: Buffer) => (log += b.toString()))
  const stop = async () => {
    if (broker.exitCode === null && broker.signalCode === null) {
      const exited = new Promise((r) => broker.once("exit", r))
      broker.kill("SIGTERM")
      await exited
    }
    rmSync(dir, { recursive: true, force: true })
  }
  const listening = () =>
    new Promise<boolean>((ok) => {
      const probe = createConnection(port, "127.0.0.1", () => (probe.end(), ok(true)))
      probe.once("error", () => ok(false))
    })
  for (const started = Date.now(); !(await listening()); ) {
    if (broker.exitCode !== null || Date.now() - started > 10_000) {
      await stop()
      throw new Error(`mosquitto did not start on port ${port}: ${log}`)
    }
    await new Promise((r) => setTimeout(r, 20))
  }
  return { port, url: `mqtt://127.0.0.1:${port}`, stop }
}
