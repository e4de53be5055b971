/**
 * The reference apps' former entry point, `make({ store, mailer })`, for the runtime until it loads
 * them as modules by name (`Apps.load`). Goes with it.
 */
import type { AppModule, Context } from "@baton/sdk"

/** What the runtime's store offers an app (the context less the environment and the clock). */
export type StoreLike = Pick<Context, "dialect" | "sql" | "query" | "run" | "transaction" | "migrate">

export const start = (module: AppModule, store: StoreLike, clock: Context["clock"] = { now: () => new Date(), newId: () => crypto.randomUUID() }) =>
  module.make({ dialect: store.dialect, sql: store.sql, query: store.query, run: store.run, transaction: store.transaction, migrate: store.migrate, env: process.env, clock })
