import { describe, expect, it } from "vitest"
import { spawnSync } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Mosquitto } from "@baton/testkit"

// A lock of its own: the machine's is held by the tests that use Mosquitto meanwhile.
const lock = join(mkdtempSync(join(tmpdir(), "baton-lock-test-")), "lock")

describe("Mosquitto taken in turns", () => {
  it("one holder at a time, every waiter served, and a lock left by a dead process taken over", async () => {
    // Left by a process that is gone (a pid that exited): taken over, not waited for forever.
    const dead = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"]).stdout.toString()
    let release = await Mosquitto.acquire(lock)
    release()
    mkdirSync(lock)
    writeFileSync(join(lock, "pid"), dead)
    release = await Mosquitto.acquire(lock)
    release()

    let inside = 0
    let most = 0
    const order: Array<number> = []
    await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        Mosquitto.exclusive(async () => {
          inside++
          most = Math.max(most, inside)
          await new Promise((r) => setTimeout(r, 20))
          order.push(i)
          inside--
        }, lock)
      )
    )
    expect(most).toBe(1)
    expect(order.toSorted()).toEqual([0, 1, 2, 3, 4, 5, 6, 7])
    expect(existsSync(lock)).toBe(false)
  })
})
