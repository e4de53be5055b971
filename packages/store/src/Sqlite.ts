/**
 * The embedded SQL store: `node:sqlite` (no native add-on), WAL journal. `synchronous=NORMAL`
 * survives a process crash (SIGKILL) but may lose the last transactions on power loss; set
 * `synchronous: "FULL"` for that (PLATFORM-FACTS.md: ~44k vs ~3.4k single-row transactions/s).
 */
import { DatabaseSync, type SQLInputValue, type SQLOutputValue, type StatementResultingChanges } from "node:sqlite"
import { mkdirSync } from "node:fs"
import { dirname } from "node:path"

export interface Options {
  /** File path, or ":memory:". */
  readonly path: string
  readonly synchronous?: "OFF" | "NORMAL" | "FULL"
}

/** The synchronous SQL surface the stores and processors use: node:sqlite's, or PostgreSQL's through `Postgres.ts`. */
export interface Statement {
  readonly run: (...params: Array<SQLInputValue>) => StatementResultingChanges
  readonly get: (...params: Array<SQLInputValue>) => Record<string, SQLOutputValue> | undefined
  readonly all: (...params: Array<SQLInputValue>) => Array<Record<string, SQLOutputValue>>
}

export interface Db {
  readonly prepare: (sql: string) => Statement
  /** Runs a script of statements without parameters. */
  readonly exec: (sql: string) => void
  readonly isTransaction: boolean
}

export interface Store {
  readonly kind: "sqlite" | "postgres"
  readonly db: Db
  /** Runs `fn` in one transaction (BEGIN IMMEDIATE ... COMMIT), rolled back if it throws. */
  readonly transaction: <T>(fn: () => T) => T
  /**
   * Group commit: runs `fn` in a transaction shared with the other `group` calls of the same tick
   * (each in its own savepoint, so one that throws rolls back alone); resolves after the COMMIT.
   */
  readonly group: <T>(fn: () => T) => Promise<T>
  /** Applies each named migration once, in order. */
  readonly migrate: (migrations: ReadonlyArray<Migration>) => void
  readonly close: () => Promise<void>
}

export interface Migration {
  readonly name: string
  readonly sql: string
}

export const open = (options: Options): Store => {
  if (options.path !== ":memory:") mkdirSync(dirname(options.path), { recursive: true })
  const db = new DatabaseSync(options.path)
  db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = ${options.synchronous ?? "NORMAL"}; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;`)
  return make({ kind: "sqlite", db, begin: "BEGIN IMMEDIATE", close: async () => db.close() })
}

/**
 * Transactions, group commit and migrations over a synchronous connection. `lock` runs first in
 * each migration's transaction (PostgreSQL: an advisory lock, so that instances starting together
 * apply each migration once).
 */
export const make = (deps: {
  readonly kind: Store["kind"]
  readonly db: Db
  readonly begin: string
  readonly lock?: () => void
  /** Group commit: most items per transaction (64 by default). */
  readonly maxBatch?: number
  readonly close: () => Promise<void>
}): Store => {
  const { db } = deps
  db.exec("CREATE TABLE IF NOT EXISTS baton_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")

  let depth = 0
  const transaction = <T>(fn: () => T): T => {
    // Nested calls join the outer transaction.
    if (depth > 0) return fn()
    db.exec(deps.begin)
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
  // At most this many items per transaction, so that a burst does not hold the event loop (and a
  // cluster's heartbeat) for long; the rest commit in the next turn.
  const maxBatch = deps.maxBatch ?? 64
  const flush = () => {
    const items = batch.slice(0, maxBatch)
    batch = batch.slice(maxBatch)
    if (batch.length > 0) setImmediate(flush)
    const outcomes: Array<{ readonly ok: boolean; readonly value: unknown }> = []
    try {
      transaction(() => {
        // A lone item needs no savepoint: its failure rolls back a transaction that is only its.
        if (items.length === 1) {
          outcomes.push({ ok: true, value: items[0]!.fn() })
          return
        }
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
        deps.lock?.()
        if (applied.get(m.name) !== undefined) return
        db.exec(m.sql)
        record.run(m.name, new Date().toISOString())
      })
    }
  }

  return { kind: deps.kind, db, transaction, group, migrate, close: deps.close }
}
