/**
 * The store (every table in one database: the embedded SQLite file, or PostgreSQL shared by a
 * cluster), closed last; and the tracing exporter, which sends its last batch before it closes.
 */
import { join } from "node:path"
import { Log } from "@baton/core"
import { Postgres, Sqlite, type Store as Handle } from "@baton/store"
import { Context, Effect, Layer } from "effect"
import type { Config } from "../Config.ts"
import * as Observability from "../Observability.ts"
import { Settings } from "./Settings.ts"

export class Store extends Context.Service<Store, Handle>()("baton/runtime/Store") {}
export class Tracing extends Context.Service<Tracing, Observability.Tracing>()("baton/runtime/Tracing") {}

/** A database URL without its password, for the log. */
const redact = (url: string): string => url.replace(/\/\/([^:@/]+):[^@/]*@/, "//$1:***@")

/** What `pg_stat_activity` shows for an instance's connections: `baton/<instance>`. */
export const applicationName = (config: Config): string => `baton/${config.instance}`

export const layer: Layer.Layer<Store, Error, Settings> = Layer.effect(
  Store,
  Effect.gen(function* () {
    const { config, logger } = yield* Settings
    const storePath = join(config.dataDir, "baton.db")
    // Idle pooled connections dropped together (the server restarting, connections cut): one line
    // for the lot, a moment after the first, rather than one per connection.
    let idleLosses = 0
    const idleLost = (error: Error) => {
      if (idleLosses++ > 0) return
      setTimeout(() => {
        logger.log("warn", "idle database connections lost", { connections: idleLosses, reason: Log.reason(error) })
        idleLosses = 0
      }, 250).unref()
    }
    const store = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () =>
          config.databaseUrl === undefined
            ? Sqlite.open({
                path: storePath,
                synchronous: config.durable ? "NORMAL" : "OFF",
                onCheckpointError: (message) => logger.log("warn", "WAL checkpoint failed (the next one tries again)", { reason: message })
              })
            : Postgres.open({
                url: config.databaseUrl,
                poolSize: config.poolSize,
                driver: config.pgDriver,
                applicationName: applicationName(config),
                onIdleError: idleLost
              }),
        catch: (e) => new Error(`cannot open the store: ${Log.reason(e)}`)
      }),
      (s) => Effect.promise(() => s.close()).pipe(Effect.tap(() => Effect.sync(() => logger.log("info", "store closed"))))
    )
    logger.log("info", "store opened", { kind: store.kind, where: config.databaseUrl === undefined ? storePath : redact(config.databaseUrl) })
    store.onAvailability((available, reason) =>
      available ? logger.log("info", "store reachable again", { kind: store.kind }) : logger.log("error", "store unreachable, retrying", { kind: store.kind, reason })
    )
    return store
  })
)

/** Spans only with an OTLP endpoint; the exporter sends its last batch when the runtime stops. */
export const tracing = Layer.effect(
  Tracing,
  Effect.gen(function* () {
    const { config, logger } = yield* Settings
    if (config.otlpUrl === undefined) return Observability.untraced
    const traced = yield* Observability.otlp({ url: config.otlpUrl, serviceName: `baton/${config.instance}`, exportIntervalMs: config.otlpIntervalMs })
    logger.log("info", "traces exported", { url: config.otlpUrl })
    return traced
  })
)
