/**
 * The store every part of the runtime writes through: effect's own `SqlClient` (`effect/sql`) over
 * the embedded SQLite (`Sqlite.ts`) or PostgreSQL (`Postgres.ts`). Everything that must commit
 * together (a handler's effects, the inbox `done` mark, outbox rows, local inbox deliveries) is one
 * `Effect` that needs a `SqlClient`, run in one transaction by `transaction` or `group`.
 *
 * SQL is written once in the dialect both engines accept (`?` placeholders, `ON CONFLICT DO
 * NOTHING`, `RETURNING`); where they differ a caller branches explicitly on `dialect`.
 */
import { type Cause, Context, Effect, Exit, Option, References, type Fiber } from "effect"
import { SqlClient, SqlError as SqlErrors, type SqlConnection, type SqlError } from "effect/sql"
import { blamed, type Pipelined } from "./PgPool.ts"

export type Dialect = "sqlite" | "pg"

/**
 * Benchmarks only (`BATON_TIMELINE=<file>`): marks of what the event loop did, each a code, the
 * monotonic clock in microseconds (the clock every process on the machine shares, so a client's
 * marks line up with these) and a number; written to the file as JSON when the process gets
 * SIGUSR2 (`bench/src/tail.ts`'s `TAIL_TIMELINE`). Unset, `timeline` is undefined and nothing is kept.
 */
export const timeline: ((code: string, n?: number) => void) | undefined = (() => {
  const file = process.env.BATON_TIMELINE
  if (file === undefined || file === "") return undefined
  const marks: Array<string | number> = []
  process.on("SIGUSR2", () => void import("node:fs").then((fs) => fs.writeFileSync(file, JSON.stringify(marks))))
  return (code: string, n = 0) => void marks.push(code, Number(process.hrtime.bigint() / 1000n), n)
})()

/** An effect that reads or writes through the current transaction (or, outside one, the pool). */
export type Sql<A, E = never> = Effect.Effect<A, E | SqlError.SqlError, SqlClient.SqlClient>

/**
 * What a generator made once into a `Sql` returns: `Effect.fnUntraced(function* (...): SqlGen<A> {...})`
 * rather than `(...) => Effect.gen(function* () {...})`, whose new generator function per call costs
 * V8 ~2 us (its prototype and map made on the first call, the iterator's inline caches missed).
 */
export type SqlGen<A, E = never> = Effect.fn.Return<A, E | SqlError.SqlError, SqlClient.SqlClient>

export type Row = Readonly<Record<string, unknown>>

/** A statement written once with `?` placeholders, compiled for the store's dialect once. */
export interface Query {
  readonly all: (...params: ReadonlyArray<unknown>) => Sql<ReadonlyArray<Row>>
  readonly get: (...params: ReadonlyArray<unknown>) => Sql<Row | undefined>
  /** Runs it for its effect; resolves with the number of rows it returned (`RETURNING` counts changes). */
  readonly run: (...params: ReadonlyArray<unknown>) => Sql<number>
  /**
   * Whether it returned a row (`RETURNING` counts changes): `run`'s `n > 0`, or `get`'s row being
   * there, as the statement's own outcome (no `map` around it, its step and its closure).
   */
  readonly any: (...params: ReadonlyArray<unknown>) => Sql<boolean>
  /**
   * Runs it for its effect, not waiting for it inside a PostgreSQL transaction: it goes out with
   * the transaction's next statement (or its COMMIT), in one write; when it fails, that statement
   * fails with its error. Elsewhere the same as `run`. Gives what `run` gives, to read once the
   * transaction has committed.
   */
  readonly write: (...params: ReadonlyArray<unknown>) => Sql<() => number>
  /** `write`, giving the rows it returned (`RETURNING`), to read once the transaction has committed. */
  readonly writeRows: (...params: ReadonlyArray<unknown>) => Sql<() => ReadonlyArray<Row>>
}

/**
 * A connection whose statements run synchronously on the calling fiber (SQLite): `executeNow`
 * gives a statement's outcome at once (failed with the `SqlError` that `execute` fails with), so
 * that `query` runs a statement as one step of the interpreter instead of the ~6 of `execute`'s
 * effect.
 */
export interface Synchronous extends SqlConnection.Connection {
  /**
   * `outcome`: what the statement gives, made of its rows inside the one exit (not an exit of the
   * rows and another of what `query` makes of them; with no proxy trap and no empty array per
   * statement, the order flow's allocation 113.3 -> 110.6 KB an order, `allocation.ts`).
   */
  readonly executeNow: <B = ReadonlyArray<Row>>(sql: string, params: ReadonlyArray<unknown>, outcome?: (rows: ReadonlyArray<Row>) => B) => Exit.Exit<B, SqlError.SqlError>
  /**
   * Runs a statement that returns no rows (`withoutReturning`'s text) at once: the rows it changed
   * (or `changed` of them); undefined (not run) when those are not the rows it returns with its
   * `RETURNING` (a view's).
   */
  readonly changesNow?: <B = number>(sql: string, params: ReadonlyArray<unknown>, changed?: (n: number) => B) => Exit.Exit<B, SqlError.SqlError> | undefined
}

export interface Migration {
  readonly name: string
  /** One script, or one per dialect where they differ (types, serial columns). */
  readonly sql: string | { readonly sqlite: string; readonly pg: string }
}

export interface Store {
  readonly kind: "sqlite" | "postgres"
  readonly dialect: Dialect
  readonly sql: SqlClient.SqlClient
  readonly query: (text: string) => Query
  /** Runs an effect outside any transaction (a read, or one autocommitted statement). */
  readonly run: <A, E>(effect: Effect.Effect<A, E, SqlClient.SqlClient>) => Promise<A>
  /**
   * Runs an effect in one transaction: it commits, or none of it does. `again`: a failure it says
   * yes to rolls the transaction back and runs the effect again at once in a new one, on the
   * connection still held (no other transaction between); asked at each failure, it bounds how often.
   */
  readonly transaction: <A, E>(effect: Effect.Effect<A, E, SqlClient.SqlClient>, again?: (error: unknown) => boolean) => Promise<A>
  /**
   * Group commit: runs the effect in a transaction shared with the other `group` calls waiting
   * at the same time (each in its own savepoint, so one that fails rolls back alone); resolves
   * after the COMMIT. `lane` (the consumer's processor): on PostgreSQL a transaction holds at most
   * one call of each lane, and transactions run concurrently on the pool. A lane of one message's
   * own (`ownLaneOf`, for a processor that says `ownRows`) runs side by side
   * with the transaction's other calls, whose lanes run one after another in lane order.
   * `keys` (Processor.lockKeys): the shared rows the call locks. Calls of one lane that all give
   * keys share a transaction, which first takes an advisory lock on each of their keys, in one
   * global order; no transaction starts on a key that one of this store's still holds.
   */
  readonly group: <A, E>(effect: Effect.Effect<A, E, SqlClient.SqlClient>, lane?: string, keys?: ReadonlyArray<string>) => Promise<A>
  /** Applies each named migration once, in order. */
  readonly migrate: (migrations: ReadonlyArray<Migration>) => Promise<void>
  /**
   * Called when the database becomes unreachable (a connection lost, the server restarting) and
   * when a statement succeeds again: once per outage, not per failed statement.
   */
  readonly onAvailability: (listener: (available: boolean, reason: string) => void) => void
  /** Statements sent so far through `query` and transaction control (a measure of the work per message). */
  readonly statements: () => number
  /** The same, per statement text (most sent first): which component's statements a message costs. */
  readonly breakdown: () => ReadonlyArray<{ readonly text: string; readonly count: number }>
  readonly close: () => Promise<void>
}

