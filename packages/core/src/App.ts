/** An application: the initiating events it accepts and the processors that react to them. */
import type { Result } from "effect"
import type { Envelope, Issue } from "./Envelope.ts"
import type { Processor } from "./Processor.ts"
import type { Rule, Workflow } from "./Workflow.ts"

export interface Initiating {
  /** Kebab-case name: published on `initiate/<name>`. */
  readonly name: string
  /** Validates the event's data, reporting every issue with its path. */
  readonly decode: (data: unknown) => Result.Result<unknown, ReadonlyArray<Issue>>
  /**
   * When `decode`'s output is the declaration's own decoded form (a schema without transformations):
   * the token (`Envelope.vouch`) the ingress marks an accepted envelope with, so that a processor
   * reading it with the same declaration takes its data as `decode` checked it, not decoded again.
   */
  readonly vouch?: unknown
  /** The version of its schema (1 when absent): the accepted envelope carries it, so readers know what `data` follows. */
  readonly version?: number
  /** The partition key of a bare event (order is kept per key); the event id when absent. */
  readonly key?: (data: unknown) => string | undefined
  /**
   * Names of the event's fields that must not leak (`Sensitive.fields(schema)` reads the fields
   * marked with `Sensitive.annotation`): masked in rejections, log lines and HTTP answers.
   */
  readonly sensitive?: ReadonlyArray<string>
}

export interface App {
  readonly name: string
  readonly initiating: ReadonlyArray<Initiating>
  readonly processors: ReadonlyArray<Processor>
  /** For the mediator topology: how its initiating events are classified, and its workflows. */
  readonly mediation?: Mediation
  /** HTTP endpoints of the app, by `METHOD /path` (the synchronous `POST /comments`). */
  readonly http?: Readonly<Record<string, HttpRoute>>
  /** For the workflow event pattern: repairs of failed messages, by message type. */
  readonly repairs?: Readonly<Record<string, Repair>>
  /**
   * The events the app declares with a schema, at their current version, with the JSON Schema of
   * their data (`Schema.toJsonSchemaDocument`): recorded in the store and checked against it at start.
   */
  readonly events?: ReadonlyArray<{ readonly type: string; readonly version: number; readonly schema?: unknown }>
}

/** Answers a request with a JSON object body (undefined when empty). */
export type HttpRoute = (body: Readonly<Record<string, unknown>> | undefined) => Promise<{ readonly status: number; readonly body: unknown }>

/** Fixes a failed message's data, or returns undefined when it cannot tell what is wrong. */
export type Repair = (message: Envelope, error: string) => { readonly data: unknown; readonly changes: ReadonlyArray<string> } | undefined

export interface Mediation {
  readonly rules: ReadonlyArray<Rule>
  readonly workflows: ReadonlyArray<Workflow>
}

/**
 * What an app is given when the runtime starts it: the store's SQL (the same `SqlClient` its
 * handlers get inside their transaction), its migrations, the environment and the clock. The public
 * face of it is `@baton/sdk`'s `Context`; the runtime builds it from its store.
 */
export interface AppContext {
  readonly dialect: "sqlite" | "pg"
  readonly sql: import("effect/sql").SqlClient.SqlClient
  /** A statement written once with `?` placeholders, compiled for the dialect once. */
  readonly query: (text: string) => AppQuery
  /** Runs an effect outside any transaction (a read, or one autocommitted statement). */
  readonly run: <A, E>(effect: import("effect").Effect.Effect<A, E, import("effect/sql").SqlClient.SqlClient>) => Promise<A>
  /** Runs an effect in one transaction: it commits, or none of it does. */
  readonly transaction: <A, E>(effect: import("effect").Effect.Effect<A, E, import("effect/sql").SqlClient.SqlClient>) => Promise<A>
  /** Applies each named migration once, in order (a table of applied names; safe when instances start together). */
  readonly migrate: (migrations: ReadonlyArray<{ readonly name: string; readonly sql: string | { readonly sqlite: string; readonly pg: string } }>) => Promise<void>
  /** The process environment (an app's own settings: `SMTP_URL`, ...). */
  readonly env: Readonly<Record<string, string | undefined>>
  readonly clock: import("./Envelope.ts").Clock
}

export interface AppQuery {
  readonly all: (...params: ReadonlyArray<unknown>) => import("effect").Effect.Effect<ReadonlyArray<Readonly<Record<string, unknown>>>, import("effect/sql").SqlError.SqlError, import("effect/sql").SqlClient.SqlClient>
  readonly get: (...params: ReadonlyArray<unknown>) => import("effect").Effect.Effect<Readonly<Record<string, unknown>> | undefined, import("effect/sql").SqlError.SqlError, import("effect/sql").SqlClient.SqlClient>
  readonly run: (...params: ReadonlyArray<unknown>) => import("effect").Effect.Effect<number, import("effect/sql").SqlError.SqlError, import("effect/sql").SqlClient.SqlClient>
  /**
   * `run` without waiting for the answer inside a PostgreSQL transaction: it goes out with the
   * transaction's next statement or its COMMIT, whose failure its own failure becomes (the
   * transaction fails). For a write whose outcome decides nothing the handler announces; the count
   * it gives is read once the transaction has committed. Elsewhere (SQLite) the same as `run`.
   */
  readonly write: (...params: ReadonlyArray<unknown>) => import("effect").Effect.Effect<() => number, import("effect/sql").SqlError.SqlError, import("effect/sql").SqlClient.SqlClient>
}

/** Marks an app module's default export (`Baton.app(...)` in `@baton/sdk`). */
export const AppModuleTypeId = "~baton/AppModule" as const

/** An app as a module exports it: a name and how to make the app once the runtime's store is up. */
export interface AppModule {
  readonly [AppModuleTypeId]: true
  readonly name: string
  readonly make: (context: AppContext) => Promise<App>
}

export const isAppModule = (u: unknown): u is AppModule =>
  typeof u === "object" && u !== null && (u as Record<string, unknown>)[AppModuleTypeId] === true && typeof (u as AppModule).make === "function"
