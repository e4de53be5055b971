/**
 * effect's `SqlClient` over a `pg` (node-postgres) pool: the PostgreSQL driver the store uses by
 * default. Measured here against `@effect/sql-pg` 4.0.5 (`Postgres.open({ driver })`, and the
 * README's scale-out section): one statement costs ~60 us of CPU through `pg` and ~165 us through
 * `@effect/sql-pg` (its statements go through effect's fiber machinery twice, for the statement
 * and for the protocol), and transactions of 12 statements run ~1.5x as fast. Both queue on an
 * exhausted pool rather than fail.
 */
import { createRequire } from "node:module"
import pg from "pg"
import { Effect, Scope, Stream } from "effect"
import { Reactivity } from "effect/reactivity"
import { SqlClient, SqlError, type SqlConnection } from "effect/sql"
import { PgClient } from "@effect/sql-pg"

export interface Options {
  readonly url: string
  /** Extra `-c name=value` settings for every connection. */
  readonly settings?: Readonly<Record<string, string | number>>
  readonly poolSize: number
  /** `application_name` of every connection (`pg_stat_activity` shows it): `baton` by default. */
  readonly applicationName?: string
  /** Errors of idle connections (the server restarted): the pool drops them and opens new ones. */
  readonly onIdleError?: (error: Error) => void
}

/**
 * The SQLSTATE of a server's error; undefined for anything else. A socket error has a `code` too
 * (`ECONNRESET`, `ECONNREFUSED`, `EPIPE`: a server restarting), with the `syscall` that failed:
 * that is a lost connection, not a statement's error.
 */
const sqlState = (cause: unknown): string | undefined => {
  if (typeof cause !== "object" || cause === null) return undefined
  const { code } = cause as { readonly code?: unknown }
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) && !("syscall" in cause) && !("errno" in cause) ? code : undefined
}

/** PostgreSQL's SQLSTATE codes, as effect/sql's error reasons (retryable or not). */
export const classify = (cause: unknown, operation: string): SqlError.SqlError => {
  const code = sqlState(cause)
  const text = cause instanceof Error ? cause.message : String(cause)
  const props = { cause, message: `PostgreSQL ${operation} failed: ${text}`, operation }
  const reason =
    code === undefined
      ? new SqlError.ConnectionError(props) // a socket error (ECONNRESET, ECONNREFUSED, EPIPE) or a closed connection
      : code === "23505"
        ? new SqlError.UniqueViolation({ ...props, constraint: (cause as { readonly constraint?: string }).constraint ?? "" })
        : code.startsWith("23")
          ? new SqlError.ConstraintError(props)
          : code === "40P01"
            ? new SqlError.DeadlockError(props)
            : code === "40001"
              ? new SqlError.SerializationError(props)
              : code === "55P03"
                ? new SqlError.LockTimeoutError(props)
                : code === "57014"
                  ? new SqlError.StatementTimeoutError(props)
                  : code.startsWith("08") || code === "57P01" || code === "57P02" || code === "57P03"
                    ? new SqlError.ConnectionError(props)
                    : code === "28P01" || code === "28000"
                      ? new SqlError.AuthenticationError(props)
                      : code === "42501"
                        ? new SqlError.AuthorizationError(props)
                        : code.startsWith("42")
                          ? new SqlError.SqlSyntaxError(props)
                          : new SqlError.UnknownError(props)
  return new SqlError.SqlError({ reason })
}

// BIGINT and COUNT(*) as numbers (exact up to 2^53), as SQLite returns them.
const types = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === 20 && format !== "binary" ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as "text")) as pg.CustomTypesConfig["getTypeParser"]
}

/** Classifies a failure; a lost connection marks the client broken (destroyed, not returned to the pool). */
const failed = (cause: unknown, operation: string, broken: { error?: Error }): SqlError.SqlError => {
  const error = classify(cause, operation)
  if (error.reason._tag === "ConnectionError") broken.error ??= cause instanceof Error ? cause : new Error(String(cause))
  return error
}

/**
 * A connection that holds a statement back until the next one that is waited for: both go out in
 * one write (the client runs in `pg`'s pipeline mode) and the server runs them in order. Each write
 * and each wake-up for an answer costs more CPU here than the statement's own work on either side
 * (a system call in this virtual machine is dear), so inside a transaction its BEGIN and every
 * write whose outcome nobody reads (an INSERT, UPDATE or DELETE without RETURNING: its rows are
 * none) ride along with the next statement. A failure of one fails that statement with its error,
 * so the transaction never commits without it; a savepoint's RELEASE is such a statement, so a
 * nested transaction still fails as a whole (Store.ts).
 */
export interface Pipelined extends SqlConnection.Connection {
  /**
   * Queues a statement; the next statement sent on the connection writes it first, and fails with
   * its error when it failed (the transaction then never commits).
   */
  readonly queue: (sql: string, params: ReadonlyArray<unknown>, onResult?: (rows: ReadonlyArray<Record<string, unknown>>) => void) => void
  /**
   * Waits until every statement issued so far has been answered, and fails with the first that
   * failed (one more while the transaction is aborted). The last write held back goes out as the
   * statement waited for, carrying the others (no statement of its own); with none held back,
   * `otherwise` (a `SELECT 1`) is sent when a statement is in flight (another strand's, `together`)
   * or the transaction is aborted, else nothing.
   */
  readonly flush: <E, R>(otherwise: Effect.Effect<unknown, E, R>) => Effect.Effect<void, E | SqlError.SqlError, R>
  /**
   * Who issues the statements from now on (a group's item, Store.ts): a statement's failure is
   * blamed on the owner current when it was issued (`blamed`), though it fails a later one.
   */
  owner: number | undefined
  /**
   * What the statements issued from now on are part of (a chain of runs in a message's transaction,
   * runtime's Consumer): a statement's failure carries the tag current when it was issued
   * (`taggedBy`), though it fails a later one (the next item's, a RELEASE, the COMMIT). Per owner
   * (`ownedBy`); cleared by whoever runs the next item (Store.ts), and for the next borrower.
   */
  tag: object | undefined
  /**
   * The connection as seen by item `owner` of a group whose items run side by side (Store.ts): its
   * statements are that owner's (`blamed`), whatever `owner` is meanwhile.
   */
  readonly ownedBy: (owner: number) => Pipelined
  /**
   * Statements of `strands` fibers running side by side on the connection go out together: from
   * the first statement sent, the socket is held (corked) until every strand waits for an answer
   * or has ended (`ended`), so that the statements each one waits for share one write (at the
   * latest at the next turn of the event loop, should a strand wait for something else), and in a
   * transaction block one Sync (a failure skips the statements after it, which fail with it,
   * blamed on its owner). `close` ends it (the socket is let go).
   */
  readonly together: (strands: number) => { readonly ended: () => void; readonly close: () => void }
}