/** The database is out of reach (connection lost or refused, server shutting down): try again later. */
export const isUnavailable = (error: unknown): boolean => {
  if (!SqlErrors.isSqlError(error)) return false
  if (error.reason._tag === "ConnectionError") return true
  const code = (error.reason.cause as { readonly code?: unknown } | undefined)?.code
  // SQLSTATE class 08 (connection exception), 57P01-57P03 (admin shutdown, crash shutdown, cannot connect now).
  return typeof code === "string" && (code.startsWith("08") || code === "57P01" || code === "57P02" || code === "57P03")
}

/**
 * In a transaction: waits until every statement issued before it on the transaction's connection
 * has been answered, and fails with the first that failed. On PostgreSQL the last write held back
 * (PgPool's `queue`) is the statement waited for (`Pipelined.flush`); `select` (a `SELECT 1`) goes
 * out only when none is held back and one is in flight or the transaction is aborted.
 */
export const sent = (select: Query): Sql<void> =>
  Effect.withFiber((fiber) => {
    const client = Context.getUnsafe(fiber.context, SqlClient.SqlClient)
    const conn = Context.getOrUndefined(fiber.context, client.transactionService)?.[0]
    return conn !== undefined && "flush" in conn ? (conn as Pipelined).flush(select.get()) : Effect.asVoid(select.get())
  })

/**
 * In a transaction: `effect`, the statements issued from its start on in this item of the
 * transaction carrying `tag` (`Pipelined.tag`), which a failure of one carries (`taggedBy`)
 * wherever it surfaces: at a later statement, at the item's RELEASE or at the COMMIT. Nothing on a
 * connection that does not hold statements back (SQLite: a statement fails at once).
 */
export const tagged = <A, E>(tag: object, effect: Sql<A, E>): Sql<A, E> =>
  Effect.withFiber((fiber) => {
    const client = Context.getUnsafe(fiber.context, SqlClient.SqlClient)
    const conn = Context.getOrUndefined(fiber.context, client.transactionService)?.[0]
    if (conn !== undefined && "queue" in conn) (conn as Pipelined).tag = tag
    return effect
  })

