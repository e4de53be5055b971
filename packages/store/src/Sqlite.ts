/**
 * The embedded SQL store: `node:sqlite` (no native add-on) behind effect's `SqlClient`, WAL
 * journal. `synchronous=NORMAL` survives a process crash (SIGKILL) but may lose the last
 * transactions on power loss; set `synchronous: "FULL"` for that (~44k vs ~3.4k single-row
 * transactions/s here). Modelled on `@effect/sql-sqlite-node`, which does not load with effect 4.1.
 *
 * One connection: a transaction holds it (a semaphore) until it ends, and statements outside a
 * transaction wait for it, as SQLite's single writer would. Statements run synchronously on the
 * calling fiber; prepared statements are cached by their text.
 */
import { DatabaseSync, type SQLInputValue, type StatementSync } from "node:sqlite"
import { mkdirSync } from "node:fs"
import { dirname } from "node:path"
import { Effect, Exit, Scope, Semaphore, Stream } from "effect"
import { Reactivity } from "effect/reactivity"
import { SqlClient, SqlError, Statement, type SqlConnection } from "effect/sql"
import * as Checkpointer from "./Checkpointer.ts"
import * as Store from "./Store.ts"
import type { Synchronous } from "./Store.ts"

export interface Options {
  /** File path, or ":memory:". */
  readonly path: string
  readonly synchronous?: "OFF" | "NORMAL" | "FULL"
  /**
   * How often a worker thread checkpoints the WAL (`Checkpointer.ts`), ms; 0: SQLite's automatic
   * checkpoint in the committing thread instead. A file database only.
   */
  readonly checkpointIntervalMs?: number
  /** Told when a checkpoint in the worker fails (the next one tries again). */
  readonly onCheckpointError?: (message: string) => void
}

/**
 * node:sqlite's errors say `code: "ERR_SQLITE_ERROR"` and keep SQLite's own (extended) result code
 * in `errcode`: classify by that (2067 and 1555 a unique violation, 19 a constraint, 5 busy), and
 * keep the driver's message, which names the constraint.
 */
const toSqlError = (cause: unknown, operation: string) => {
  const message = cause instanceof Error ? cause.message : String(cause)
  const errcode = (cause as { readonly errcode?: unknown } | undefined)?.errcode
  // A PRIMARY KEY violation (1555) is a unique violation (2067), as on PostgreSQL (23505 for both).
  const code = errcode === 1555 ? 2067 : errcode
  const normalized = typeof code === "number" ? Object.assign(new Error(message), { code, cause }) : cause
  return new SqlError.SqlError({ reason: SqlError.classifySqliteError(normalized, { message: `SQLite ${operation} failed: ${message}`, operation }) })
}

// undefined as NULL, a boolean as 0 or 1 (node:sqlite takes neither); no copy when none is there.
const input = (params: ReadonlyArray<unknown>): ReadonlyArray<SQLInputValue> => Store.boundValues(params) as ReadonlyArray<SQLInputValue>

type Row = Record<string, unknown>
/** The rows of a statement without columns: one array for all of them (frozen: nobody's to fill). */
const noRows: ReadonlyArray<Row> = Object.freeze([])

/**
 * A statement's rows as objects, from its rows as arrays (`setReturnArrays`): each an instance of a
 * class made for the statement's columns, whose constructor sets them in order, so every row of
 * it shares one hidden class. node:sqlite's own row objects (null prototype, a property defined
 * at a time from C++) are in dictionary mode: slow to make and to read. Measured (one row of 4
 * columns, made and two columns read): 2.8 -> 0.75 us; the order flow side by side (`BATON_AB_DRAIN=1
 * ab.ts sqlite 3000 7`, load 5-8): runtime CPU an order 0.96x (lower in 6 of 7 rounds, one tie). The prototype is an object without one:
 * nothing inherited, as from node's null-prototype rows (`"toString" in row` is false,
 * `row.constructor` undefined), and a column named `__proto__` is a property like any other (no
 * `Object.prototype` setter takes it for the prototype).
 */
