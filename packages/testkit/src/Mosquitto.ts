/**
 * The machine's one Mosquitto, taken in turns. Tests that run a runtime on it subscribe to the
 * topic contract's topics (`initiate/#`, `events/#`), so two at once see each other's traffic: a
 * runtime processes the other test's orders, and its persistent sessions fill up with them past
 * Mosquitto's `max_queued_messages` (1000), which drops the rest (seen: a cluster's orders stuck
 * when another Mosquitto test ran beside it). Vitest runs two files at a time here, so these tests
 * take a lock shared by every process of the machine: a directory, created atomically, holding the
 * holder's pid; one left by a process that died is taken over.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

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
