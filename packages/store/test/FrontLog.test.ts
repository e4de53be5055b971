/**
 * The front's ingress log on a real SQLite file: appends read back in `seq` order above a mark,
 * the prune that always keeps the newest row (so that `seq` is never given again), and the file's
 * identity across reopening.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { FrontLog } from "@baton/store"

const dirs: Array<string> = []
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})
const fresh = () => {
  const dir = mkdtempSync(join(tmpdir(), "baton-frontlog-"))
  dirs.push(dir)
  return FrontLog.pathIn(dir)
}
const openAt = (path: string) => FrontLog.open({ path, synchronous: "NORMAL", maxBytes: 8, previewBytes: 4 })
const far = new Date("9999-12-31T00:00:00.000Z")

describe("FrontLog", () => {
  it("gives appended entries in seq order above a mark, an oversized payload as its preview", async () => {
    const log = await openAt(fresh())
    try {
      await Promise.all(["a", "b", "c"].map((t) => log.append(`initiate/${t}`, Buffer.from(t), t === "b" ? "client-b" : null)))
      await log.append("initiate/d", Buffer.from("0123456789"), null)
      expect(await log.newest()).toBe(4)
      expect((await log.after(0, 10)).map((e) => [e.seq, e.topic, e.payload.toString(), e.size, e.clientId])).toEqual([
        [1, "initiate/a", "a", 1, null],
        [2, "initiate/b", "b", 1, "client-b"],
        [3, "initiate/c", "c", 1, null],
        [4, "initiate/d", "0123", 10, null]
      ])
      expect((await log.after(1, 2)).map((e) => e.seq)).toEqual([2, 3])
      expect(await log.after(4, 10)).toEqual([])
    } finally {
      await log.close()
    }
  })

  it("prunes up to the mark, never its newest row: the next append is numbered above the mark", async () => {
    const log = await openAt(fresh())
    try {
      for (const t of ["a", "b", "c"]) await log.append("initiate/x", Buffer.from(t), null)
      // Nothing received before the epoch; past the mark, nothing either.
      expect(await log.prune(new Date(0), 3)).toBe(0)
      expect(await log.prune(far, 1)).toBe(1)
      expect((await log.after(0, 10)).map((e) => e.seq)).toEqual([2, 3])
      // Everything forwarded: all but the newest row go.
      expect(await log.prune(far, 3)).toBe(2)
      expect((await log.after(0, 10)).map((e) => e.seq)).toEqual([3])
      await log.append("initiate/x", Buffer.from("d"), null)
      expect((await log.after(3, 10)).map((e) => e.seq)).toEqual([4])
    } finally {
      await log.close()
    }
  })

  it("keeps its log id across reopening; a new file has a new one", async () => {
    const path = fresh()
    const first = await openAt(path)
    const id = first.logId
    await first.append("initiate/x", Buffer.from("a"), null)
    await first.close()
    const again = await openAt(path)
    try {
      expect(again.logId).toBe(id)
      expect(await again.newest()).toBe(1)
    } finally {
      await again.close()
    }
    const other = await openAt(fresh())
    try {
      expect(other.logId).not.toBe(id)
      expect(other.logId).toMatch(/^[0-9a-f-]{36}$/)
      expect(await other.newest()).toBe(0)
    } finally {
      await other.close()
    }
  })
})
