import { describe, expect, it } from "vitest"
import { spawn } from "node:child_process"
import { createServer, type AddressInfo } from "node:net"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

const main = fileURLToPath(new URL("../src/main.ts", import.meta.url))

/** Runs `node runtime/src/main.ts` as a user would, collecting its log lines. */
const run = (env: Record<string, string>) => {
  const dataDir = mkdtempSync(join(tmpdir(), "baton-proc-"))
  const child = spawn(process.execPath, [main], {
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
