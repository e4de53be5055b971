/**
 * Where workflow state lives: in the runtime's store (embedded SQLite by default, PostgreSQL when
 * `BATON_DATABASE_URL` is set), saved in the transaction of the mediator input it answers, with
 * that answer's effects and the input's `done` mark: after a crash, either all of them are there or
 * none, and the input is redelivered.
 */
import type { Store } from "@baton/store"
import type { Effect, State } from "./Machine.ts"

export interface Saved extends State {
  /** The mediator queue entry this state answers (for the record). */
  readonly lastInput: string
  /** The effects of the transition to this state, sent in the same transaction. */
  readonly lastEffects: ReadonlyArray<Effect>
}

export interface Filter {
  readonly status?: string
  readonly domain?: string
  readonly limit?: number
}

export interface WorkflowStore {
  readonly kind: "sqlite" | "postgres"
  readonly load: (id: string) => Promise<Saved | undefined>
  /**
   * Saves or deletes inside the caller's transaction (the store is the inboxes' own), so the state,
   * its effects and the input's `done` mark commit together.
   */
  readonly save: (state: Saved) => void
  readonly remove: (id: string) => void
  readonly list: (filter: Filter) => Promise<ReadonlyArray<Saved>>
  readonly close: () => Promise<void>
}

const createTable = `CREATE TABLE IF NOT EXISTS workflows (
  id TEXT PRIMARY KEY,
  domain TEXT NOT NULL,
  workflow TEXT NOT NULL,
  status TEXT NOT NULL,
  state TEXT NOT NULL,
  updated_at TEXT NOT NULL
)`

export const inStore = (store: Store): WorkflowStore => {
  store.migrate([{ name: "mediator-1-workflows", sql: `${createTable}; CREATE INDEX workflows_status ON workflows (status, updated_at);` }])
  const db = store.db
  const load = db.prepare("SELECT state FROM workflows WHERE id = ?")
  const upsert = db.prepare(
    "INSERT INTO workflows (id, domain, workflow, status, state, updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET status = excluded.status, state = excluded.state, updated_at = excluded.updated_at"
  )
  const remove = db.prepare("DELETE FROM workflows WHERE id = ?")
  return {
    kind: store.kind,
    load: async (id) => {
      const row = load.get(id)
      return row === undefined ? undefined : (JSON.parse(String(row.state)) as Saved)
    },
    save: (s) => void upsert.run(s.id, s.domain, s.workflow, s.status, JSON.stringify(s), s.updatedAt),
    remove: (id) => void remove.run(id),
    list: async ({ status, domain, limit = 1000 }) => {
      const where = [status === undefined ? undefined : "status = ?", domain === undefined ? undefined : "domain = ?"].filter((w) => w !== undefined)
      const params = [status, domain].filter((p) => p !== undefined)
      return db
        .prepare(`SELECT state FROM workflows ${where.length === 0 ? "" : `WHERE ${where.join(" AND ")}`} ORDER BY updated_at LIMIT ?`)
        .all(...params, limit)
        .map((r) => JSON.parse(String(r.state)) as Saved)
    },
    close: async () => {}
  }
}

/**
 * PostgreSQL: one row per workflow, the state as JSONB. The table is created under an advisory
 * lock, so instances starting at once do not race on it.
 */