const blame = new WeakMap<object, number>()
/** The owner (`Pipelined.owner`) of the statement whose failure `error` is, when it had one. */
export const blamed = (error: unknown): number | undefined => (typeof error === "object" && error !== null ? blame.get(error) : undefined)
const tags = new WeakMap<object, object>()
/** The tag (`Pipelined.tag`) of the statement whose failure `error` is, when it had one. */
export const taggedBy = (error: unknown): object | undefined => (typeof error === "object" && error !== null ? tags.get(error) : undefined)
/** Who issued a statement: its owner, or its owner and tag (one object per owner and tag, made when the tag is set). */
type Issuer = number | { readonly owner: number | undefined; readonly tag: object }
/** Records who issued the statement that `error` is the failure of (`blamed`, `taggedBy`). */
const issuedBy = (error: object, by: Issuer | undefined): void => {
  if (by === undefined) return
  if (typeof by === "number") return void blame.set(error, by)
  if (by.owner !== undefined) blame.set(error, by.owner)
  tags.set(error, by.tag)
}

const blind = new Map<string, boolean>()
/**
 * An INSERT, UPDATE or DELETE without RETURNING: it answers no rows, only success or failure. So
 * is a `WITH ...` whose main statement (its first SELECT, INSERT, UPDATE, DELETE, VALUES, TABLE
 * or MERGE outside parentheses, quotes and comments) is an INSERT, UPDATE or DELETE, with no
 * RETURNING anywhere in it (its data-modifying WITHs return nothing either): two writes in one
 * statement that rides along with the next, as either would alone.
 */
export const isBlindWrite = (sql: string): boolean => {
  let b = blind.get(sql)
  if (b === undefined) {
    b = !/\bRETURNING\b/i.test(sql) && (/^\s*(INSERT|UPDATE|DELETE)\b/i.test(sql) || (/^\s*WITH\b/i.test(sql) && /^(INSERT|UPDATE|DELETE)$/.test(mainStatementOf(sql))))
    if (blind.size < 10_000) blind.set(sql, b)
  }
  return b
}

const mainKeywords = new Set(["SELECT", "INSERT", "UPDATE", "DELETE", "VALUES", "TABLE", "MERGE"])
/**
 * The keyword of a `WITH` statement's main statement (upper case), or "" when none is found at its
 * top level, or when the scan is not sure (then the statement is waited for: never wrongly held back).
 * The main statement follows the `)` that closes the last WITH's body: a keyword elsewhere at the top
 * level is a WITH's name (`insert`, `update`, `delete` and `merge` are unreserved). Block comments
 * nest; a dollar quote's tag may hold digits after its first character; a text with a backslash (an
 * E'' string, whose \' is no end) is not scanned.
 */
export const mainStatementOf = (sql: string): string => {
  if (sql.includes("\\")) return ""
  let depth = 0
  // The last thing seen at the top level was a `)`.
  let closed = false
  for (let i = 0; i < sql.length; ) {
    const c = sql[i]!
    if (c === "'" || c === '"') {
      // A quoted literal or name ('' and "" inside are its own quote).
      const end = sql.indexOf(c, i + 1)
      if (end < 0) return ""
      i = end + 1
      if (depth === 0) closed = false
    } else if (c === "-" && sql[i + 1] === "-") {
      const end = sql.indexOf("\n", i)
      i = end < 0 ? sql.length : end + 1
    } else if (c === "/" && sql[i + 1] === "*") {
      // Nested, as PostgreSQL's are.
      let nest = 1
      i += 2
      while (nest > 0) {
        if (i >= sql.length) return ""
        if (sql[i] === "/" && sql[i + 1] === "*") (nest++, (i += 2))
        else if (sql[i] === "*" && sql[i + 1] === "/") (nest--, (i += 2))
        else i++
      }
    } else if (c === "$") {
      // A dollar-quoted text ($$...$$ or $tag$...$tag$), else a parameter ($1).
      const tag = /^\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/.exec(sql.slice(i, i + 66))?.[0]
      if (tag === undefined) i++
      else {
        const end = sql.indexOf(tag, i + tag.length)
        if (end < 0) return ""
        i = end + tag.length
      }
      if (depth === 0) closed = false
    } else if (c === "(") {
      depth++
      i++
    } else if (c === ")") {
      depth--
      i++
      if (depth === 0) closed = true
    } else if (/[A-Za-z_\u0080-\uffff]/.test(c)) {
      let end = i + 1
      while (end < sql.length && /[A-Za-z0-9_$\u0080-\uffff]/.test(sql[end]!)) end++
      const word = sql.slice(i, end).toUpperCase()
      if (depth === 0 && closed) {
        if (mainKeywords.has(word)) return word
        // After a WITH's column list comes its AS; after its body, its SEARCH or CYCLE clause (not scanned).
        if (word !== "AS") return ""
      }
      if (depth === 0) closed = false
      i = end
    } else {
      if (depth === 0 && c === ",") closed = false
      i++
    }
  }
  return ""
}

/** pg's own mapping of a parameter to its text (a Date, a Buffer, an array, JSON), as its `Query` binds it. */
const { prepareValue } = createRequire(import.meta.url)("pg/lib/utils.js") as { readonly prepareValue: (value: unknown) => unknown }

/** What a prepared statement answers (its RowDescription, or none), with the parsers pg builds from it. */
interface Described {
  readonly fields: ReadonlyArray<unknown>
  readonly parsers: ReadonlyArray<(value: string) => unknown> | undefined
  readonly empty: Record<string, unknown> | null
}