const rowsOf = (columns: ReadonlyArray<string>): ((arrays: ReadonlyArray<ReadonlyArray<unknown>>) => ReadonlyArray<Row>) => {
  // Repeated names: the last one's value, in the first one's place, as node's objects have it.
  let Made: new (r: ReadonlyArray<unknown>) => Row
  try {
    Made = new Function("r", columns.map((c, i) => `this[${JSON.stringify(c)}] = r[${i}]`).join("; ")) as unknown as typeof Made
  } catch {
    // Code made from text refused (`node --disallow-code-generation-from-strings`: an EvalError,
    // which failed every read, the migrations' first): the same rows, set column by column.
    Made = function (this: Row, r: ReadonlyArray<unknown>) {
      for (let i = 0; i < columns.length; i++) this[columns[i]!] = r[i]
    } as unknown as typeof Made
  }
  Made.prototype = Object.create(null)
  return (arrays) => {
    const out = new Array<Row>(arrays.length)
    for (let i = 0; i < arrays.length; i++) out[i] = new Made(arrays[i]!)
    return out
  }
}

/**
 * What a statement's text starts with, past blanks and comments (`Store.migrate` splits a script
 * at its `;`s: a comment line before a statement stays with it). A block comment is matched one
 * way only (its body up to the first star-slash): a lazy `[\s\S]*?` there backtracks exponentially
 * on a text of many comments (24 empty ones before a statement that is no DDL: 86 ms, twice that
 * with each two more; this, 0.3 ms for 5,000).
 */
const leading = String.raw`^(?:\s|--[^\n]*\n|/\*[^*]*\*+(?:[^/*][^*]*\*+)*/)*`
/** Statements that change the schema: the cached statements' columns may have changed with them. */
const ddl = new RegExp(`${leading}(?:CREATE|ALTER|DROP)\\b`, "i")
/** `ROLLBACK`, `ROLLBACK TO` a savepoint: a schema change in what it undoes is undone with it. */
const rollback = new RegExp(`${leading}ROLLBACK\\b`, "i")

