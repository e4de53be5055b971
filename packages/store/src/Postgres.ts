/**
 * The PostgreSQL store (`BATON_DATABASE_URL`): the same synchronous surface as the embedded SQLite
 * store, over `PgSync`, so every store (inbox, outbox, ingress log, processors' tables, parking,
 * dashboard, workflows) moves to PostgreSQL without a second implementation. Statements are
 * written in the SQL both engines share; `translate` maps the rest of SQLite's dialect.
 *
 * Concurrency: instances of a cluster write the same tables at once. A plain `SELECT` inside a
 * transaction takes its rows `FOR UPDATE`, so a read-modify-write (stock levels, counters) is
 * never a lost update under READ COMMITTED, as it never was under SQLite's single writer. A lock
 * wait past `lockTimeoutMs` (or a deadlock) fails the statement; the message is retried.
 */
import type { SQLInputValue, SQLOutputValue } from "node:sqlite"
import * as PgSync from "./PgSync.ts"
import { make, type Db, type Statement, type Store } from "./Sqlite.ts"

export interface Options {
  readonly url: string
  readonly lockTimeoutMs?: number
}

/**
 * A conflict with another instance's transaction (deadlock, serialization failure, lock timeout):
 * the statement was rolled back and the work can run again at once.
 */
export const isConflict = (error: unknown): boolean =>
  error instanceof PgSync.PgError && (error.code === "40P01" || error.code === "40001" || error.code === "55P03")

/** Words SQLite accepts as column names that PostgreSQL reserves. */
const reserved = ["authorization"]

/** Replaces each `?` outside quotes by `$1`, `$2`, ... */
const numberParams = (sql: string): string => {
  let n = 0
  let out = ""
  let quote: string | undefined
  for (const ch of sql) {
    if (quote !== undefined) {
      if (ch === quote) quote = undefined
      out += ch
    } else if (ch === "'" || ch === '"') {
      quote = ch
      out += ch
    } else out += ch === "?" ? `$${++n}` : ch
  }
  return out
}

/** Adds a `rowid` column (SQLite's implicit one, used for arrival order) to each created table. */
const addRowid = (sql: string): string => {
  const create = /CREATE TABLE (IF NOT EXISTS )?[A-Za-z_][A-Za-z0-9_]*\s*\(/gi
  let out = ""
  let from = 0
  for (let m = create.exec(sql); m !== null; m = create.exec(sql)) {
    let depth = 1
    let i = m.index + m[0].length
    for (; i < sql.length && depth > 0; i++) depth += sql[i] === "(" ? 1 : sql[i] === ")" ? -1 : 0
    out += sql.slice(from, i - 1) + ", rowid BIGSERIAL"
    from = i - 1
  }
  return out + sql.slice(from)
}

/** SQLite's dialect, as the stores write it, to PostgreSQL's. */
export const translate = (sql: string, inTransaction: boolean): string => {
  let s = sql.trim()
  for (const word of reserved) s = s.replace(new RegExp(`\\b${word}\\b`, "gi"), `"${word}"`)
  if (/^INSERT OR IGNORE INTO/i.test(s)) s = `${s.replace(/^INSERT OR IGNORE INTO/i, "INSERT INTO")} ON CONFLICT DO NOTHING`
  if (/\bCREATE TABLE\b/i.test(s))
    s = addRowid(s)
      .replace(/\bINTEGER PRIMARY KEY AUTOINCREMENT\b/gi, "BIGSERIAL PRIMARY KEY")
      .replace(/\bINTEGER\b/gi, "BIGINT")
      .replace(/\bREAL\b/gi, "DOUBLE PRECISION")
      .replace(/\bBLOB\b/gi, "BYTEA")
  if (inTransaction && /^SELECT\b/i.test(s) && /\bFROM\b/i.test(s) && !/\b(COUNT|MAX|MIN|SUM|AVG)\s*\(|\bGROUP BY\b|\bDISTINCT\b/i.test(s)) s = `${s} FOR UPDATE`
  return numberParams(s)
}

export const open = (options: Options): Store => {
  const conn = PgSync.connect(options.url)
  conn.query(`SET lock_timeout = ${Math.max(1, Math.floor(options.lockTimeoutMs ?? 5_000))}`)
  // Instances updating the same rows (stock levels) in different orders deadlock now and then;
  // the server's default detection takes a second, during which this thread waits. A superuser
  // may shorten it for this session; otherwise the server's setting stays.
  try {
    conn.query("SET deadlock_timeout = 100")
  } catch {
    // not a superuser
  }
  // Instances starting together create the migrations table once.
  conn.query("BEGIN; SELECT pg_advisory_xact_lock(4242000); CREATE TABLE IF NOT EXISTS baton_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL); COMMIT")
  let inTransaction = false
  const serialColumns = new Map<string, string>()
  /** The table's own serial column (its `INTEGER PRIMARY KEY` in SQLite), else the added rowid. */
  const serialOf = (table: string): string => {
    const known = serialColumns.get(table)
    if (known !== undefined) return known
    const rows = conn.query(
      "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 AND column_default LIKE 'nextval%' ORDER BY (column_name = 'rowid')",
      [table]
    ).rows
    const column = String(rows[0]?.column_name ?? "")
    serialColumns.set(table, column)
    return column
  }
  const prepare = (sql: string): Statement => {
    const texts = new Map<boolean, string>()
    const text = () => {
      let t = texts.get(inTransaction)
      if (t === undefined) {
        t = translate(sql, inTransaction)
        const insert = /^INSERT INTO ([A-Za-z_][A-Za-z0-9_]*)/i.exec(t)
        const serial = insert === null ? "" : serialOf(insert[1]!)
        if (serial !== "") t = `${t} RETURNING ${serial}`
        texts.set(inTransaction, t)
      }
      return t
    }
    const params = (values: Array<SQLInputValue>) => values.map((v) => (typeof v === "bigint" ? Number(v) : v))
    return {
      run: (...values) => {
        const t = text()
        const r = conn.query(t, params(values))
        const first = r.rows[0]
        return { changes: r.rowCount, lastInsertRowid: first === undefined ? 0 : Number(Object.values(first)[0] ?? 0) }
      },
      get: (...values) => conn.query(text(), params(values)).rows[0] as Record<string, SQLOutputValue> | undefined,
      all: (...values) => conn.query(text(), params(values)).rows as Array<Record<string, SQLOutputValue>>
    }
  }
  const db: Db = {
    prepare,
    exec: (sql) => {
      const s = sql.trim()
      if (/^PRAGMA\b/i.test(s)) return
      if (/^BEGIN\b/i.test(s)) inTransaction = true
      conn.query(/^BEGIN\b/i.test(s) ? "BEGIN" : translate(s, false))
      if (/^(COMMIT|ROLLBACK)$/i.test(s)) inTransaction = false
    },
    get isTransaction() {
      return inTransaction
    }
  }
  return make({
    kind: "postgres",
    db,
    begin: "BEGIN",
    // One message per transaction: a group holds the row locks of every message in it until its
    // commit, and other instances wait for the hot ones (stock levels). Measured with three
    // instances on the order flow: 16 per transaction 40 orders/s (a third of the time waiting on
    // locks), 4 per transaction 53, one 56-67.
    maxBatch: 1,
    lock: () => void conn.query("SELECT pg_advisory_xact_lock(4242000)"),
    close: () => conn.close()
  })
}
