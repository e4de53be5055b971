import { describe, expect, it } from "vitest"
import { spawn, spawnSync } from "node:child_process"
import { createServer, type AddressInfo } from "node:net"
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import mqtt from "mqtt"
import { Process } from "@baton/testkit"

const main = fileURLToPath(new URL("../src/main.ts", import.meta.url))
const launcher = fileURLToPath(new URL("../bin/start.mjs", import.meta.url))

/** Runs `node runtime/src/main.ts` (or other arguments) as a user would, collecting its log lines. */
const run = (env: Record<string, string>, args: ReadonlyArray<string> = [main]) => {
  const dataDir = mkdtempSync(join(tmpdir(), "baton-proc-"))
  const child = spawn(process.execPath, args, {
    env: { ...process.env, BATON_MQTT_PORT: "0", BATON_WS_PORT: "0", BATON_HTTP_PORT: "0", BATON_DATA_DIR: dataDir, ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let output = ""
  const waiters: Array<() => void> = []
  const onData = (b: Buffer) => {
    output += b.toString()
    for (const w of waiters) w()
  }
  child.stdout.on("data", onData)
  child.stderr.on("data", onData)
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
  const waitFor = (pattern: RegExp, timeoutMs = 20_000) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${pattern} in:\n${output}`)), timeoutMs)
      const check = () => {
        const m = output.match(pattern)
        if (m !== null) {
          clearTimeout(timer)
          resolve(m)
        }
      }
      waiters.push(check)
      check()
    })
  return { child, exited, waitFor, output: () => output, cleanup: () => rmSync(dataDir, { recursive: true, force: true }) }
}

describe("the runtime process", () => {
  it("starts, reports healthy, and shuts down gracefully on SIGTERM with one line per lifecycle event", async () => {
    const p = run({})
    try {
      const ready = await p.waitFor(/runtime ready .*http=(\d+)/)
      const health = await fetch(`http://127.0.0.1:${ready[1]}/healthz`)
      expect(health.status).toBe(200)
      p.child.kill("SIGTERM")
      expect(await p.exited).toBe(0)
      const lines = p.output().trim().split("\n")
      for (const event of ["runtime starting", "store opened", "broker listening", "http listening", "processor started", "runtime ready", "runtime stopping", "broker stopped", "store closed", "runtime stopped"])
        expect(lines.some((l) => l.includes(event)), event).toBe(true)
      expect(lines.every((l) => /^\d{4}-\d\d-\d\dT[\d:.]+Z (INFO|WARN|ERROR)/.test(l)), p.output()).toBe(true)
      expect(lines.filter((l) => l.includes("apps running"))).toEqual([expect.stringContaining("apps running apps=order-entry,customer ")])
    } finally {
      p.child.kill("SIGKILL")
      p.cleanup()
    }
  })

  it("shuts down gracefully on SIGINT", async () => {
    const p = run({})
    try {
      await p.waitFor(/runtime ready/)
      p.child.kill("SIGINT")
      expect(await p.exited).toBe(0)
      expect(p.output()).toContain("runtime stopped")
    } finally {
      p.cleanup()
    }
  })

  it("fails with one clear line when its MQTT port is taken", async () => {
    const holder = createServer()
    await new Promise<void>((r) => holder.listen(0, "127.0.0.1", () => r()))
    const port = (holder.address() as AddressInfo).port
    const p = run({ BATON_MQTT_PORT: String(port) })
    try {
      expect(await p.exited).toBe(1)
      const errors = p.output().split("\n").filter((l) => l.includes("ERROR"))
      expect(errors).toHaveLength(1)
      expect(errors[0]).toContain(`MQTT port ${port} is already in use on 127.0.0.1`)
      expect(errors[0]).toContain("BATON_MQTT_PORT")
    } finally {
      holder.close()
      p.cleanup()
    }
  })

  it("refuses an invalid configuration with a readable reason", async () => {
    const p = run({ BATON_HTTP_PORT: "eighty" })
    try {
      expect(await p.exited).toBe(1)
      expect(p.output()).toContain("BATON_HTTP_PORT must be a port number from 0 to 65535, got 'eighty'")
    } finally {
      p.cleanup()
    }
  })
})