/** The internals of pg's `Query` and `Result` (pg 8.23) that `Prepared` uses. */
interface QueryInternals {
  text: string
  name: string | undefined
  values: ReadonlyArray<unknown> | undefined
  _accumulateRows: boolean
  _result: PgResult
  hasBeenParsed(connection: PgConnection): boolean
  prepare(connection: PgConnection): void
  handleCommandComplete(msg: unknown, connection: PgConnection): void
  handleError(error: unknown, connection: PgConnection): void
}
interface PgConnection {
  readonly stream: { readonly writable: boolean; write: (buffer: Buffer) => boolean; cork: () => void; uncork: () => void }
  readonly parsedStatements: Record<string, string | undefined>
  readonly submittedNamedStatements: Record<string, string | undefined>
  parse: (config: { text: string; name: string; types: undefined }) => void
  bind: (config: { portal: string; statement: string; values: ReadonlyArray<unknown> | undefined; binary: boolean; valueMapper: (value: unknown) => unknown }) => void
  describe: (config: { type: "P"; name: string }) => void
  close: (config: { type: "S"; name: string }) => void
  sync: () => void
}
/** pg's `Result` (pg 8.23): what a statement answered. */
interface PgResult {
  readonly rows: Array<Record<string, unknown>>
  fields: ReadonlyArray<unknown>
  _parsers: ReadonlyArray<(value: string) => unknown> | undefined
  _prebuiltEmptyResultObject: Record<string, unknown> | null
  readonly _types: unknown
  addFields(fields: ReadonlyArray<unknown>): void
  parseRow(values: ReadonlyArray<unknown>): Record<string, unknown>
  addRow(row: Record<string, unknown>): void
  addCommandComplete(msg: unknown): void
}
const ResultOf = pg.Result as unknown as new (rowMode: undefined, types: unknown) => PgResult
const QueryBase = pg.Query as unknown as new (text: string, values: ReadonlyArray<unknown> | undefined, callback: (error: unknown, result: pg.QueryResult | undefined) => void) => QueryInternals

/** The described statements of each connection, by name (pg's `parsedStatements` is per connection too). */
const describedOf = new WeakMap<PgConnection, Map<string, Described>>()
/** `connection`'s described statements (made on its first use). */
const describedFor = (connection: PgConnection): Map<string, Described> => {
  let described = describedOf.get(connection)
  if (described === undefined) describedOf.set(connection, (described = new Map()))
  return described
}
/** A run of a described statement: its result answers as the first run's did, without a RowDescription. */
const reuse = (result: PgResult, known: Described): void => {
  result.fields = known.fields
  result._parsers = known.parsers
  result._prebuiltEmptyResultObject = known.empty
}
/** Execute (unnamed portal, all rows) and Sync in one buffer: one chunk of the socket's write, not two. */
const executeSync = Buffer.from([0x45, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0x53, 0, 0, 0, 4])
const execute = executeSync.subarray(0, 10)

/**
 * Up to this length a text is measured and copied a character at a time when it is ASCII (its
 * UTF-8 is its characters): two calls into C++ (Buffer.byteLength, write) cost more than the loop.
 */
const shortText = 48
/** The length of `text` in UTF-8. */
const textLength = (text: string): number => {
  if (text.length > shortText) return Buffer.byteLength(text)
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) >= 0x80) return Buffer.byteLength(text)
  return text.length
}
/**
 * `bindExecute`'s parameters as pg binds them (`prepareValue`), and their lengths in bytes (-1:
 * NULL). Empty between calls: a call that finds values in them was entered from a value's
 * `toPostgres` or `toJSON` (user code, which may send a statement: a pipelined client submits it
 * at once) and takes arrays of its own, so that the outer Bind keeps its values (with one pair for
 * both, the inner one overwrote the outer's lengths and emptied its values: a "" went as NULL).
 */
const mapped: Array<unknown> = []
const lengths: Array<number> = []
/**
 * Bind of prepared statement `name` to `values` (unnamed portal, results as text), Execute, and
 * Sync when `sync`: the bytes pg's serializer writes for them (`connection.bind` with
 * `prepareValue`, then Execute and Sync), in one buffer sized up front, for one chunk of the
 * socket's write rather than two or three. pg's writer measures the name and each value, copies
 * them into its own buffer (grown as it goes), then allocates its next one and slices the message
 * out of it: in a CPU profile of 120,000 statements (transactions of a read and three writes), its
 * Bind took ~1.9 us of the ~3 us pg spent sending a statement. By itself, a Bind and Execute of
 * seven parameters (one a ~250-byte JSON text), five interleaved rounds: 1.3-2.8 us here, 1.9-4.5
 * us through pg. A value pg cannot turn into text throws before anything is written, as pg's does.
 */
export const bindExecute = (name: string, values: ReadonlyArray<unknown>, sync: boolean): Buffer => {
  const n = values.length
  // Bind: its code and length, the portal "" and the name (C strings), the formats (count and
  // one each), the values (count, and length and bytes each), the result formats (one: text).
  let size = 1 + 4 + 1 + name.length + 1 + 2 + 2 * n + 2 + 2 + 2
  const own = mapped.length === 0
  const prepared = own ? mapped : new Array<unknown>(n)
  const measured = own ? lengths : new Array<number>(n)
  try {
    for (let i = 0; i < n; i++) {
      const value = prepareValue(values[i])
      prepared[i] = value
      const length = value === null || value === undefined ? -1 : value instanceof Buffer ? value.length : textLength(value as string)
      measured[i] = length
      size += length < 0 ? 4 : 4 + length
    }
  } catch (error) {
    if (own) mapped.length = 0
    throw error
  }
  const buffer = Buffer.allocUnsafe(size + (sync ? executeSync.length : 10))
  buffer[0] = 0x42
  buffer.writeInt32BE(size - 1, 1)
  buffer[5] = 0
  let at = 6
  // The names are ASCII (`nameOf`).
  for (let i = 0; i < name.length; i++) buffer[at++] = name.charCodeAt(i)
  buffer[at++] = 0
  buffer[at++] = (n >>> 8) & 0xff
  buffer[at++] = n & 0xff
  for (let i = 0; i < n; i++) {
    buffer[at++] = 0
    buffer[at++] = prepared[i] instanceof Buffer ? 1 : 0
  }
  buffer[at++] = (n >>> 8) & 0xff
  buffer[at++] = n & 0xff
  for (let i = 0; i < n; i++) {
    const length = measured[i]!
    buffer.writeInt32BE(length, at)
    at += 4
    if (length <= 0) continue
    const value = prepared[i]
    if (value instanceof Buffer) value.copy(buffer, at)
    else if (length === (value as string).length && length <= shortText) for (let j = 0; j < length; j++) buffer[at + j] = (value as string).charCodeAt(j)
    else buffer.write(value as string, at, length, "utf8")
    at += length
  }
  buffer[at++] = 0
  buffer[at++] = 1
  buffer[at++] = 0
  buffer[at++] = 0
  executeSync.copy(buffer, at, 0, sync ? executeSync.length : 10)
  if (own) mapped.length = 0
  return buffer
}

