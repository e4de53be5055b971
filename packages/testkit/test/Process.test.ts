/**
 * `startProcess` when the runtime is not ready in time: the process it started is killed (not left
 * running, holding ports and its data directory, after the test that started it failed).
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { startProcess } from "../src/Process.ts"

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe("startProcess", () => {
  it("kills the process it started when it is not ready in time", async () => {
    const dir = mkdtempSync(join(tmpdir(), "baton-process-test-"))
    try {
      // Never ready: prints its pid and runs on.
      const error: unknown = await startProcess(dir, {}, ["-e", "process.stdout.write(`pid=${process.pid}\\n`); setInterval(() => {}, 1000)"], 1_000).catch((e: unknown) => e)
      expect(String(error)).toMatch(/not ready after/)
      const pid = Number(/pid=(\d+)/.exec(String(error))?.[1])
      expect(pid).toBeGreaterThan(0)
      await new Promise((r) => setTimeout(r, 200))
      const left = alive(pid)
      if (left) process.kill(pid, "SIGKILL")
      expect(left, "the runtime that did not get ready is still running").toBe(false)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 45_000)
})