describe("the launcher (runtime/bin/start.mjs, behind pnpm start, pnpm baton and the examples)", () => {
  // A Node too old for TypeScript sources: the machines' own (Node 20), or BATON_TEST_OLD_NODE.
  const oldNode = process.env.BATON_TEST_OLD_NODE ?? "/usr/bin/node"

  it("on an old Node, exits 1 with one line that says what to install", () => {
    expect(existsSync(oldNode), `no old Node at ${oldNode}: set BATON_TEST_OLD_NODE to a Node older than 22.19`).toBe(true)
    const version = spawnSync(oldNode, ["-p", "process.versions.node"], { encoding: "utf8" }).stdout.trim()
    const [major = 0, minor = 0] = version.split(".").map(Number)
    expect(major < 22 || (major === 22 && minor < 19), `${oldNode} is Node ${version}, not older than 22.19: set BATON_TEST_OLD_NODE`).toBe(true)
    const result = spawnSync(oldNode, [launcher, main], { encoding: "utf8", timeout: 10_000 })
    expect(result.status).toBe(1)
    expect(result.stdout).toBe("")
    expect(result.stderr.trimEnd().split("\n")).toEqual([
      expect.stringMatching(new RegExp(`^Baton needs Node >=22\\.19 and this is Node v${version.replaceAll(".", "\\.")}: install Node 24`))
    ])
  })

  it("on Node 24, starts the runtime (BATON_APP=+order-stats: the defaults and order-stats), which stops gracefully on SIGTERM", async () => {
    const p = run({ BATON_APP: "+order-stats" }, [launcher, main])
    try {
      await p.waitFor(/runtime ready/)
      expect(p.output()).toMatch(/INFO  apps running apps=order-entry,customer,order-stats /)
      p.child.kill("SIGTERM")
      expect(await p.exited).toBe(0)
    } finally {
      p.child.kill("SIGKILL")
      p.cleanup()
    }
  })

  it("`pnpm start`, `pnpm baton` and the testkit's processes run Node with young-generation semi-spaces of at most 8 MB", () => {
    // Short scavenges (README, "Configuration"): V8 would size them from the machine's memory.
    const scripts = (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { scripts: Record<string, string> }).scripts
    for (const name of ["start", "baton"]) expect(scripts[name]).toMatch(new RegExp(`^node ${Process.nodeOptions.join(" ")} runtime/bin/start\\.mjs `))
    const newSpace = spawnSync(process.execPath, [...Process.nodeOptions, "-p", "require('node:v8').getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size"], { encoding: "utf8" })
    // Both semi-spaces: 16 MB at most (128 MB here without the option).
    expect(Number(newSpace.stdout)).toBeLessThanOrEqual(16 * 2 ** 20)
  })

  it("the testkit's processes (and so `pnpm start`) make no pretenuring decision under load; the same runtime with pretenuring on makes some", async () => {
    // V8 allocates in the old space at the sites whose objects survived scavenges; dying soon after,
    // they keep young objects alive (README, "Configuration"). Each decision is a trace line.
    const decisions = async (flags: ReadonlyArray<string>): Promise<number> => {
      const dir = mkdtempSync(join(tmpdir(), "baton-pretenure-"))
      const r = await Process.startProcess(dir, { BATON_PUBLISH_RATE: "1000000" }, ["--trace-pretenuring-statistics", ...flags, main])
      try {
        const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${r.mqttPort}`, { protocolVersion: 4, reconnectPeriod: 0 })
        const order = (i: number) => ({ customerId: `p-${i % 50}`, email: "p@example.com", items: [{ sku: `BOOK-${(i % 5) + 1}`, qty: 1, price: 2 }], payment: { card: "4242424242424242" } })
        for (let i = 0; i < 400; i += 50) await Promise.all(Array.from({ length: 50 }, (_, j) => client.publishAsync("initiate/place-order", JSON.stringify(order(i + j)), { qos: 1 })))
        await client.endAsync()
        return r.output().split("\n").filter((l) => /pretenuring: AllocationSite\(.*=> (maybe )?tenure$/.test(l)).length
      } finally {
        await r.kill("SIGKILL")
        rmSync(dir, { recursive: true, force: true })
      }
    }
    expect(await decisions(["--allocation-site-pretenuring"]), "the control made no decision: the load is too small to tell").toBeGreaterThan(0)
    expect(await decisions([])).toBe(0)
  }, 30_000)

  it("passes the entry point its own arguments", () => {
    const dir = mkdtempSync(join(tmpdir(), "baton-launch-"))
    try {
      const cli = fileURLToPath(new URL("../src/cli.ts", import.meta.url))
      const file = join(dir, "users.json")
      const added = spawnSync(process.execPath, [launcher, cli, "user", "add", "ann", "--role", "observer", "--file", file], { encoding: "utf8", env: { ...process.env, BATON_PASSWORD: "correct horse" } })
      expect(added.stderr).toBe("")
      expect(added.status).toBe(0)
      const listed = spawnSync(process.execPath, [launcher, cli, "user", "list", "--file", file], { encoding: "utf8" })
      expect(listed.stdout).toBe("ann observer\n")
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