/** Replaces each `?` outside quotes by `$1`, `$2`, ... (PostgreSQL's placeholders). */
export const numberParams = (sql: string): string => {
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

/** A statement's values when it has none (not an array per statement). */
const noValues: ReadonlyArray<unknown> = []
const bound = (v: unknown): unknown => (v === undefined ? null : typeof v === "boolean" ? (v ? 1 : 0) : v)
/**
 * A statement's values as the drivers take them: undefined as NULL, a boolean as 0 or 1. The
 * values themselves (a statement's own rest array) when none needs it, as most do: no copy per
 * statement.
 */
export const boundValues = (values: ReadonlyArray<unknown>): ReadonlyArray<unknown> => {
  for (let i = 0; i < values.length; i++) {
    const v = values[i]
    if (v === undefined || typeof v === "boolean") return values.map(bound)
  }
  return values
}

// What a statement gives, made once (not a closure per statement).
const allRows = (rows: ReadonlyArray<Row>): ReadonlyArray<Row> => rows
const firstRow = (rows: ReadonlyArray<Row>): Row | undefined => rows[0]
const rowCount = (rows: ReadonlyArray<Row>): number => rows.length
const anyRow = (rows: ReadonlyArray<Row>): boolean => rows.length > 0
// `write`'s and `writeRows`'s outcome when it is known at once (SQLite): what to read after the commit,
// made once (not two closures and a callback per write; with `on`'s exit and Router's closures, the
// order flow's allocation 139.6-140.5 -> 137.2-137.9 KB an order, `allocation.ts`).
// A count read later: made once for the counts a write mostly has (0 to 7), not a closure per write.
const countsLater: ReadonlyArray<() => number> = Array.from({ length: 8 }, (_, n) => () => n)
const changedCountLater = (n: number): (() => number) => countsLater[n] ?? (() => n)
const rowCountLater = (rows: ReadonlyArray<Row>): (() => number) => changedCountLater(rows.length)
const allRowsLater = (rows: ReadonlyArray<Row>) => (): ReadonlyArray<Row> => rows
/** The same outcomes from the rows a statement changed (`changesNow`). */
const changedCount = (n: number): number => n
const changedAny = (n: number): boolean => n > 0

/**
 * `Exit.succeed(value)`, one exit for all of the outcomes statements mostly give (true, false,
 * undefined: no row, a count of 0 to 7), not an exit per statement: an exit holds nothing else, and
 * nothing changes it.
 */
export const succeeded = <B>(value: B): Exit.Exit<B, never> =>
  (value === undefined
    ? Exit.void
    : value === true
      ? exitTrue
      : value === false
        ? exitFalse
        : typeof value === "number" && !Object.is(value, -0)
          ? (exitCounts[value] ?? Exit.succeed(value))
          : Exit.succeed(value)) as Exit.Exit<B, never>
const exitTrue = Exit.succeed(true)
const exitFalse = Exit.succeed(false)
const exitCounts: ReadonlyArray<Exit.Exit<number>> = Array.from({ length: 8 }, (_, n) => Exit.succeed(n))

/** An INSERT, UPDATE, DELETE or REPLACE ending in a `RETURNING` of plain columns (or numbers): nothing else. */
const returningColumns = /^\s*(?:INSERT|UPDATE|DELETE|REPLACE)\b[\s\S]*?(\s+RETURNING\s+(?:"?[A-Za-z_]\w*"?|\d+)(?:\s*,\s*(?:"?[A-Za-z_]\w*"?|\d+))*\s*;?\s*)$/i

/**
 * SQLite: `text` without its closing `RETURNING` of plain columns, for a caller that only counts
 * the rows it returns (`run`, `any`, `write`); undefined when it has none, or returns expressions
 * (a subquery, a function: what they would run is not dropped). SQLite keeps a `RETURNING`'s rows
 * in an ephemeral table that each run opens (a b-tree and its page cache made and freed): ~8-11 us a
 * statement here, as much as the INSERT of the row itself. The rows a DML statement returns are
 * the rows it changed (inserted, updated by an upsert, updated, deleted; a trigger's own changes
 * neither), which `sqlite3_changes` counts; but for a view's, written by its INSTEAD OF triggers,
 * it counts none (the connection runs those with their `RETURNING`: `Synchronous.changesNow`).
 */
export const withoutReturning = (text: string): string | undefined => {
  const m = returningColumns.exec(text)
  return m === null ? undefined : text.slice(0, text.length - m[1]!.length)
}

/** Splits a migration script into its statements (no `;` inside literals; a `$$` body is one piece). */
const statements = (script: string): ReadonlyArray<string> =>
  script
    .split("$$")
    .reduce<Array<string>>((out, piece, i) => {
      // Even pieces are outside `$$ ... $$`: split them; an odd one (a function's body) joins its statement.
      if (i % 2 === 1) out[out.length - 1] += `$$${piece}$$`
      else {
        const [first = "", ...rest] = piece.split(";")
        if (out.length === 0) out.push(first)
        else out[out.length - 1] += first
        out.push(...rest)
      }
      return out
    }, [])
    .map((s) => s.trim())
    .filter((s) => s !== "")

/** The `group` lane of one message's own (for a processor that says `ownRows`): it runs side by side with the group's other calls. */
export const ownLaneOf = (processor: string, messageId: string): string => `${processor}\u0000${messageId}`
/** Whether `lane` is one message's own (`ownLaneOf`). */
const ownLane = (lane: string | undefined): boolean => lane !== undefined && lane.includes("\u0000")

/**
 * A lock key's advisory lock (`pg_advisory_xact_lock`'s bigint): a 53-bit hash (cyrb53), exact as
 * a JavaScript number. Two keys of one hash only wait for each other more than they need to. In
 * `scope` (a store's `lockScope`), when given, that of the scope and the key together.
 */
export const advisoryKey = (unscoped: string, scope?: string): number => {
  const key = scope === undefined ? unscoped : `${scope}\u0000${unscoped}`
  let h1 = 0xdeadbeef
  let h2 = 0x41c6ce57
  for (let i = 0; i < key.length; i++) {
    const ch = key.charCodeAt(i)
    h1 = Math.imul(h1 ^ ch, 2654435761)
    h2 = Math.imul(h2 ^ ch, 1597334677)
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909)
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909)
  return 4294967296 * (2097151 & h2) + (h1 >>> 0)
}
/** The advisory locks of `keys` in `scope`, once each, in the one order every transaction takes them in. */
const advisoryKeys = (keys: ReadonlyArray<string>, scope: string | undefined): ReadonlyArray<number> => [...new Set(keys.map((k) => advisoryKey(k, scope)))].sort((a, b) => a - b)
/** The advisory locks of several calls, once each, in order. */
const unionOf = (items: ReadonlyArray<{ readonly keys: ReadonlyArray<number> | undefined }>): ReadonlyArray<number> => {
  const all = new Set<number>()
  for (const item of items) for (const k of item.keys ?? []) all.add(k)
  return [...all].sort((a, b) => a - b)
}

