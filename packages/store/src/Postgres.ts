/**
 * The PostgreSQL store (`BATON_DATABASE_URL`): effect's `SqlClient` over a connection pool, so that
 * the transactions of different partitions run at the same time on different connections. The
 * driver is `pg` (node-postgres, `PgPool.ts`) by default, or `@effect/sql-pg` (Effect's own client):
 * `pg` measured faster here (see `PgPool.ts`). The SQL is the stores' own (written for both
 * engines); nothing is rewritten.
 *
 * Concurrency: instances of a cluster write the same tables at once, under READ COMMITTED. A
 * read-modify-write that another transaction may race locks its rows explicitly (`FOR UPDATE`,
 * see `forUpdate`). A lock wait past `lockTimeoutMs`, a deadlock or a serialization failure fails
 * the transaction with a retryable `SqlError`; the consumer runs it again.
 */
import { Effect, Exit, Redacted, Scope } from "effect"
import { Reactivity } from "effect/reactivity"
import { SqlError } from "effect/sql"
import { PgClient } from "@effect/sql-pg"
import type { SqlClient, SqlConnection } from "effect/sql"
import * as PgPool from "./PgPool.ts"
import * as Store from "./Store.ts"

export interface Options {
  readonly url: string
  readonly lockTimeoutMs?: number
  /** Connections in the pool (the partitions that can commit at the same time). */
  readonly poolSize?: number
  /** `pg` (node-postgres, the default) or `@effect/sql-pg`. */
  readonly driver?: "pg" | "effect-sql-pg"
  /** `application_name` of its connections (`baton` by default): tells an instance's apart in `pg_stat_activity`. */
  readonly applicationName?: string
  /** An idle pooled connection failed (the server restarted); the pool replaces it. */
  readonly onIdleError?: (error: Error) => void
}

/** A transaction that lost a conflict with another's (deadlock, serialization, lock timeout): run it again. */
export const isConflict = (error: unknown): boolean =>
  SqlError.isSqlError(error) &&
  (error.reason._tag === "DeadlockError" || error.reason._tag === "SerializationError" || error.reason._tag === "LockTimeoutError")

/** ` FOR UPDATE` on PostgreSQL (SQLite's single writer needs none): append to a read that a write follows. */
export const forUpdate = (dialect: Store.Dialect): string => (dialect === "pg" ? " FOR UPDATE" : "")

const effectSqlPg = (options: Options, lockTimeoutMs: number) => {
  const url = new URL(options.url)
  // The URL's own `options` (a test's search_path) and the lock timeout, in the startup packet.
  const startupOptions = [url.searchParams.get("options") ?? "", `-c lock_timeout=${lockTimeoutMs}`].filter((s) => s !== "").join(" ")
  url.searchParams.delete("options")
  return PgClient.make({
    url: Redacted.make(url.toString()),
    startupOptions,
    maxConnections: options.poolSize ?? 16,
    applicationName: options.applicationName ?? "baton",
    transformJson: false
  }).pipe(Effect.provide(Reactivity.layer))
}

export const open = async (options: Options): Promise<Store.Store> => {
  const lockTimeoutMs = Math.max(1, Math.floor(options.lockTimeoutMs ?? 5_000))
  const scope = Scope.makeUnsafe()
  // `pg`: transactions and autocommitted statements borrow the pool's clients directly (PgPool.ts).
  const opening: Effect.Effect<{ readonly client: SqlClient.SqlClient; readonly exclusive?: SqlConnection.Borrower }, SqlError.SqlError, Scope.Scope> =
    options.driver === "effect-sql-pg"
      ? Effect.map(effectSqlPg(options, lockTimeoutMs), (client) => ({ client }))
      : PgPool.make({
          url: options.url,
          settings: { lock_timeout: lockTimeoutMs },
          poolSize: options.poolSize ?? 16,
          ...(options.applicationName === undefined ? {} : { applicationName: options.applicationName }),
          ...(options.onIdleError === undefined ? {} : { onIdleError: options.onIdleError })
        })
  let client: SqlClient.SqlClient
  let exclusive: SqlConnection.Borrower | undefined
  try {
    ;({ client, exclusive } = await Effect.runPromise(Scope.provide(opening, scope)))
  } catch (error) {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    throw error
  }
  const close = () => Effect.runPromise(Scope.close(scope, Exit.void))
  let schema: string | undefined
  try {
    // Instances starting together create the migrations table once.
    const rows = await Effect.runPromise(
      client.withTransaction(
        Effect.andThen(
          Effect.andThen(
            client.unsafe("SELECT pg_advisory_xact_lock(4242000)").raw,
            client.unsafe("CREATE TABLE IF NOT EXISTS baton_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)").raw
          ),
          client.unsafe<{ readonly schema: string | null }>("SELECT current_schema() AS schema")
        )
      )
    )
    schema = rows[0]?.schema ?? undefined
  } catch (error) {
    await close()
    throw error
  }
  return Store.make({
    kind: "postgres",
    sql: client,
    // Group commit with at most one message of each processor per transaction, in processor
    // order, and groups running concurrently on the pool (Store.ts `onePerLane`): partitions of a
    // processor still run at the same time, and a group takes each processor's row locks as that
    // processor's one message alone would, so two groups do not deadlock where two single
    // messages would not (processors whose rows are their own). Order flow, one instance, side by
    // side with one message per transaction (load 2-3): ~2.7 messages per transaction, statements
    // per order 0.80x, PostgreSQL's CPU per order 0.78-0.94x, orders/s 1.03-1.23x.
    // Groups of any messages (8 or 32, measured before) deadlocked on the stock rows (two
    // inventory messages in each of two groups) and ran at 0.4x. A processor that names the shared
    // rows its messages lock (`lockKeys`) has several in a group, on the keys of its first, under
    // advisory locks taken in one sorted order (Store.ts `take`): ab.ts pg 1.12-1.15x orders/s.
    maxBatch: 16,
    onePerLane: true,
    ...(exclusive === undefined ? {} : { exclusive }),
    lock: Effect.asVoid(client.unsafe("SELECT pg_advisory_xact_lock(4242000)").raw),
    // Lock keys' advisory locks in the store's schema (Store.ts `lockScope`). `public`, the default,
    // keeps the key alone, as before: during a rolling upgrade there, instances of the previous
    // version take the same locks. In another schema, instances of the two versions take different
    // locks for one key, so two groups may lock its rows in different orders; PostgreSQL detects
    // the deadlock and the losing transaction runs again (`isConflict`). Measured (two order flows
    // at once in two schemas of one database, ab.ts `BATON_AB_PGACTIVITY`): backends waiting on
    // advisory locks 14-19% of their time before, 0% since; an isolation fix, not a speed-up.
    ...(schema === undefined || schema === "public" ? {} : { lockScope: schema }),
    close
  })
}