/**
 * A named statement that asks the server for its row description (Describe) only once per
 * connection: pg sends Parse once, then Bind, Describe, Execute and Sync every time, and builds
 * the row's parsers again from each RowDescription. A prepared statement's result type cannot
 * change under it (the server fails it with 0A000, "cached plan must not change result type"),
 * so the description of its first run holds for every later run on that connection; a statement
 * parsed again (pg parses once more after a failed first parse) is described again.
 */
class Prepared extends QueryBase {
  /** Described in this run: its description is remembered once the statement completes. */
  private learning: Map<string, Described> | undefined = undefined
  // Its results always as text, as `bindExecute` and `Batch` ask for them (and `types` reads an
  // int8 as a number): pg's client makes a query binary when `pg.defaults.binary` is set, and the
  // first run's (binary) parsers then read the later runs' text (an int4 7 came back as null).
  get binary(): boolean {
    return false
  }
  set binary(_: boolean) {}
  override prepare(connection: PgConnection): void {
    const name = this.name!
    const described = describedFor(connection)
    const known = this.hasBeenParsed(connection) ? described.get(name) : undefined
    // A value pg cannot turn into text (a cyclic object) fails the statement before anything of it
    // goes out. pg's own `prepare` sends its Parse, then a Close of it, but has it marked as parsed
    // when the ParseComplete comes: every later run on the connection failed (26000).
    let message: Buffer | undefined
    try {
      if (known === undefined) for (const value of this.values ?? []) prepareValue(value)
      else message = bindExecute(name, this.values ?? [], true)
    } catch (error) {
      connection.sync()
      this.handleError(error, connection)
      return
    }
    if (known === undefined) {
      described.delete(name)
      this.learning = described
      return super.prepare(connection)
    }
    reuse(this._result, known)
    this._accumulateRows = true
    if (connection.stream.writable) connection.stream.write(message!)
  }
  override handleCommandComplete(msg: unknown, connection: PgConnection): void {
    super.handleCommandComplete(msg, connection)
    const result = this._result
    this.learning?.set(this.name!, { fields: result.fields, parsers: result._parsers, empty: result._prebuiltEmptyResultObject })
    this.learning = undefined
  }
}

/** A statement of a `Batch`: its name (none: unnamed, parsed each time), and what it answered. */
interface Item {
  readonly sql: string
  readonly params: ReadonlyArray<unknown>
  readonly name: string | undefined
  /** Parse sent with it (this batch prepares its name). */
  parsed: boolean
  /** Described in this batch: its description is remembered once it completes. */
  learn: boolean
  result: PgResult | undefined
}

/**
 * Statements of one transaction in one message sequence with a single Sync at its end: pg's
 * pipeline mode sends a Sync after each statement, and the server answers each Sync with a
 * ReadyForQuery and a flush of its socket (a send() each). Inside a transaction block, the
 * statements up to the Sync run in it as they would with a Sync each; the first that fails makes
 * the server skip the rest up to the Sync (with a Sync each they would fail with 25P02 instead),
 * so the batch fails with that statement's error and index, as before. To pg it is one query: the
 * client gives it every message up to its ReadyForQuery; it tells a statement's answers from the
 * next one's by their CommandComplete. `name` and `text` are those of the statement being answered,
 * which is what pg's client reads (a ParseComplete marks that statement as prepared; an error
 * forgets its name as submitted). Its BEGIN is a named statement too (Bind and Execute; it went as
 * a simple query before): parsed and described again in every batch, it cost the server more than
 * the Syncs saved (PgPool alone, 16 interleaved rounds, against the base: client CPU 0.89x and
 * the backends' 0.91x with an unnamed BEGIN, 0.86x and 0.88x with a named one).
 */