export const make = (deps: {
  readonly kind: Store["kind"]
  readonly sql: SqlClient.SqlClient
  /** Group commit: most items per transaction. */
  readonly maxBatch: number
  /**
   * A group holds at most one item of each lane (`group`'s second argument: the consumer's
   * processor), ordered by lane, and groups run concurrently (PostgreSQL); items that give lock
   * keys, several of a lane, under advisory locks on their keys (`take`). Absent: any items, and
   * lock keys ignored (SQLite: one writer).
   */
  readonly onePerLane?: boolean
  /** Runs first in each migration's transaction (PostgreSQL: an advisory lock). */
  readonly lock?: Sql<void>
  /**
   * The namespace of the lock keys' advisory locks (PostgreSQL: the store's schema; absent: the
   * key alone). PostgreSQL's advisory locks are the database's, not a schema's: without it, stores
   * in two schemas of one database (two deployments, a test suite beside a benchmark) waited for
   * each other's locks on keys of the same name (the same SKUs), for rows they do not share.
   */
  readonly lockScope?: string
  /**
   * Runs a transaction on the connection, alone (SQLite: its one connection under the client's
   * semaphore, cheaper than a scoped `reserve`). Absent: `sql.reserve`.
   */
  readonly exclusive?: SqlConnection.Borrower
  readonly close: () => Promise<void>
}): Store => {
  const { sql } = deps
  const dialect: Dialect = deps.kind === "sqlite" ? "sqlite" : "pg"
  /**
   * SQLite: work on the store runs to its end without yielding to the event loop (effect's fiber
   * otherwise does after 2,048 steps, by setImmediate). A group commit of several messages takes
   * more; yielding halfway kept its transaction, and the one connection, across turns, so an
   * ingress append that was ready at once waited for the group to resume, behind the turn's other
   * work, and the PUBACK with it. Measured (`acceptAb.ts 1000 3000`, four interleaved rounds each,
   * from an append's start to its transaction's first statement): p99 2.8-4.9 -> 0.1-0.5 ms,
   * appends waiting over 1 ms 37-60 -> 0-5 of ~1,400. CPU per order unchanged (two runs of ten
   * rounds against the base: 0.95x and 1.02x, on a machine loaded by other benchmarks).
   */
  const provide =
    dialect === "sqlite"
      ? <A, E>(effect: Effect.Effect<A, E, SqlClient.SqlClient>) => Effect.provideService(Effect.provideService(effect, SqlClient.SqlClient, nesting), References.PreventSchedulerYield, true)
      : <A, E>(effect: Effect.Effect<A, E, SqlClient.SqlClient>) => Effect.provideService(effect, SqlClient.SqlClient, nesting)

  /**
   * The context a store operation's fiber starts in. On SQLite it does not yield in it either: past
   * 2,048 steps (a group of ~9 orders' chains, an append of many events) the fiber yielded once
   * `provide`'s scope had ended, after the COMMIT, and the operation settled a turn later, behind
   * whatever that turn ran (4-28 publishes received in the timeline of `tail.ts 1000 3000 accept`,
   * a group's end 1-14 ms after its commit).
   */
  const root = dialect === "sqlite" ? Context.make(References.PreventSchedulerYield, true) : Context.empty()
  const fork = Effect.runForkWith(root)
  const runExit = Effect.runPromiseExitWith(root)

  const listeners: Array<(available: boolean, reason: string) => void> = []
  let available = true
  // Changes of `available` so far. Only an outcome of work begun since the last change may change
  // it again: when connections drop, work that was on them fails after other work has already
  // succeeded on new ones (and work begun before the outage can still succeed after it was
  // noticed); counting those would log one outage as several.
  let changes = 0
  const observe = <A>(exit: Exit.Exit<A, unknown>, since: number): Exit.Exit<A, unknown> => {
    const error = Exit.isFailure(exit) ? squash(exit.cause) : undefined
    const down = error !== undefined && isUnavailable(error)
    if (down === available && since === changes) {
      available = !down
      changes++
      const reason = down ? (error instanceof Error ? error.message : String(error)) : ""
      for (const listener of listeners) listener(available, reason)
    }
    return exit
  }
  const settleExit = <A>(exit: Exit.Exit<A, unknown>, since: number): A => {
    observe(exit, since)
    if (Exit.isSuccess(exit)) return exit.value
    throw squash(exit.cause)
  }
  const run = <A, E>(effect: Effect.Effect<A, E, SqlClient.SqlClient>): Promise<A> => {
    const since = changes
    return runExit(provide(effect)).then((exit) => settleExit(exit, since))
  }

  // Transactions are begun here rather than by `sql.withTransaction` (a span, a semaphore and a
  // fiber reference per level: ~15x SQLite's own cost for a savepoint here). The connection is the
  // client's own transaction connection, so `sql` statements inside run on it. A nested
  // `sql.withTransaction` inside is a savepoint (`nesting` below).
  let sent = 0
  const byText = new Map<string, number>()
  const count = (text: string) => {
    sent++
    byText.set(text, (byText.get(text) ?? 0) + 1)
  }
  const control = (conn: SqlConnection.Connection, text: string) => {
    count(text)
    const execute = () => ("executeNow" in conn ? (conn as Synchronous).executeNow(text, noValues) : conn.executeUnprepared(text, noValues, undefined))
    if (timeline === undefined) return execute()
    // Benchmarks: the COMMIT's start, and the BEGIN's start and end (SQLite runs it at once).
    if (text === "COMMIT") timeline("C")
    if (text === begin) timeline("B")
    const done = execute()
    if (text === begin) timeline("b")
    return done
  }
  const begin = deps.kind === "sqlite" ? "BEGIN IMMEDIATE" : "BEGIN"
  /** Queues a statement on a pipelined connection (PostgreSQL); false on one that is not. */
  const queued = (conn: SqlConnection.Connection, text: string, compiled: string, params: ReadonlyArray<unknown>, onResult?: (rows: ReadonlyArray<Row>) => void): boolean => {
    if (!("queue" in conn)) return false
    count(text)
    ;(conn as Pipelined).queue(compiled, params, onResult)
    return true
  }
  /**
   * The statements from here on are nobody's tagged ones (`tagged`): the COMMIT's own (that fails
   * of a lost connection, not of a tagged write; the writes it carries keep their tags).
   */
  const untag = (conn: SqlConnection.Connection) => {
    if ("queue" in conn) (conn as Pipelined).tag = undefined
  }
  const exclusive: SqlConnection.Borrower = deps.exclusive ?? ((f) => Effect.scoped(Effect.flatMap(sql.reserve, f)))
  /** Rolls back after `cause`, and fails with it. */
  const rollback = (conn: SqlConnection.Connection, cause: Cause.Cause<unknown>) => Effect.andThen(Effect.ignore(control(conn, "ROLLBACK")), Effect.failCause(cause))
  const inTransaction = <A, E>(body: Effect.Effect<A, E, SqlClient.SqlClient>, again?: (error: unknown) => boolean): Effect.Effect<A, E | SqlError.SqlError, SqlClient.SqlClient> =>
    exclusive((conn) => {
      const attempt = (): Effect.Effect<A, unknown, SqlClient.SqlClient> => {
        const run = Effect.matchCauseEffect(Effect.provideService(body, sql.transactionService, [conn, 0] as const), {
          onFailure: (cause) =>
            again?.(squash(cause)) === true
              ? // A ROLLBACK that fails (SQLite rolled an I/O error back itself): not run again.
                Effect.matchCauseEffect(control(conn, "ROLLBACK"), { onFailure: () => Effect.failCause(cause), onSuccess: attempt })
              : rollback(conn, cause),
          onSuccess: (value) => Effect.matchCauseEffect((untag(conn), control(conn, "COMMIT")), { onFailure: (cause) => rollback(conn, cause), onSuccess: () => Effect.succeed(value) })
        })
        // On PostgreSQL the BEGIN goes out with the first statement.
        return queued(conn, begin, begin, []) ? run : Effect.andThen(control(conn, begin), run)
      }
      return attempt()
    }) as Effect.Effect<A, E | SqlError.SqlError, SqlClient.SqlClient>
  /** An item side by side asked for a savepoint (a nested transaction): the group runs again, one item at a time. */
  class OneAtATime {}
  /**
   * The connection of each item of a group running side by side (`Pipelined.ownedBy`), with its
   * index and the run's items that asked for a savepoint.
   */
  const sideBySide = new WeakMap<SqlConnection.Connection, { readonly index: number; readonly refused: Set<number> }>()
  /** Runs one item of a group in a savepoint of the current transaction: its failure rolls back only it. */
  const inSavepoint = <A, E>(body: Effect.Effect<A, E, SqlClient.SqlClient>): Effect.Effect<Exit.Exit<A, E | SqlError.SqlError>, never, SqlClient.SqlClient> =>
    Effect.flatMap(Effect.serviceOption(sql.transactionService), (tx) => {
      if (Option.isNone(tx)) return Effect.exit(body)
      const conn = tx.value[0]
      // Items side by side share the savepoints' stack: the group runs again, one item at a time.
      // Refused whatever the item makes of it: the run is void for it (`together`).
      const side = sideBySide.get(conn)
      if (side !== undefined) {
        side.refused.add(side.index)
        return Effect.succeed(Exit.die(new OneAtATime()))
      }
      // Plain steps, not a generator (a request handled inline runs in one, every round trip).
      const release = (exit: Exit.Exit<A, E | SqlError.SqlError>): Effect.Effect<Exit.Exit<A, E | SqlError.SqlError>> =>
        Effect.flatMap(Effect.exit(control(conn, "RELEASE baton_item")), (released) =>
          Exit.isSuccess(released) || Exit.isFailure(exit)
            ? Effect.succeed(exit)
            : // A queued write of the item failed (it fails the RELEASE sent with it): the item failed.
              Effect.andThen(Effect.ignore(control(conn, "ROLLBACK TO baton_item")), Effect.as(Effect.ignore(control(conn, "RELEASE baton_item")), Exit.failCause(released.cause) as Exit.Exit<A, E | SqlError.SqlError>))
        )
      return Effect.flatMap(Effect.exit(control(conn, "SAVEPOINT baton_item")), (opened) =>
        Exit.isFailure(opened)
          ? Effect.succeed(Exit.failCause(opened.cause) as Exit.Exit<A, E | SqlError.SqlError>)
          : Effect.flatMap(Effect.exit(body), (exit: Exit.Exit<A, E | SqlError.SqlError>) =>
              Exit.isFailure(exit) ? Effect.andThen(Effect.ignore(control(conn, "ROLLBACK TO baton_item")), release(exit)) : release(exit)
            )
      )
    })
  // The client a handler gets (and `store.sql`): inside a transaction begun here, a nested
  // `withTransaction` is a savepoint of it (effect's own would look for the semaphore of a
  // transaction it began itself); outside any, it is effect's own.
  const nesting: SqlClient.SqlClient = new Proxy(sql, {
    get: (target, property, receiver) =>
      property === "withTransaction"
        ? <A, E, R>(effect: Effect.Effect<A, E, R>) =>
            Effect.flatMap(Effect.serviceOption(target.transactionService), (tx) =>
              Option.isNone(tx)
                ? target.withTransaction(effect)
                : (Effect.flatMap(inSavepoint(effect as Effect.Effect<A, E, SqlClient.SqlClient>), (exit) => exit) as unknown as Effect.Effect<A, E | SqlError.SqlError, R>)
            )
        : Reflect.get(target, property, receiver)
  })
  const transaction = <A, E>(effect: Effect.Effect<A, E, SqlClient.SqlClient>, again?: (error: unknown) => boolean): Promise<A> => run(inTransaction(effect, again))

  const query = (text: string): Query => {
    const compiled = dialect === "pg" ? numberParams(text) : text
    const counted = dialect === "sqlite" ? withoutReturning(text) : undefined
    const params = boundValues
    // Inside a transaction, straight to its connection: effect/sql's statement (compilation, a
    // span, the connection lookup) costs ~30 us a statement, several times SQLite's own work. The
    // client and the transaction are read off the fiber's context in one step, and on a
    // synchronous connection (SQLite) the statement's outcome is that step's result: one step of
    // the interpreter per statement, where effect's own path takes ~6.
    const on = <B>(conn: SqlConnection.Connection, values: ReadonlyArray<unknown>, outcome: (rows: ReadonlyArray<Row>) => B, changed?: (n: number) => B): Sql<B> => {
      if (!("executeNow" in conn)) return Effect.map(conn.execute(compiled, params(values), undefined) as Effect.Effect<ReadonlyArray<Row>, SqlError.SqlError>, outcome)
      // Only counted (SQLite): its rows not returned, its changes counted (`withoutReturning`).
      if (changed !== undefined && counted !== undefined) {
        const changes = (conn as Synchronous).changesNow?.(counted, params(values), changed)
        if (changes !== undefined) return changes
      }
      // A failure has no rows: the same exit, whatever `outcome` would have made of them.
      return (conn as Synchronous).executeNow(compiled, params(values), outcome)
    }
    const execute = <B>(fiber: Fiber.Fiber<unknown, unknown>, values: ReadonlyArray<unknown>, outcome: (rows: ReadonlyArray<Row>) => B, changed?: (n: number) => B): Sql<B> => {
      const client = Context.getUnsafe(fiber.context, SqlClient.SqlClient)
      // This store's own client read past its proxy (`nesting`): a trap per statement otherwise.
      const tx = Context.getOrUndefined(fiber.context, client === nesting ? sql.transactionService : client.transactionService)
      count(text)
      if (tx !== undefined) return on(tx[0], values, outcome, changed)
      // The closures of the other ways made in functions of their own: a closure here would have
      // each statement make a context for it (V8 makes a function's context on entry): the order
      // flow's allocation 110.1 -> 107.9 KB an order.
      return outside(client, values, outcome, changed)
    }
    const outside = <B>(client: SqlClient.SqlClient, values: ReadonlyArray<unknown>, outcome: (rows: ReadonlyArray<Row>) => B, changed?: (n: number) => B): Sql<B> => {
      // Outside a transaction on this store's own exclusive connection (SQLite): it waits for the
      // connection as the client's statement would, without effect/sql's statement around it.
      if (deps.exclusive !== undefined && client === nesting) return deps.exclusive((conn) => on(conn, values, outcome, changed))
      // PostgreSQL: on a pooled connection of its own, committed on its own (~15 us less than
      // effect/sql's statement).
      if (dialect === "pg" && client === nesting) return exclusive((conn) => on(conn, values, outcome))
      return Effect.map(client.unsafe<Row>(compiled, params(values)).withoutTransform, outcome)
    }
    const statement = <B>(values: ReadonlyArray<unknown>, outcome: (rows: ReadonlyArray<Row>) => B, changed?: (n: number) => B): Sql<B> =>
      Effect.withFiber((fiber) => execute(fiber, values, outcome, changed))
    const writeStep = <B>(fiber: Fiber.Fiber<unknown, unknown>, values: ReadonlyArray<unknown>, outcome: (rows: ReadonlyArray<Row>) => B, later: (rows: ReadonlyArray<Row>) => () => B, changedLater?: (n: number) => () => B): Sql<() => B> => {
      const client = Context.getUnsafe(fiber.context, SqlClient.SqlClient)
      const tx = Context.getOrUndefined(fiber.context, client === nesting ? sql.transactionService : client.transactionService)
      // Only a pipelined connection queues it (the callback made for it alone; SQLite: none).
      return tx !== undefined && "queue" in tx[0] ? queuedLater(tx[0], values, outcome) : execute(fiber, values, later, changedLater)
    }
    /** `writeStep` on a pipelined connection (its closures in a function of their own, as `outside`'s). */
    const queuedLater = <B>(conn: SqlConnection.Connection, values: ReadonlyArray<unknown>, outcome: (rows: ReadonlyArray<Row>) => B): Sql<() => B> => {
      let rows: ReadonlyArray<Row> | undefined
      queued(conn, text, compiled, params(values), (r) => (rows = r))
      return Effect.succeed(() => {
        if (rows === undefined) throw new Error(`the outcome of ${text} is read before it is known (read it after the commit)`)
        return outcome(rows)
      })
    }
    /** `write`: queued on a pipelined connection in a transaction; what it gives is read after the commit. */
    const written = <B>(values: ReadonlyArray<unknown>, outcome: (rows: ReadonlyArray<Row>) => B, later: (rows: ReadonlyArray<Row>) => () => B, changedLater?: (n: number) => () => B): Sql<() => B> =>
      Effect.withFiber((fiber) => writeStep(fiber, values, outcome, later, changedLater))
    return {
      all: (...values) => statement(values, allRows),
      get: (...values) => statement(values, firstRow),
      run: (...values) => statement(values, rowCount, changedCount),
      any: (...values) => statement(values, anyRow, changedAny),
      write: (...values) => written(values, rowCount, rowCountLater, changedCountLater),
      writeRows: (...values) => written(values, allRows, allRowsLater)
    }
  }

  /**
   * The items of an optimistic group run that failed, and how (their effects rolled back with the
   * run): the first that failed, and on PostgreSQL an earlier one whose write failed with it.
   */
  class ItemFailed {
    readonly failures: ReadonlyArray<readonly [index: number, exit: Exit.Exit<unknown, unknown>]>
    constructor(failures: ReadonlyArray<readonly [index: number, exit: Exit.Exit<unknown, unknown>]>) {
      this.failures = failures
    }
  }
  type Item = {
    readonly effect: Effect.Effect<unknown, unknown, SqlClient.SqlClient>
    readonly lane: string | undefined
    /** Its advisory locks (`advisoryKeys`), when it gave lock keys (PostgreSQL only). */
    readonly keys: ReadonlyArray<number> | undefined
    readonly resolve: (value: unknown) => void
    readonly reject: (error: unknown) => void
  }
  const batch: Array<Item> = []
  /** The advisory locks that this store's groups hold or are about to take, each with how many groups. */
  const held = new Map<number, number>()
  /**
   * The items of the next group: the first `maxBatch` waiting, or with `onePerLane` the first
   * waiting of each lane (an item without a lane is a lane of its own), in lane order. Two
   * concurrent groups then each hold at most one message of a processor, each taking that
   * processor's row locks in its own order after those of the lanes before it, as one message
   * alone in its transaction would. Items of a lane that give lock keys join the group (in
   * arrival order) while their keys are among its first item of the lane's: the group locks their
   * keys first (`locked`), so their rows are locked in no order that matters, and no more of them
   * than that one item alone would (another instance's groups wait for no more). One whose keys
   * a group of this store holds waits for the next group (a connection would only wait for the
   * lock, with the rest of its group). Measured (`abCluster.ts 2 1500 3`): with any keyed items
   * of a lane in a group (their keys' union locked), two instances ran at 0.85x the base; with
   * the first's keys only, at 0.91-1.03x.
   */
  const take = (): Array<Item> => {
    if (deps.onePerLane !== true) return batch.splice(0, deps.maxBatch)
    // Each lane taken: the keys of its first item (undefined: it gave none).
    const lanes = new Map<string, ReadonlyArray<number> | undefined>()
    const taken: Array<Item> = []
    const left: Array<Item> = []
    for (const item of batch) {
      const keys = item.keys
      const first = item.lane === undefined || !lanes.has(item.lane)
      // A lane's later items join only on keys its first holds: the group locks what that one
      // message alone would (another instance's groups wait for no more of its rows).
      const joins =
        taken.length < deps.maxBatch &&
        (first || (keys !== undefined && keys.every((k) => lanes.get(item.lane!)?.includes(k) === true))) &&
        (keys === undefined || !keys.some((k) => held.has(k)))
      if (joins) {
        if (first && item.lane !== undefined) lanes.set(item.lane, keys)
        taken.push(item)
      } else left.push(item)
    }
    batch.length = 0
    batch.push(...left)
    return taken.sort((a, b) => (a.lane === b.lane ? 0 : a.lane === undefined ? 1 : b.lane === undefined ? -1 : a.lane < b.lane ? -1 : 1))
  }
  let scheduled = false
  /** A flush at the next turn, unless one is due or nothing waits. */
  const schedule = () => {
    if (scheduled || batch.length === 0) return
    scheduled = true
    setImmediate(flush)
  }
  /** Marks `keys` held by a group (`take` then keeps items on them for a later one). */
  const hold = (keys: ReadonlyArray<number>) => {
    for (const k of keys) held.set(k, (held.get(k) ?? 0) + 1)
  }
  /** A group's keys let go (its transaction ended): the items waiting on them may go. */
  const letGo = (keys: ReadonlyArray<number>) => {
    if (keys.length === 0) return
    for (const k of keys) {
      const n = held.get(k)!
      if (n <= 1) held.delete(k)
      else held.set(k, n - 1)
    }
    schedule()
  }
  /**
   * The group's transaction takes the advisory locks of its items' keys first, in one statement,
   * in one order for every transaction (no two wait for each other's); on PostgreSQL it goes out
   * with the transaction's first statement.
   */
  const lockAll = deps.onePerLane === true ? query("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(? AS BIGINT[])) AS k") : undefined
  const locked = <A, E>(keys: ReadonlyArray<number>, body: Effect.Effect<A, E, SqlClient.SqlClient>): Effect.Effect<A, E | SqlError.SqlError, SqlClient.SqlClient> =>
    keys.length === 0 || lockAll === undefined ? body : Effect.andThen(lockAll.write(keys), body)
  /**
   * Runs a group's transaction and calls back with its outcome: at once when it completed
   * synchronously (SQLite, with synchronous handlers), without a promise's turn in between.
   */
  const runThen = <A, E>(effect: Effect.Effect<A, E, SqlClient.SqlClient>, then: (exit: Exit.Exit<A, E>) => void) => void fork(provide(effect)).addObserver(then)
  const flush = () => {
    scheduled = false
    const items = take()
    if (items.length === 0) return
    timeline?.("g", items.length)
    const sentBefore = sent
    schedule()
    const keys = unionOf(items)
    hold(keys)
    // A lone item needs no savepoint: its failure rolls back a transaction that is only its.
    const since = changes
    if (items.length === 1) {
      const item = items[0]!
      runThen(inTransaction(locked(keys, item.effect)), (exit) => {
        timeline?.("G", 1)
        timeline?.("n", sent - sentBefore)
        letGo(keys)
        settle(item, observe(exit, since))
      })
      return
    }
    // Optimistically without savepoints (two statements per item saved), up to the first item that
    // fails: the transaction rolls back, that item has failed (rolled back alone, as in a
    // savepoint), and the others run again, each in its own savepoint. Each item's effect thus runs
    // at most once per failed attempt (a poisoned message is not run twice per attempt); one that
    // succeeds may run twice, the first run rolled back. One step of the interpreter per item
    // (matchCauseEffect), rather than forEach's and an exit's and a flatMap's.
    // On PostgreSQL an item's writes go out with a later statement (PgPool.ts), maybe the next
    // item's or the COMMIT, and fail that one: the connection tells whose statement failed.
    const optimistic = Effect.flatMap(Effect.serviceOption(sql.transactionService), (tx) => {
      const conn = Option.isSome(tx) && "queue" in tx.value[0] ? (tx.value[0] as Pipelined) : undefined
      if (conn !== undefined && items.some((item) => ownLane(item.lane))) return together(conn, items)
      const values: Array<unknown> = []
      const from = (i: number): Effect.Effect<Array<unknown>, ItemFailed, SqlClient.SqlClient> =>
        i === items.length
          ? Effect.sync(() => {
              if (conn !== undefined) {
                conn.owner = undefined
                conn.tag = undefined
              }
              return values
            })
          : Effect.matchCauseEffect(conn === undefined ? items[i]!.effect : Effect.suspend(() => ((conn.owner = i), (conn.tag = undefined), items[i]!.effect)), {
              onFailure: (cause) => {
                const own = [i, Exit.failCause(cause)] as const
                if (conn === undefined) return Effect.fail(new ItemFailed([own]))
                // Writes still waiting to go out may fail: sent now, so that an item whose write
                // fails is known to have failed (and runs no more this attempt). This item failed
                // too unless it failed of that write (a statement after it in the transaction).
                conn.owner = undefined
                conn.tag = undefined
                const earlier = (b: number, error: unknown) => {
                  const ofIt = blamed(squash(cause)) === b
                  // Its own write: its failure as it saw it (a chain's `RunElsewhere`, runtime's Consumer).
                  return Effect.fail(new ItemFailed(b === i ? [own] : ofIt ? [[b, Exit.fail(error)]] : [[b, Exit.fail(error)], own]))
                }
                const owner = blamed(squash(cause))
                if (owner !== undefined && owner !== i) return earlier(owner, squash(cause))
                return Effect.matchEffect(conn.executeRaw("SELECT 1", []), {
                  onFailure: (error) => {
                    const b = blamed(error)
                    return b === undefined ? Effect.fail(new ItemFailed([own])) : earlier(b, error)
                  },
                  onSuccess: () => Effect.fail(new ItemFailed([own]))
                })
              },
              onSuccess: (value) => {
                values.push(value)
                return from(i + 1)
              }
            })
      return from(0)
    })
    runThen(inTransaction(locked(keys, optimistic)), (first) => {
      timeline?.("G", items.length)
      timeline?.("n", sent - sentBefore)
      if (Exit.isSuccess(first)) {
        letGo(keys)
        observe(first, since)
        first.value.forEach((value, i) => items[i]!.resolve(value))
        return
      }
      const error = squash(first.cause)
      // The items that failed; on PostgreSQL a COMMIT may fail of an item's write (PgPool.ts).
      const owner = blamed(error)
      const failures = error instanceof ItemFailed ? error.failures : owner === undefined ? undefined : [[owner, Exit.fail(error)] as const]
      if (failures === undefined) {
        letGo(keys)
        observe(first, since)
        for (const item of items) item.reject(error)
        return
      }
      for (const [index, exit] of failures) settle(items[index]!, exit)
      const rest = items.filter((_, i) => !failures.some(([index]) => index === i))
      // The rest's keys stay held (by this store) until their own transaction ends; it locks them again.
      runThen(inTransaction(locked(unionOf(rest), Effect.forEach(rest, (item) => inSavepoint(item.effect)))), (exit) => {
        letGo(keys)
        observe(exit, since)
        if (Exit.isSuccess(exit)) exit.value.forEach((e, i) => settle(rest[i]!, e))
        else for (const item of rest) item.reject(squash(exit.cause))
      })
    })
  }
  /**
   * PostgreSQL: a group's items side by side on its connection, so that the statements they wait
   * for go out in one write (`Pipelined.together`) rather than one write and one wake-up of the
   * server each. The items of lanes shared by several messages run one after another in lane order
   * (one strand: each takes its processor's row locks after those of the lanes before it, as
   * `take` orders them); each item of a message's own lane (`ownLane`) is a strand of its own: it
   * locks only rows nobody else waits for, so its order among the others takes no lock from them.
   * Every statement is its item's (`ownedBy`): the first failure, wherever the server reports it,
   * is blamed on the item that sent it; the items that failed of their own fail the run as
   * `ItemFailed` (the others then run again, in savepoints, as in the sequential run). An item
   * that asks for a savepoint (`OneAtATime`: the items side by side share the savepoints' stack)
   * has the run void for it, whatever it made of the refusal: it runs again, in its savepoint, with
   * the items that did not fail.
   */
  const together = (conn: Pipelined, items: ReadonlyArray<Item>): Effect.Effect<Array<unknown>, ItemFailed, SqlClient.SqlClient> =>
    Effect.suspend(() => {
      const exits: Array<Exit.Exit<unknown, unknown> | undefined> = new Array(items.length)
      const refused = new Set<number>()
      const runItem = (i: number) => {
        const own = conn.ownedBy(i)
        own.tag = undefined
        sideBySide.set(own, { index: i, refused })
        return Effect.map(Effect.exit(Effect.provideService(items[i]!.effect, sql.transactionService, [own, 0] as const)), (exit) => {
          exits[i] = exit
          return Exit.isSuccess(exit)
        })
      }
      const shared: Array<number> = []
      const strands: Array<Effect.Effect<unknown, never, SqlClient.SqlClient>> = []
      // Keyed items (their rows under the group's advisory locks) that share a key, one strand a
      // set: two of them on one row would each read it before the other's write.
      const keyed: Array<Array<number>> = []
      const setOf = new Map<number, number>()
      items.forEach((item, i) => {
        if (ownLane(item.lane)) return void strands.push(runItem(i))
        if (item.keys === undefined) return void shared.push(i)
        const joined = new Set<number>()
        for (const k of item.keys) if (setOf.has(k)) joined.add(setOf.get(k)!)
        const set = [...[...joined].flatMap((j) => keyed[j]!), i].sort((a, b) => a - b)
        for (const j of joined) keyed[j] = []
        const at = keyed.push(set) - 1
        for (const m of set) for (const k of items[m]!.keys!) setOf.set(k, at)
      })
      // A strand's items in order, up to the first that fails.
      const chain = (of: ReadonlyArray<number>, k = 0): Effect.Effect<unknown, never, SqlClient.SqlClient> => (k === of.length ? Effect.void : Effect.flatMap(runItem(of[k]!), (ok) => (ok ? chain(of, k + 1) : Effect.void)))
      for (const set of keyed) if (set.length > 0) strands.unshift(chain(set))
      if (shared.length > 0) strands.unshift(chain(shared))
      const strand = conn.together(strands.length)
      return Effect.flatMap(
        Effect.ensuring(
          Effect.forEach(strands, (s) => Effect.ensuring(s, Effect.sync(strand.ended)), { concurrency: "unbounded", discard: true }),
          Effect.sync(() => {
            strand.close()
            items.forEach((_, i) => sideBySide.delete(conn.ownedBy(i)))
          })
        ),
        () => {
          if (refused.size === 0 && exits.every((exit) => exit !== undefined && Exit.isSuccess(exit))) return Effect.succeed(exits.map((exit) => (exit as Exit.Success<unknown>).value))
          const failures = new Map<number, Exit.Exit<unknown, unknown>>()
          // What a refused item did counts for nothing, its failed writes neither (they may follow
          // from the refusal): it runs again, in its savepoint.
          const fail = (i: number, exit: Exit.Exit<unknown, unknown>) => void (refused.has(i) || failures.has(i) || failures.set(i, exit))
          const blame = (i: number, exit: Exit.Exit<unknown, unknown>) => {
            const error = Exit.isFailure(exit) ? squash(exit.cause) : undefined
            const owner = blamed(error)
            fail(owner ?? i, owner === undefined || owner === i ? exit : Exit.fail(error))
          }
          exits.forEach((exit, i) => exit !== undefined && Exit.isFailure(exit) && blame(i, exit))
          const failed = () => Effect.fail(new ItemFailed([...failures].sort(([a], [b]) => a - b)))
          // Writes still waiting to go out may fail: sent now, so that an item whose write fails is known to have failed.
          conn.owner = undefined
          conn.tag = undefined
          return Effect.matchEffect(conn.executeRaw("SELECT 1", []), {
            onFailure: (error) => {
              const owner = blamed(error)
              if (owner !== undefined) fail(owner, Exit.fail(error))
              return failed()
            },
            onSuccess: failed
          })
        }
      )
    })
  const settle = (item: Item, exit: Exit.Exit<unknown, unknown>) => (Exit.isSuccess(exit) ? item.resolve(exit.value) : item.reject(squash(exit.cause)))
  const group = <A, E>(effect: Effect.Effect<A, E, SqlClient.SqlClient>, lane?: string, keys?: ReadonlyArray<string>): Promise<A> => {
    if (deps.maxBatch <= 1) return transaction(effect)
    return new Promise<A>((resolve, reject) => {
      // Lock keys matter where transactions run concurrently (`onePerLane`: PostgreSQL).
      batch.push({ effect: timeline === undefined ? effect : Effect.tap(Effect.andThen(Effect.sync(() => timeline?.("i")), effect), () => Effect.sync(() => timeline?.("I"))), lane, keys: keys === undefined || deps.onePerLane !== true ? undefined : advisoryKeys(keys, deps.lockScope), resolve: resolve as (value: unknown) => void, reject })
      schedule()
    })
  }

  const migrate = async (migrations: ReadonlyArray<Migration>) => {
    const applied = query("SELECT 1 AS applied FROM baton_migrations WHERE name = ?")
    const record = query("INSERT INTO baton_migrations (name, applied_at) VALUES (?, ?)")
    for (const m of migrations) {
      await transaction(
        Effect.gen(function* () {
          if (deps.lock !== undefined) yield* deps.lock
          if ((yield* applied.get(m.name)) !== undefined) return
          const script = typeof m.sql === "string" ? m.sql : m.sql[dialect]
          for (const s of statements(script)) yield* sql.unsafe(s).raw
          yield* record.run(m.name, new Date().toISOString())
        })
      )
    }
  }

  return {
    kind: deps.kind,
    dialect,
    sql: nesting,
    query,
    run,
    transaction,
    group,
    migrate,
    onAvailability: (listener) => void listeners.push(listener),
    statements: () => sent,
    breakdown: () => [...byText].map(([text, count]) => ({ text, count })).sort((a, b) => b.count - a.count),
    close: deps.close
  }
}

