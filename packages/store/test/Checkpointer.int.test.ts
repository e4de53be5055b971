/**
 * WAL checkpoints on a worker thread (`Checkpointer.ts`): under a long burst of group commits the
 * WAL stays far below the writer's own fallback mark, nothing written is lost, and closing the
 * store stops the worker (its connection closed: the last one, the writer's, removes the WAL).
 */
import { closeSync, existsSync, mkdtempSync, openSync, readSync, rmSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { Checkpointer, Sqlite, type Store } from "@baton/store"

const pageSize = 4096
const dirs: Array<string> = []
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})
const fresh = () => {
  const dir = mkdtempSync(join(tmpdir(), "baton-checkpoint-"))
  dirs.push(dir)
  return join(dir, "store.db")
}
const walSize = (path: string) => (existsSync(`${path}-wal`) ? statSync(`${path}-wal`).size : 0)

/**
 * `rows` rows of 1 KB through group commit, `batch` at a time, `pauseMs` between batches (0: a
 * burst); the WAL's largest size seen between batches.
 */
const load = async (store: Store, path: string, rows: number, batch: number, pauseMs: number): Promise<number> => {
  await store.migrate([{ name: "burst", sql: "CREATE TABLE burst (id INTEGER PRIMARY KEY, v BLOB NOT NULL)" }])
  const insert = store.query("INSERT INTO burst (v) VALUES (?)")
  const value = Buffer.alloc(1024, 7)
  let largest = 0
  for (let done = 0; done < rows; done += batch) {
    await Promise.all(Array.from({ length: batch }, () => store.group(insert.run(value))))
    largest = Math.max(largest, walSize(path))
    if (pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, pauseMs))
  }
  return largest
}

/**
 * The WAL header's checkpoint sequence number (bytes 12-15), which SQLite increments each time a
 * writer restarts the WAL from its start; undefined while there is no WAL.
 */
const walRestarts = (path: string): number | undefined => {
  if (!existsSync(`${path}-wal`)) return undefined
  const fd = openSync(`${path}-wal`, "r")
  try {
    const header = Buffer.alloc(16)
    return readSync(fd, header, 0, 16, 0) === 16 ? header.readUInt32BE(12) : undefined
  } finally {
    closeSync(fd)
  }
}

// SQLite's own automatic checkpoint mark, in pages.
const sqliteMark = 1000
// A steady load with gaps (as at a fixed rate): ~4,000 pages through the WAL, four times SQLite's mark.
const steady = { rows: 4_000, batch: 50, pauseMs: 15 }

describe("WAL checkpoints on a worker thread", () => {
  it("at a steady load the worker checkpoints: the WAL stays below SQLite's own mark", async () => {
    const path = fresh()
    const store = await Sqlite.open({ path })
    const largest = await load(store, path, steady.rows, steady.batch, steady.pauseMs)
    await store.close()
    expect(largest).toBeGreaterThan(0)
    expect(largest).toBeLessThan(sqliteMark * pageSize)
  }, 60_000)

  it("with the worker off, the writer checkpoints itself at SQLite's mark (the same load)", async () => {
    const path = fresh()
    const store = await Sqlite.open({ path, checkpointIntervalMs: 0 })
    const largest = await load(store, path, steady.rows, steady.batch, steady.pauseMs)
    await store.close()
    // The WAL is reused from its start after each checkpoint: it stays at about the mark.
    expect(largest).toBeGreaterThanOrEqual(sqliteMark * pageSize)
    expect(largest).toBeLessThan(2 * sqliteMark * pageSize)
  }, 60_000)

  it("at a load without gaps, the WAL restarts (a sync on the event loop each) at most once per ~100 MB", async () => {
    // Small transactions back to back, as the order flow commits at a fixed rate (~2,000 a second at
    // 200 orders/s): the worker's checkpoint never ends between two of them, so it never leaves the
    // WAL fully copied for the writer to restart it. The WAL grows to the writer's own mark, where
    // the writer checkpoints in its COMMIT (syncing the WAL, then the database file) and restarts
    // it (syncing the WAL's new header): 5-25 ms on the event loop here, which the messages in
    // flight wait out. At 4,000 pages that happened twice a second at 200 orders/s.
    const path = fresh()
    const store = await Sqlite.open({ path })
    await store.migrate([{ name: "steady", sql: "CREATE TABLE steady (id INTEGER PRIMARY KEY, v BLOB NOT NULL)" }])
    const insert = store.query("INSERT INTO steady (v) VALUES (?)")
    const value = Buffer.alloc(3000, 7) // about a page a row
    const seen = new Set<number>()
    // ~24,000 pages (~96 MB) through the WAL: six times the old mark.
    for (let i = 0; i < 6_000; i++) {
      await Promise.all(Array.from({ length: 4 }, () => store.group(insert.run(value))))
      const restarts = walRestarts(path)
      if (restarts !== undefined) seen.add(restarts)
    }
    await store.close()
    // The WAL's generations seen: each after the first is a restart.
    expect(seen.size - 1).toBeLessThanOrEqual(1)
  }, 120_000)

  it("keeps the WAL bounded under a long burst, loses nothing, and stops at close", async () => {
    const path = fresh()
    const store = await Sqlite.open({ path })
    // ~64 MB of pages through the WAL, back to back: the worker cannot catch up between two
    // transactions, so the WAL grows past the writer's own fallback mark, by what is written while
    // a checkpoint of the worker's holds the checkpoint lock (the writer's then waits for none).
    const rows = 64_000
    const batch = 256
    const largest = await load(store, path, rows, batch, 0)
    await store.close()
    // Never checkpointed, it would hold every row: more than 64 MB.
    expect(largest).toBeLessThan(3 * Checkpointer.fallbackPages * pageSize)
    // The worker's connection closed first: the writer's, the last, checkpointed and removed the WAL.
    expect(existsSync(`${path}-wal`)).toBe(false)
    const reopened = await Sqlite.open({ path })
    const [row] = await reopened.run(reopened.query("SELECT COUNT(*) AS n FROM burst").all())
    await reopened.close()
    expect(Number(row?.n)).toBe(rows)
  }, 120_000)
})
