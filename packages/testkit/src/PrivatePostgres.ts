/**
 * A PostgreSQL server of a test's own: `initdb` into a temporary directory, `postgres` on an
 * ephemeral TCP port (loopback) with its unix socket in that directory. For faults that must not
 * touch the shared server on 5432 (other tests use it): stopping it as a crash would
 * (`pg_ctl stop -m immediate`), starting it again on the same port and data.
 *
 * PostgreSQL refuses to run as root: when the tests run as root, the binaries run as the
 * `postgres` user (`runuser`), and the directory is theirs. `BATON_TEST_PG_BIN` overrides where the
 * binaries are (the newest `/usr/lib/postgresql/<version>/bin` otherwise).
 */
import { execFile } from "node:child_process"
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs"
import { freePort } from "./Ports.ts"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"

const run = promisify(execFile)

export interface Server {
  /** `postgres://postgres@127.0.0.1:<port>/postgres` */
  readonly url: string
  readonly port: number
  readonly dir: string
  /** Starts the server (again) on the same port and data; resolves once it accepts connections. */
  readonly start: () => Promise<void>
  /** `pg_ctl stop -m <mode>`: `immediate` is a crash (no checkpoint, recovery at the next start). */
  readonly stop: (mode?: "immediate" | "fast" | "smart") => Promise<void>
  /** Stops it (fast) and removes its directory: once; safe to call after a failed start. */
  readonly destroy: () => Promise<void>
}

const binDir = (): string => {
  const own = process.env.BATON_TEST_PG_BIN
  if (own !== undefined) return own
  const root = "/usr/lib/postgresql"
  const versions = existsSync(root) ? readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a)) : []
  if (versions.length === 0) throw new Error(`no PostgreSQL binaries in ${root}: set BATON_TEST_PG_BIN to the directory holding initdb and pg_ctl`)
  return join(root, versions[0]!, "bin")
}

const asRoot = process.getuid?.() === 0

/** Runs a PostgreSQL binary (as `postgres` when we are root); fails with its output. */
const pgRun = async (bin: string, args: ReadonlyArray<string>) => {
  const [file, argv] = asRoot ? ["runuser", ["-u", "postgres", "--", bin, ...args]] : [bin, [...args]]
  try {
    await run(file, argv, { timeout: 60_000 })
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; message: string }
    throw new Error(`${bin} ${args.join(" ")} failed: ${e.message}\n${e.stdout ?? ""}${e.stderr ?? ""}`)
  }
}

/** Creates the cluster and starts the server. */
export const start = async (settings: Readonly<Record<string, string | number>> = {}): Promise<Server> => {
  const bin = binDir()
  const dir = mkdtempSync(join(tmpdir(), "baton-pg-"))
  if (asRoot) {
    const { stdout } = await run("id", ["-u", "postgres"])
    const { stdout: gid } = await run("id", ["-g", "postgres"])
    chownSync(dir, Number(stdout.trim()), Number(gid.trim()))
  }
  const data = join(dir, "data")
  const port = await freePort()
  const options = Object.entries({ fsync: "off", synchronous_commit: "off", full_page_writes: "off", max_connections: 50, ...settings })
    .map(([k, v]) => `-c ${k}=${v}`)
    .join(" ")
  const pgCtl = (...args: ReadonlyArray<string>) => pgRun(join(bin, "pg_ctl"), ["-D", data, ...args])
  let running = false
  let destroyed = false
  const server: Server = {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    dir,
    start: async () => {
      // -w: waits until the server accepts connections (after crash recovery, too).
      await pgCtl("start", "-w", "-t", "30", "-l", join(dir, "server.log"), "-o", `-p ${port} -k ${dir} -h 127.0.0.1 ${options}`)
      running = true
    },
    stop: async (mode = "fast") => {
      await pgCtl("stop", "-w", "-t", "30", "-m", mode)
      running = false
    },
    destroy: async () => {
      if (destroyed) return
      destroyed = true
      if (running) await server.stop("immediate").catch(() => undefined)
      rmSync(dir, { recursive: true, force: true })
    }
  }
  try {
    await pgRun(join(bin, "initdb"), ["-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
    await server.start()
  } catch (error) {
    await server.destroy()
    throw error
  }
  return server
}