/** The error a failed effect failed with (or died of), as one value a promise can reject with. */
export const squash = (cause: import("effect").Cause.Cause<unknown>): unknown => {
  const reason = cause.reasons.find((r) => r._tag === "Fail" || r._tag === "Die")
  if (reason === undefined) return new Error("interrupted")
  return reason._tag === "Fail" ? reason.error : reason.defect
}

/** Column types where the dialects differ, for migrations written once for both. */
export interface Types {
  /** An auto-incrementing integer primary key. */
  readonly serialKey: string
  /** A 64-bit integer. */
  readonly int: string
  readonly real: string
  readonly blob: string
  /**
   * `, rowid BIGSERIAL` on PostgreSQL, nothing on SQLite (which has an implicit `rowid`): the
   * arrival order that `ORDER BY rowid` reads.
   */
  readonly rowid: string
}

const types: Record<Dialect, Types> = {
  sqlite: { serialKey: "INTEGER PRIMARY KEY AUTOINCREMENT", int: "INTEGER", real: "REAL", blob: "BLOB", rowid: "" },
  pg: { serialKey: "BIGSERIAL PRIMARY KEY", int: "BIGINT", real: "DOUBLE PRECISION", blob: "BYTEA", rowid: ", rowid BIGSERIAL" }
}

/** A migration script per dialect, from one template over the column types. */
export const ddl = (script: (t: Types) => string): { readonly sqlite: string; readonly pg: string } => ({ sqlite: script(types.sqlite), pg: script(types.pg) })
