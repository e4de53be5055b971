/**
 * Where workflow state lives: in the runtime's store (embedded SQLite by default, PostgreSQL when
 * `BATON_DATABASE_URL` is set), saved in the transaction of the mediator input it answers, with
 * that answer's effects and the input's `done` mark: after a crash, either all of them are there or
 * none, and the input is redelivered.
 */
import { ddl, Page, type Sql, type Store } from "@baton/store"
import { Effect } from "effect"
import type { Effect as Step, State } from "./Machine.ts"

export interface Saved extends State {
  /** The mediator queue entry this state answers (for the record). */
  readonly lastInput: string
  /**
   * The effects of the transition to this state, sent in the same transaction. In memory only (for
   * the mediator's steps after the commit): they are not stored, and a loaded state has none.
   */
  readonly lastEffects: ReadonlyArray<Step>
  /**
   * The version of the stored row this state is (a loaded one), or will be once its transaction
   * commits (a new one: the version it was computed from, plus one). Each write asserts the row is
   * still at the version before (absent or 0: no row), so a state computed from a stale copy (a
   * mediator's memory after another instance moved the workflow) is never written over a newer one.
   */
  readonly version?: number
}

/** The version a write of `state` expects the stored row at by default (0: no row): the one before it. */
const before = (state: Saved): number => (state.version ?? 1) - 1

export interface Filter {
  readonly status?: string
  readonly domain?: string
  readonly limit?: number
}

export interface WorkflowStore {
  readonly kind: "sqlite" | "postgres"
  /** Reads outside any transaction (a mediator's `prepare`, the HTTP API). */
  readonly load: (id: string) => Promise<Saved | undefined>
  /**
   * Saves or deletes inside the caller's transaction (the store is the inboxes' own), so the state,
   * its effects and the input's `done` mark commit together: compose them into the input's handling.
   * Both only where the stored row is at version `expected` (by default the state's `version - 1`;
   * 0: no row), and succeed with whether it was: false when another writer moved it meanwhile. A
   * saved row takes the state's version (a run of inputs written once skips the versions between).
   */
  readonly save: (state: Saved, expected?: number) => Sql<boolean>
  readonly remove: (state: Saved, expected?: number) => Sql<boolean>
  readonly list: (filter: Filter) => Promise<ReadonlyArray<Saved>>
  /** A page of workflows by last change (oldest first, or newest with `desc`), for the HTTP API. */
  readonly page: (filter: Omit<Filter, "limit">, req: Page.Request) => Promise<Page.Page<Saved>>
  readonly close: () => Promise<void>
}

export const migrations = [
  {
    name: "mediator-1-workflows",
    sql: ddl(
      (t) => `CREATE TABLE IF NOT EXISTS workflows (
      id TEXT PRIMARY KEY,
      domain TEXT NOT NULL,
      workflow TEXT NOT NULL,
      status TEXT NOT NULL,
      state TEXT NOT NULL,
      updated_at TEXT NOT NULL${t.rowid}
    );
    CREATE INDEX workflows_status ON workflows (status, updated_at);`
    )
  },
  {
    // Each write bumps it and asserts the one before (`Saved.version`). Rows written before it are at 1.
    name: "mediator-2-workflow-version",
    sql: ddl((t) => `ALTER TABLE workflows ADD COLUMN version ${t.int} NOT NULL DEFAULT 1`)
  }
]

const savedOf = (r: Record<string, unknown>): Saved => ({ ...(JSON.parse(String(r.state)) as Saved), lastEffects: [], version: Number(r.version) })

/**
 * The stored text of a state: without its effects, which were sent with it (a command's data, an
 * announcement's: up to a third of a workflow's text).
 */
const stateText = ({ lastEffects: _effects, version: _version, ...state }: Saved): string => JSON.stringify(state)


const conditions = ({ status, domain }: { readonly status?: string | undefined; readonly domain?: string | undefined }) => ({
  where: [status === undefined ? undefined : "status = ?", domain === undefined ? undefined : "domain = ?"].filter((w) => w !== undefined),
  params: [status, domain].filter((p) => p !== undefined)
})

/** Last change first, the id breaking ties. */
const byChange: ReadonlyArray<Page.Key> = [
  { column: "updated_at", kind: "text" },
  { column: "id", kind: "text" }
]

export const inStore = async (store: Store): Promise<WorkflowStore> => {
  await store.migrate(migrations)
  const load = store.query("SELECT state, version FROM workflows WHERE id = ?")
  // A first version is inserted (a row already there is a conflict: its version is at least 1); a later one replaces the version before it.
  const upsert = store.query(
    "INSERT INTO workflows (id, domain, workflow, status, state, updated_at, version) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET status = excluded.status, state = excluded.state, updated_at = excluded.updated_at, version = excluded.version WHERE workflows.version = ? RETURNING version"
  )
  const remove = store.query("DELETE FROM workflows WHERE id = ? AND version = ? RETURNING version")
  return {
    kind: store.kind,
    load: (id) => store.run(Effect.map(load.get(id), (row) => (row === undefined ? undefined : savedOf(row)))),
    save: (s, expected = before(s)) => Effect.map(upsert.run(s.id, s.domain, s.workflow, s.status, stateText(s), s.updatedAt, s.version ?? 1, expected), (n) => n === 1),
    // (A workflow finished by its first transition has no row to remove.)
    remove: (s, expected = before(s)) => (expected === 0 ? Effect.succeed(true) : Effect.map(remove.run(s.id, expected), (n) => n === 1)),
    list: ({ status, domain, limit = 1000 }) => {
      const { where, params } = conditions({ status, domain })
      const query = store.query(`SELECT state, version FROM workflows ${where.length === 0 ? "" : `WHERE ${where.join(" AND ")}`} ORDER BY updated_at LIMIT ?`)
      return store.run(Effect.map(query.all(...params, limit), (rows) => rows.map(savedOf)))
    },
    page: async (filter, req) => {
      const { items, next } = await Page.page(store, { select: "state, version", from: "workflows", ...conditions(filter), keys: byChange }, req)
      return { items: items.map(savedOf), next }
    },
    close: async () => {}
  }
}

/** The same (the name of the other stores' constructors). */
export const make = inStore