/** The table (or view) a DML statement writes, named plainly or in double quotes, past a schema's name. */
const dmlTarget = /^\s*(?:(?:INSERT|REPLACE)(?:\s+OR\s+[A-Za-z]+)?\s+INTO|UPDATE(?:\s+OR\s+[A-Za-z]+)?|DELETE\s+FROM)\s+(?:(?:"[A-Za-z_]\w*"|[A-Za-z_]\w*)\s*\.\s*)?(?:"([A-Za-z_]\w*)"|([A-Za-z_]\w*)(?=[\s(,;]|$))/i

/** The `SqlConnection` over one `DatabaseSync`. */
const connection = (db: DatabaseSync): Synchronous => {
  const cache = new Map<
    string,
    {
      readonly statement: StatementSync
      /** Its rows as objects from its rows as arrays (`rowsOf`); undefined for a statement without columns or with a `*`. */
      readonly objects: ((arrays: ReadonlyArray<ReadonlyArray<unknown>>) => ReadonlyArray<Row>) | undefined
      /** It has columns (rows read with node's own objects when `objects` is undefined). */
      readonly reader: boolean
      /** Changes the schema (the cache is cleared after it), or may undo such a change (`rollback`). */
      readonly schema: "change" | "rollback" | undefined
      /** `changesNow`: whether its changes count what its `RETURNING` returns (`countsChanges`), asked once. */
      counts?: boolean | undefined
    }
  >()
  /**
   * A schema change made in the transaction open now: a rollback of it (or of a savepoint after
   * it) gives the tables their columns before it back, and the statements prepared since have the
   * changed ones (a column dropped and given back: the values after it under their neighbours' names).
   */
  let changedInTransaction = false
  const prepared = (sql: string) => {
    let entry = cache.get(sql)
    if (entry === undefined) {
      if (cache.size >= 500) cache.clear()
      const statement = db.prepare(sql)
      const columns = statement.columns()
      // A `*` takes its columns from the schema as it is when SQLite prepares the statement again
      // (a column added by another connection, a newer CLI migrating the file, say): its rows stay
      // node's own objects, named at each step. Other statements name their columns in their text.
      const fixed = columns.length > 0 && !sql.includes("*")
      if (fixed) statement.setReturnArrays(true)
      entry = {
        statement,
        objects: fixed ? rowsOf(columns.map((c) => c.name)) : undefined,
        reader: columns.length > 0,
        schema: ddl.test(sql) ? "change" : rollback.test(sql) ? "rollback" : undefined
      }
      cache.set(sql, entry)
    }
    return entry
  }
  const rows = (sql: string, params: ReadonlyArray<unknown>): ReadonlyArray<Row> => {
    const entry = prepared(sql)
    const values = input(params)
    if (entry.objects !== undefined) return entry.objects(entry.statement.all(...values) as unknown as ReadonlyArray<ReadonlyArray<unknown>>)
    if (entry.reader) return entry.statement.all(...values)
    // Cleared before the rollback runs: it fails if SQLite rolled the transaction back itself (an
    // I/O error, say), whose change is undone all the same.
    if (changedInTransaction && entry.schema === "rollback") cache.clear()
    entry.statement.run(...values)
    // A statement prepared before a schema change keeps the names it had then (its class above):
    // after one, every statement is prepared again (a column named without an alias is named as
    // the table declares it: a rename that only changes its case still runs, under the new name).
    if (entry.schema === "change") {
      cache.clear()
      if (db.isTransaction) changedInTransaction = true
    } else if (changedInTransaction && !db.isTransaction) changedInTransaction = false
    return noRows
  }
  const execute = (sql: string, params: ReadonlyArray<unknown>, transformRows: (<A extends object>(rows: ReadonlyArray<A>) => ReadonlyArray<A>) | undefined) =>
    Effect.try({
      try: () => (transformRows === undefined ? rows(sql, params) : transformRows(rows(sql, params))),
      catch: (cause) => toSqlError(cause, "execute")
    })
  const executeNow = <B>(sql: string, params: ReadonlyArray<unknown>, outcome?: (rows: ReadonlyArray<Row>) => B): Exit.Exit<B, SqlError.SqlError> => {
    let made: ReadonlyArray<Row>
    try {
      made = rows(sql, params)
    } catch (cause) {
      return Exit.fail(toSqlError(cause, "execute"))
    }
    // Outside the `try`: only the statement's own failure is a SqlError.
    return outcome === undefined ? Exit.succeed(made as B) : Store.succeeded(outcome(made))
  }
  // What `changesNow` asks of a statement's target: a view of its name (in any schema).
  let viewNamed: StatementSync | undefined
  /**
   * Whether the changes of `sql` (`Store.withoutReturning`'s text) are the rows its `RETURNING`
   * returns: not when it writes a view (its INSTEAD OF triggers write the rows, and
   * `sqlite3_changes` counts none of them where its `RETURNING` returns one for each), nor when
   * its target is not read here (a name quoted otherwise): then it runs with its `RETURNING`.
   * Undefined when the schema could not be read (busy, say): with its `RETURNING` this once.
   */
  const countsChanges = (sql: string): boolean | undefined => {
    const named = dmlTarget.exec(sql)
    if (named === null) return false
    try {
      viewNamed ??= db.prepare("SELECT 1 FROM pragma_table_list WHERE name = ? COLLATE NOCASE AND type = 'view'")
      return viewNamed.get((named[1] ?? named[2])!) === undefined
    } catch {
      return undefined
    }
  }
  /** Runs `sql` and gives its changes; undefined when they are not what it returns (`countsChanges`). */
  const changesNow = <B>(sql: string, params: ReadonlyArray<unknown>, changed?: (n: number) => B): Exit.Exit<B, SqlError.SqlError> | undefined => {
    let n: number
    try {
      const entry = prepared(sql)
      entry.counts ??= countsChanges(sql)
      if (entry.counts !== true) return undefined
      n = Number(entry.statement.run(...input(params)).changes)
    } catch (cause) {
      return Exit.fail(toSqlError(cause, "execute"))
    }
    return changed === undefined ? Exit.succeed(n as B) : Store.succeeded(changed(n))
  }
  const values = (sql: string, params: ReadonlyArray<unknown>) =>
    Effect.map(execute(sql, params, undefined), (rs) => rs.map((r) => Object.values(r)))
  return {
    execute,
    executeRaw: (sql, params) => execute(sql, params, undefined),
    executeStream: (sql, params, transformRows) => Stream.fromIterableEffect(execute(sql, params, transformRows)),
    executeValues: values,
    executeValuesUnprepared: values,
    // Transaction control (BEGIN, COMMIT, SAVEPOINT, RELEASE) too is prepared once and cached:
    // `exec` parses the text again each time, a measurable share of a message's cost here.
    executeUnprepared: execute,
    executeNow,
    changesNow
  }
}

/** A `SqlClient` over an open database, and `exclusive`: runs an effect on its connection alone (a transaction). */
export const client = (db: DatabaseSync): Effect.Effect<{ readonly sql: SqlClient.SqlClient; readonly exclusive: SqlConnection.Borrower }, never, Scope.Scope> =>
  Effect.gen(function* () {
    const conn = connection(db)
    const acquirers = SqlClient.makeSqliteAcquirers({
      connection: Effect.succeed(conn),
      semaphore: Semaphore.makeUnsafe(1),
      isTransaction: () => db.isTransaction
    })
    const sql = yield* SqlClient.make({
      ...acquirers,
      compiler: Statement.makeCompilerSqlite(),
      driver: "sqlite",
      spanAttributes: [["db.system.name", "sqlite"]],
      beginTransaction: "BEGIN IMMEDIATE"
    }).pipe(Effect.provide(Reactivity.layer))
    return { sql, exclusive: acquirers.borrower }
  })

/** Per open store: what runs as it closes, before the connection does (`beforeClose`). */
const closing = new WeakMap<Store.Store, Array<() => Promise<void>>>()

/** Runs `f` when `store` (a store this module opened) closes, before its connection closes. */
export const beforeClose = (store: Store.Store, f: () => Promise<void>): void => void closing.get(store)?.push(f)

/**
 * Most items a group commit holds (`Store.make`'s `maxBatch`): 64, or `BATON_SQLITE_MAX_BATCH`
 * (an experiment's knob, benchmarks only).
 */
const maxBatch = (): number => {
  const n = Number(process.env.BATON_SQLITE_MAX_BATCH ?? 64)
  return Number.isInteger(n) && n > 0 ? n : 64
}

export const open = async (options: Options): Promise<Store.Store> => {
  if (options.path !== ":memory:") mkdirSync(dirname(options.path), { recursive: true })
  const db = new DatabaseSync(options.path)
  const synchronous = options.synchronous ?? "NORMAL"
  // temp_store = MEMORY: a savepoint's statement journal (a group commit's items each run in one)
  // in memory, not in a temporary file that a large group spills to; it holds nothing a crash
  // needs (the WAL does). Order flow side by side (`ab.ts sqlite 1500`, two runs): write
  // syscalls 0.89-0.90x an order, CPU 0.92-0.95x, 1.04x and 1.18x orders/s; mediator workflows
  // 1.15x and 1.03x.
  db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = ${synchronous}; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;`)
  const intervalMs = options.checkpointIntervalMs ?? 50
  const checkpointer =
    options.path === ":memory:" || intervalMs <= 0 ? undefined : Checkpointer.start({ path: options.path, synchronous, intervalMs }, options.onCheckpointError)
  if (checkpointer !== undefined) db.exec(`PRAGMA wal_autocheckpoint = ${Checkpointer.fallbackPages}`)
  db.exec("CREATE TABLE IF NOT EXISTS baton_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
  const scope = Scope.makeUnsafe()
  const { sql, exclusive } = await Effect.runPromise(Scope.provide(client(db), scope))
  const hooks: Array<() => Promise<void>> = []
  const store = Store.make({
    kind: "sqlite",
    sql,
    exclusive,
    // A burst commits in transactions of at most this many messages, so that it does not hold the
    // event loop for long; the rest commit in the next turn.
    maxBatch: maxBatch(),
    close: async () => {
      for (const f of hooks.splice(0)) await f()
      await Effect.runPromise(Scope.close(scope, Exit.void))
      // The worker's connection first: the last one to close checkpoints the whole WAL and removes it.
      await checkpointer?.stop()
      if (db.isOpen) db.close()
    }
  })
  closing.set(store, hooks)
  return store
}
