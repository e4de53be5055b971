/**
 * The embedded SQL store: `node:sqlite` (no native add-on), WAL journal. `synchronous=NORMAL`
 * survives a process crash (SIGKILL) but may lose the last transactions on power loss; set
 * `synchronous: "FULL"` for that (PLATFORM-FACTS.md: ~44k vs ~3.4k single-row transactions/s).
 */
import { DatabaseSync } from "node:sqlite"
import { mkdirSync } from "node:fs"
import { dirname } from "node:path"

export interface Options {
  /** File path, or ":memory:". */
  readonly path: string
  readonly synchronous?: "OFF" | "NORMAL" | "FULL"
}

export interface Store {
  readonly db: DatabaseSync
  /** Runs `fn` in one transaction (BEGIN IMMEDIATE ... COMMIT), rolled back if it throws. */
  readonly transaction: <T>(fn: () => T) => T
  /**
   * Group commit: runs `fn` in a transaction shared with the other `group` calls of the same tick
   * (each in its own savepoint, so one that throws rolls back alone); resolves after the COMMIT.
   */
  readonly group: <T>(fn: () => T) => Promise<T>
  /** Applies each named migration once, in order. */
  readonly migrate: (migrations: ReadonlyArray<Migration>) => void
  readonly close: () => void
}

export interface Migration {
  readonly name: string
  readonly sql: string
}

export const open = (options: Options): Store => {
  if (options.path !== ":memory:") mkdirSync(dirname(options.path), { recursive: true })
  const db = new DatabaseSync(options.path)
  db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = ${options.synchronous ?? "NORMAL"}; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;`)
  db.exec("CREATE TABLE IF NOT EXISTS baton_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")

  let depth = 0
  const transaction = <T>(fn: () => T): T => {
    // Nested calls join the outer transaction.
    if (depth > 0) return fn()
    db.exec("BEGIN IMMEDIATE")
    depth++
    try {
      const result = fn()
      db.exec("COMMIT")
      return result
    } catch (error) {
      if (db.isTransaction) db.exec("ROLLBACK")
      throw error
    } finally {
      depth--
    }
  }

  let batch: Array<{ readonly fn: () => unknown; readonly settle: (error: unknown, value?: unknown) => void }> = []
  const flush = () => {
    const items = batch
    batch = []
    const outcomes: Array<{ readonly ok: boolean; readonly value: unknown }> = []
    try {
      transaction(() => {
        for (const item of items) {
          db.exec("SAVEPOINT item")
          try {
            outcomes.push({ ok: true, value: item.fn() })
            db.exec("RELEASE item")
          } catch (error) {
            db.exec("ROLLBACK TO item")
            db.exec("RELEASE item")
            outcomes.push({ ok: false, value: error })
          }
        }
      })
    } catch (error) {
      for (const item of items) item.settle(error)
      return
    }
    items.forEach((item, i) => {
      const o = outcomes[i]!
      if (o.ok) item.settle(undefined, o.value)
      else item.settle(o.value)
    })
  }
  const group = <T>(fn: () => T): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      if (batch.length === 0) setImmediate(flush)
      batch.push({ fn, settle: (error, value) => (error === undefined ? resolve(value as T) : reject(error)) })
    })

  const applied = db.prepare("SELECT 1 AS applied FROM baton_migrations WHERE name = ?")
  const record = db.prepare("INSERT INTO baton_migrations (name, applied_at) VALUES (?, ?)")
  const migrate = (migrations: ReadonlyArray<Migration>) => {
    for (const m of migrations) {
      transaction(() => {
        if (applied.get(m.name) !== undefined) return
        db.exec(m.sql)
        record.run(m.name, new Date().toISOString())
      })
    }
  }

  return { db, transaction, group, migrate, close: () => db.close() }
}