class Batch extends QueryBase {
  private at = 0
  private failed: { readonly index: number; readonly error: unknown } | undefined = undefined
  private items: Array<Item> = []
  private finished = false
  /** Its requests (`add`), each answered for its own statements, `from` (inclusive) `to` (exclusive). */
  private readonly requests: Array<{ readonly from: number; readonly to: number; readonly answer: Answer }> = []
  private readonly names: Map<string, string>
  /** Who issued each statement (kept when a refused statement cuts `items` short). */
  private readonly owners: Array<Issuer | undefined> = []
  constructor(items: ReadonlyArray<Statement>, names: Map<string, string>, answer: Answer) {
    super("", undefined, () => {})
    this.names = names
    this.add(items, answer)
  }
  /** More statements, answered on their own (before the batch is sent): a failure of one skips those after it, in every request. */
  add(items: ReadonlyArray<Statement>, answer: Answer): void {
    const from = this.items.length
    for (const { sql, params, owner } of items) {
      this.items.push({ sql, params, name: nameOf(this.names, sql), parsed: false, learn: false, result: undefined })
      this.owners.push(owner)
    }
    this.requests.push({ from, to: this.items.length, answer })
  }
  // Read by pg's client for the statement being answered (see above); set by pg's constructor.
  override get name(): string | undefined {
    return this.items?.[this.at]?.name
  }
  override set name(_: string | undefined) {}
  override get text(): string {
    return this.items?.[this.at]?.sql ?? ""
  }
  override set text(_: string) {}
  submit(connection: PgConnection): null {
    const types = this._result._types
    const described = describedFor(connection)
    connection.stream.cork()
    try {
      for (const [i, item] of this.items.entries()) {
        const name = item.name ?? ""
        let known: Described | undefined
        if (item.name === undefined || !(connection.parsedStatements[name] !== undefined || connection.submittedNamedStatements[name] !== undefined)) {
          connection.parse({ text: item.sql, name, types: undefined })
          if (item.name !== undefined) connection.submittedNamedStatements[name] = item.sql
          item.parsed = true
        } else known = described.get(name)
        item.result = new ResultOf(undefined, types)
        // Described before: its Bind and Execute in one buffer (`bindExecute`).
        let message: Buffer | undefined
        try {
          if (known === undefined) connection.bind({ portal: "", statement: name, values: item.params, binary: false, valueMapper: prepareValue })
          else message = bindExecute(name, item.params, false)
        } catch (error) {
          // A value pg cannot bind: the statements before it go out and the batch fails with it
          // (unless one of them fails first); a statement parsed for it is closed, as pg does.
          if (item.parsed && item.name !== undefined) connection.close({ type: "S", name })
          this.failed = { index: i, error }
          this.forgetFrom(connection, i)
          this.items.length = i
          break
        }
        if (known === undefined) {
          connection.describe({ type: "P", name: "" })
          item.learn = item.name !== undefined
          if (connection.stream.writable) connection.stream.write(execute)
        } else {
          reuse(item.result, known)
          if (connection.stream.writable) connection.stream.write(message!)
        }
      }
      connection.sync()
    } finally {
      connection.stream.uncork()
    }
    return null
  }
  /** Names this batch prepared from statement `from` on, which the server never parsed: prepared again next time. */
  private forgetFrom(connection: PgConnection, from: number): void {
    for (const item of this.items.slice(from)) if (item.parsed && item.name !== undefined && connection.parsedStatements[item.name] === undefined) delete connection.submittedNamedStatements[item.name]
  }
  handleRowDescription(msg: { readonly fields: ReadonlyArray<unknown> }): void {
    this.items[this.at]?.result?.addFields(msg.fields)
  }
  handleDataRow(msg: { readonly fields: ReadonlyArray<unknown> }): void {
    const result = this.items[this.at]?.result
    if (result === undefined || this.failed !== undefined) return
    try {
      result.addRow(result.parseRow(msg.fields))
    } catch (error) {
      this.failed = { index: this.at, error }
    }
  }
  override handleCommandComplete(msg: unknown, connection: PgConnection): void {
    const item = this.items[this.at++]
    if (item === undefined || item.result === undefined) return
    item.result.addCommandComplete(msg)
    if (item.learn && connection !== undefined) {
      const { fields, _parsers, _prebuiltEmptyResultObject } = item.result
      describedOf.get(connection)?.set(item.name!, { fields, parsers: _parsers, empty: _prebuiltEmptyResultObject })
    }
  }
  handleEmptyQuery(): void {
    this.at++
  }
  override handleError(error: unknown, connection: PgConnection): void {
    // The server skipped the statements after this one up to the Sync.
    if (connection !== undefined) this.forgetFrom(connection, this.at + 1)
    const index = Math.min(this.at, this.items.length - 1)
    this.finish(...(this.failed !== undefined && this.failed.index <= index ? ([this.failed.error, undefined, this.failed.index] as const) : ([error, undefined, index] as const)))
  }
  /**
   * Once: a connection lost after an error fails the batch again (pg's `_errorAllQueries`). With
   * statement `index` failed, the requests before it have their results, its own fails at it, and
   * those after it fail with its error and owner (the server skipped their statements).
   */
  private finish(error: unknown, results: ReadonlyArray<PgResult> | undefined, index: number): void {
    if (this.finished) return
    this.finished = true
    const owner = results === undefined ? this.owners[index] : undefined
    for (const { from, to, answer } of this.requests)
      if (results !== undefined || to <= index) answer(undefined, (results ?? this.items.map((i) => i.result!)).slice(from, to), -1, undefined)
      else answer(error, undefined, index < from ? -1 : index - from, owner)
  }
  handleReadyForQuery(): void {
    if (this.failed !== undefined) return this.finish(this.failed.error, undefined, this.failed.index)
    this.finish(undefined, this.items.map((i) => i.result!), -1)
  }
}

/** A statement of a `Batch`, and who issued it. */
type Statement = { readonly sql: string; readonly params: ReadonlyArray<unknown>; readonly owner: Issuer | undefined }
/** What a `Batch` answers a request: its statements' results, or the failure at its statement `index` (-1: one before it, of `owner`'s). */
type Answer = (error: unknown, results: ReadonlyArray<PgResult> | undefined, index: number, owner: Issuer | undefined) => void

type Queued = {
  readonly sql: string
  readonly params: ReadonlyArray<unknown>
  readonly onResult: ((rows: ReadonlyArray<Record<string, unknown>>) => void) | undefined
  readonly owner: Issuer | undefined
  /** Queued inside a transaction block (after its BEGIN): it may share the next statement's Sync. */
  readonly inTransaction: boolean
}

/** The name of a statement with parameters on a connection, given in the order it meets them: none past 2,000 (unnamed, parsed each time). */
const nameOf = (names: Map<string, string>, sql: string): string | undefined => {
  let name = names.get(sql)
  if (name === undefined && names.size < 2_000) names.set(sql, (name = `baton_${names.size}`))
  return name
}

/** One pooled client as a `SqlConnection`; statements are prepared once per connection, by name. */
const connection = (client: pg.Client, names: Map<string, string>, broken: { error?: Error }): { readonly conn: Pipelined; readonly reset: () => void } => {
  let queued: Array<Queued> = []
  /** Between a BEGIN and its COMMIT or ROLLBACK: only there may a write wait for the next statement. */
  let inTransaction = false
  const track = (sql: string) => {
    if (sql === "BEGIN") inTransaction = true
    else if (sql === "COMMIT" || sql === "ROLLBACK") inTransaction = false
  }
  /** `owner`: of the statement that failed. */
  type Done = (error: unknown, result: pg.QueryResult | undefined, owner?: Issuer) => void
  /**
   * A `pg` query with its callback: no promise of pg's own, and its text given as a string, so
   * that pg does not copy a config object's property descriptors (both measured per statement).
   */
  const submit = (sql: string, params: ReadonlyArray<unknown>, rowMode: "array" | undefined, done: Done): void => {
    if (rowMode !== undefined) {
      void client.query({ text: sql, values: params as Array<unknown>, rowMode }, done)
      return
    }
    const name = params.length > 0 ? nameOf(names, sql) : undefined
    // Named: prepared once per connection (pg reads the name when it sends the query).
    const query = name === undefined ? new pg.Query(sql, params.length === 0 ? undefined : (params as Array<unknown>), done) : new Prepared(sql, params, done)
    if (name !== undefined) (query as { name?: string | undefined }).name = name
    void client.query(query as pg.Query)
  }
  /**
   * Statements of strands side by side (`together`) in a transaction block, while the socket is
   * held: one `Batch`, sent as the socket is let go (`letGo`), with one Sync for all rather than
   * one each (the server answers each Sync with a ReadyForQuery and a send() of its own). A failure
   * fails the statements after it in the batch as it would with a Sync each (the transaction is
   * aborted), blamed on its owner.
   */
  let gathering: Batch | undefined
  const sendGathered = () => {
    const batch = gathering
    gathering = undefined
    if (batch !== undefined) void client.query(batch as unknown as pg.Query)
  }
  const send = (sql: string, params: ReadonlyArray<unknown>, rowMode: "array" | undefined, owner: Issuer | undefined, done: Done): void => {
    track(sql)
    const gathers = inTransaction && rowMode === undefined && held?.corked === true && queued.every((q) => q.inTransaction)
    if (!gathers) {
      sendGathered()
      if (queued.length === 0) return submit(sql, params, rowMode, (error, result) => done(error, result, owner))
    }
    const earlier = queued
    queued = []
    // In a transaction block, one Sync for all (`Batch`), its COMMIT too: the server skips the rest
    // of a batch after a failure (its COMMIT as well), so a batch with a COMMIT that failed is
    // followed by a ROLLBACK, sent before anyone hears of the failure: the block never stays open.
    // (With a Sync of its own, the COMMIT's answer came in a read of its own, after its fsync: one
    // more wake-up per transaction.) A ROLLBACK goes with its own Sync, so that it runs whatever
    // failed before it.
    const batched = rowMode === undefined && earlier.every((q) => q.inTransaction)
    const commits = sql === "COMMIT"
    if (batched && (inTransaction || commits)) {
      const statements = [...earlier, { sql, params, owner }]
      const answer: Answer = (error, results, _, failedOwner) => {
        if (results === undefined) {
          if (commits) submit("ROLLBACK", [], undefined, () => {})
          return done(error, undefined, failedOwner)
        }
        earlier.forEach((q, j) => q.onResult?.(results[j]!.rows))
        done(undefined, results[earlier.length] as unknown as pg.QueryResult)
      }
      if (!gathers) void client.query(new Batch(statements, names, answer) as unknown as pg.Query)
      else if (gathering === undefined) gathering = new Batch(statements, names, answer)
      else gathering.add(statements, answer)
      return
    }
    // One write for all: pg corks each statement's messages, and corks nest.
    const stream = (client as unknown as { connection: { stream: { cork: () => void; uncork: () => void } } }).connection.stream
    const results: Array<pg.QueryResult | undefined> = new Array(earlier.length + 1)
    // The first failure in order: the statements after it failed because of it (an aborted transaction).
    let failure: { readonly index: number; readonly error: unknown; readonly owner: Issuer | undefined } | undefined
    let waiting = earlier.length + 1
    const answered = (i: number) => (error: unknown, result: pg.QueryResult | undefined) => {
      if (result === undefined) failure = failure === undefined || i < failure.index ? { index: i, error, owner: i < earlier.length ? earlier[i]!.owner : owner } : failure
      else results[i] = result
      if (--waiting > 0) return
      if (failure !== undefined) return done(failure.error, undefined, failure.owner)
      earlier.forEach((q, j) => q.onResult?.(results[j]!.rows))
      done(undefined, results[earlier.length])
    }
    stream.cork()
    try {
      // Here `batched` ends with a ROLLBACK (a COMMIT goes in the batch, above).
      if (batched)
        void client.query(
          new Batch(earlier, names, (error, results, index) =>
            earlier.forEach((_, j) => (results !== undefined ? answered(j)(undefined, results[j] as unknown as pg.QueryResult) : answered(j)(j === index ? error : undefined, j === index ? undefined : ({} as pg.QueryResult))))
          ) as unknown as pg.Query
        )
      else earlier.forEach((q, i) => submit(q.sql, q.params, undefined, answered(i)))
      submit(sql, params, rowMode, answered(earlier.length))
    } finally {
      stream.uncork()
    }
  }
  /**
   * What failed the transaction (its first failure since the last success): a statement after it
   * fails with it too, rather than with "current transaction is aborted" (25P02), so that a
   * failure reported one statement late keeps its own type.
   */
  let aborted: { readonly cause: unknown; readonly owner: Issuer | undefined } | undefined
  /**
   * Strands side by side (`together`): how many; how many wait for a statement still held back
   * (`unsent`) or gone out (`inflight`: its answer will come), and how many have ended; whether
   * the socket is held; the socket's writes so far (`gen`), to tell the one a statement went in.
   */
  let held: { readonly strands: number; unsent: number; inflight: number; ended: number; gen: number; corked: boolean; closed: boolean; checking: boolean } | undefined
  const socket = () => (client as unknown as { connection: { stream: { cork: () => void; uncork: () => void } } }).connection.stream
  const letGo = (h: NonNullable<typeof held>) => {
    if (!h.corked) return
    h.corked = false
    h.inflight += h.unsent
    h.unsent = 0
    h.gen++
    sendGathered()
    socket().uncork()
  }
  const hold = (h: NonNullable<typeof held>) => {
    if (h.corked) return
    h.corked = true
    socket().cork()
    // A strand that waits for something other than an answer (a timer) holds the others a timer's
    // turn at most (not the next turn's check phase: the strands forked after the first start
    // there); while an answer is still to come, its strand's next statement is awaited (the server
    // runs the held statements after it anyway).
    const fallback = () => {
      if (!h.corked || h.closed) return
      if (h.inflight > 0) setTimeout(fallback, 0)
      else letGo(h)
    }
    setTimeout(fallback, 0)
  }
  /**
   * Lets the socket go once every strand waits for a statement held back or has ended: while an
   * answer is still to come, its strand will send with the others (the server answers the
   * statements of one write one Sync at a time, in several reads). Checked once the answers of one
   * read have all been handed out.
   */
  const settled = (h: NonNullable<typeof held>) => {
    if (h.checking) return
    h.checking = true
    queueMicrotask(() => {
      h.checking = false
      if (!h.closed && h.inflight === 0 && h.unsent > 0 && h.unsent + h.ended >= h.strands) letGo(h)
    })
  }
  /** Statements sent and not answered yet (`flush`). */
  let inflight = 0
  const query = (sql: string, params: ReadonlyArray<unknown>, rowMode: "array" | undefined, ownerOf: () => Issuer | undefined) =>
    Effect.callback<pg.QueryResult, SqlError.SqlError>((resume) => {
      const owner = ownerOf()
      const h = held
      const gen = h?.gen ?? 0
      inflight++
      let out = true
      const answered = () => {
        if (out) inflight--
        out = false
        if (h === undefined || h.closed) return
        if (gen < h.gen) h.inflight--
        else h.unsent--
        settled(h)
      }
      const fail = (cause: unknown, owner: Issuer | undefined) => {
        answered()
        const error = failed(cause, "query", broken)
        issuedBy(error, owner)
        resume(Effect.fail(error))
      }
      if (h !== undefined) {
        hold(h)
        h.unsent++
      }
      try {
        send(sql, params, rowMode, owner, (cause, result, owner) => {
          if (result === undefined) {
            if (sqlState(cause) === "25P02" && aborted !== undefined) return fail(aborted.cause, aborted.owner)
            aborted = inTransaction ? { cause, owner } : undefined
            return fail(cause, owner)
          }
          // A COMMIT of a transaction that a failed statement aborted answers ROLLBACK, not an error.
          if (result.command === "ROLLBACK" && sql === "COMMIT")
            return aborted === undefined
              ? fail(Object.assign(new Error("the transaction was rolled back at its COMMIT: a statement of it failed"), { code: "25P02" }), undefined)
              : fail(aborted.cause, aborted.owner)
          aborted = undefined
          answered()
          resume(Effect.succeed(result))
        })
      } catch (cause) {
        fail(cause, owner)
      }
      if (h !== undefined && !h.closed) settled(h)
    })
  /** The connection's statements as `ownerOf()`'s. */
  const view = (ownerOf: () => Issuer | undefined): Omit<Pipelined, "owner" | "tag" | "ownedBy" | "together"> => {
    const execute = (sql: string, params: ReadonlyArray<unknown>, transformRows: (<A extends object>(rows: ReadonlyArray<A>) => ReadonlyArray<A>) | undefined) =>
      inTransaction && isBlindWrite(sql)
        ? Effect.sync(() => {
            queued.push({ sql, params, onResult: undefined, owner: ownerOf(), inTransaction })
            return []
          })
        : Effect.map(query(sql, params, undefined, ownerOf), (r) => (transformRows === undefined ? r.rows : transformRows(r.rows)))
    const values = (sql: string, params: ReadonlyArray<unknown>) =>
      Effect.map(query(sql, params, "array", ownerOf), (r) => r.rows as unknown as ReadonlyArray<ReadonlyArray<unknown>>)
    return {
      execute,
      executeRaw: (sql, params) => query(sql, params, undefined, ownerOf),
      executeStream: (sql, params, transformRows) => Stream.fromIterableEffect(execute(sql, params, transformRows)),
      executeValues: values,
      executeValuesUnprepared: values,
      executeUnprepared: execute,
      flush: (otherwise) =>
        Effect.suspend((): Effect.Effect<void, SqlError.SqlError | Effect.Error<typeof otherwise>, Effect.Services<typeof otherwise>> => {
          const last = queued.pop()
          if (last === undefined) return inflight === 0 && aborted === undefined ? Effect.void : Effect.asVoid(otherwise)
          return Effect.map(query(last.sql, last.params, undefined, () => last.owner), (r) => void last.onResult?.(r.rows))
        }),
      queue: (sql, params, onResult) => {
        track(sql)
        queued.push({ sql, params, onResult, owner: ownerOf(), inTransaction })
      }
    }
  }
  const owned = new Map<number, Pipelined>()
  const together: Pipelined["together"] = (strands) => {
    const h = { strands, unsent: 0, inflight: 0, ended: 0, gen: 0, corked: false, closed: false, checking: false }
    held = h
    return {
      ended: () => {
        if (h.closed) return
        h.ended++
        settled(h)
      },
      close: () => {
        h.closed = true
        if (held === h) held = undefined
        letGo(h)
      }
    }
  }
  /** Who issues `conn`'s statements now: its owner, with its tag when it has one (one object for both while neither changes). */
  const issuer = (conn: Pipelined, last: { by?: Exclude<Issuer, number> }): Issuer | undefined => {
    const { owner, tag } = conn
    if (tag === undefined) return owner
    const by = last.by
    return by !== undefined && by.owner === owner && by.tag === tag ? by : (last.by = { owner, tag })
  }
  const selfLast = {}
  const self: Pipelined = {
    owner: undefined,
    tag: undefined,
    ...view(() => issuer(self, selfLast)),
    ownedBy: (owner) => {
      let conn = owned.get(owner)
      if (conn === undefined) {
        const last = {}
        const own: Pipelined = { ...view(() => issuer(own, last)), owner, tag: undefined, ownedBy: self.ownedBy, together }
        owned.set(owner, (conn = own))
      }
      return conn
    },
    together
  }
  /** As new, for its next borrower (a connection is made once per client and lent again and again). */
  const reset = () => {
    queued = []
    inTransaction = false
    aborted = undefined
    self.owner = undefined
    self.tag = undefined
    for (const conn of owned.values()) conn.tag = undefined
    if (held !== undefined) {
      held.closed = true
      letGo(held)
      held = undefined
    }
  }
  return { conn: self, reset }
}

/** What a borrower gets from a pool that was ended (pg.Pool's words). */
const endedError = (): Error => new Error("Cannot use a pool after calling end on the pool")

/** A client of the pool with its connection, made once and lent to one borrower at a time. */
interface Slot {
  readonly client: pg.Client
  readonly conn: Pipelined
  readonly reset: () => void
  /** A failure at the socket while lent (`failed`): the client is destroyed when it comes back. */
  readonly broken: { error?: Error }
  /** An error the client emitted (the server dropped it): destroyed when it comes back, or at once when idle. */
  lost: Error | undefined
  idle: boolean
}

/**
 * The pool: clients lent one borrower at a time, at most `size` open, borrowers waiting in order
 * when all are lent. Its own rather than `pg.Pool`'s: a borrower that finds an idle client takes
 * it in the same step (pg.Pool answers with a promise after a `process.nextTick`, emits events,
 * arms and clears an idle timer, and makes a release closure on every checkout), and each client's
 * connection (`connection`: its closures and statement names) is made once, not per checkout.
 * A transaction or an autocommitted statement borrows a client: ~7 per order.
 */
class Clients {
  private readonly idle: Array<Slot> = []
  private readonly waiting: Array<(slot: Slot | Error) => void> = []
  private open = 0
  private ending: (() => void) | undefined = undefined
  private ended = false
  private readonly config: pg.ClientConfig
  private readonly size: number
  private readonly onIdleError: ((error: Error) => void) | undefined
  constructor(config: pg.ClientConfig, size: number, onIdleError: ((error: Error) => void) | undefined) {
    this.config = config
    this.size = size
    this.onIdleError = onIdleError
  }
  /** An idle client, at once; undefined when none is (then `wait`). */
  take(): Slot | undefined {
    const slot = this.idle.pop()
    if (slot !== undefined) slot.idle = false
    return slot
  }
  /** Waits for a client (one is opened when fewer than `size` are); gives a function that stops waiting. */
  wait(then: (slot: Slot | Error) => void): () => void {
    if (this.ended) {
      then(endedError())
      return () => {}
    }
    this.waiting.push(then)
    if (this.open < this.size) this.connect()
    return () => {
      const i = this.waiting.indexOf(then)
      if (i >= 0) this.waiting.splice(i, 1)
    }
  }
  private connect(): void {
    this.open++
    const client = new pg.Client(this.config)
    const names = new Map<string, string>()
    const broken: { error?: Error } = {}
    const { conn, reset } = connection(client, names, broken)
    const slot: Slot = { client, conn, reset, broken, lost: undefined, idle: false }
    // Every client's errors are recorded for its whole life: a client that the server drops while
    // lent (`pg_terminate_backend`, a restart) would otherwise emit `error` with no listener, which
    // ends the process. Its next statement fails; it is destroyed when it comes back. An idle
    // one is dropped at once.
    client.on("error", (error) => {
      slot.lost ??= error
      if (!slot.idle) return
      const i = this.idle.indexOf(slot)
      if (i >= 0) this.idle.splice(i, 1)
      slot.idle = false
      this.destroy(slot)
      this.onIdleError?.(error)
    })
    client.connect((error: Error | undefined) => {
      if (error !== undefined && error !== null) {
        this.open--
        void client.end().catch(() => {})
        const next = this.waiting.shift()
        if (next !== undefined) next(error)
        // The next borrower waiting tries a connection of its own (and fails of it too when the server is still out of reach).
        if (!this.ended && this.waiting.length > 0 && this.open < this.size) this.connect()
        this.settled()
        return
      }
      // TCP_NODELAY, as on every socket the runtime owns.
      ;(client as unknown as { connection?: { stream?: { setNoDelay?: (b: boolean) => void } } }).connection?.stream?.setNoDelay?.(true)
      this.give(slot)
    })
  }
  /** Back from its borrower: lent to the next one waiting, idle, or destroyed when it failed. */
  release(slot: Slot): void {
    const client = slot.client as unknown as { readonly _queryable: boolean; readonly _ending: boolean }
    if (slot.broken.error !== undefined || slot.lost !== undefined || this.ended || !client._queryable || client._ending) return this.destroy(slot)
    this.give(slot)
  }
  private give(slot: Slot): void {
    if (this.ended) return this.destroy(slot)
    slot.reset()
    const next = this.waiting.shift()
    if (next !== undefined) return next(slot)
    slot.idle = true
    this.idle.push(slot)
  }
  private destroy(slot: Slot): void {
    this.open--
    void slot.client.end().catch(() => {})
    // A borrower waiting gets a new client in its place.
    if (!this.ended && this.waiting.length > 0 && this.open < this.size) this.connect()
    this.settled()
  }
  private settled(): void {
    if (this.ended && this.open === 0) this.ending?.()
  }
  /** Closes the idle clients and those lent when they come back; resolves once all are closed. */
  end(): Promise<void> {
    this.ended = true
    for (const then of this.waiting.splice(0)) then(endedError())
    const closed = new Promise<void>((resolve) => (this.ending = resolve))
    for (const slot of this.idle.splice(0)) this.destroy(slot)
    this.settled()
    return closed
  }
}

export const make = (options: Options): Effect.Effect<{ readonly client: SqlClient.SqlClient; readonly exclusive: SqlConnection.Borrower }, SqlError.SqlError, Scope.Scope> =>
  Effect.gen(function* () {
    const url = new URL(options.url)
    const settings = Object.entries(options.settings ?? {}).map(([k, v]) => `-c ${k}=${v}`)
    const startup = [url.searchParams.get("options") ?? "", ...settings].filter((s) => s !== "").join(" ")
    url.searchParams.delete("options")
    const config: pg.ClientConfig = { connectionString: url.toString(), application_name: options.applicationName ?? "baton", types, ...(startup === "" ? {} : { options: startup }) }
    ;(config as { pipeline?: boolean }).pipeline = true
    const clients = yield* Effect.acquireRelease(
      Effect.sync(() => new Clients(config, options.poolSize, options.onIdleError)),
      (c) => Effect.promise(() => c.end())
    )
    /** A client: an idle one in the same step, else the first to come back or to open. */
    const take: Effect.Effect<Slot, SqlError.SqlError> = Effect.suspend(() => {
      const slot = clients.take()
      if (slot !== undefined) return Effect.succeed(slot)
      return Effect.callback<Slot, SqlError.SqlError>((resume) => {
        const stop = clients.wait((got) => resume(got instanceof Error ? Effect.fail(classify(got, "connect")) : Effect.succeed(got)))
        return Effect.sync(stop)
      })
    })
    const giveBack = (slot: Slot) => Effect.sync(() => clients.release(slot))
    // A connection that failed at the socket (or that the server dropped) is destroyed, not
    // returned to the pool (`release`).
    const acquirer = Effect.map(Effect.acquireRelease(take, giveBack), (slot) => slot.conn)
    const exclusive: SqlConnection.Borrower = (f) => Effect.acquireUseRelease(take, (slot) => f(slot.conn), giveBack)
    const client = yield* SqlClient.make({
      acquirer,
      transactionAcquirer: acquirer,
      compiler: PgClient.makeCompiler(undefined, false),
      driver: "pg",
      spanAttributes: [["db.system.name", "postgresql"]]
    }).pipe(Effect.provide(Reactivity.layer))
    // Connect now, so that a wrong URL fails at start with its reason.
    yield* client.unsafe("SELECT 1").raw
    return { client, exclusive }
  })
