/**
 * Where workflow state lives: the embedded SQLite store by default, PostgreSQL when
 * `BATON_DATABASE_URL` is set. A saved state records the mediator input it answered and the effects
 * of that answer, so that an input redelivered after a crash replays them instead of applying twice.
 */
import pg from "pg"
import type { Store } from "@baton/store"
import type { Effect, State } from "./Machine.ts"

export interface Saved extends State {
  /** The mediator queue entry this state answers. */
  readonly lastInput: string
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
  readonly save: (state: Saved) => Promise<void>
  /**
   * For a store in the same database as the inboxes (SQLite): saves or deletes inside the caller's
   * transaction, so the state, its effects and the input's `done` mark commit together.
   */
  readonly inline?: { readonly save: (state: Saved) => void; readonly remove: (id: string) => void }
  readonly remove: (id: string) => Promise<void>
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

export const sqlite = (store: Store): WorkflowStore => {
  store.migrate([{ name: "mediator-1-workflows", sql: `${createTable}; CREATE INDEX workflows_status ON workflows (status, updated_at);` }])
  const db = store.db
  const load = db.prepare("SELECT state FROM workflows WHERE id = ?")
  const upsert = db.prepare(
    "INSERT INTO workflows (id, domain, workflow, status, state, updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET status = excluded.status, state = excluded.state, updated_at = excluded.updated_at"
  )
  const remove = db.prepare("DELETE FROM workflows WHERE id = ?")
  return {
    kind: "sqlite",
    load: async (id) => {
      const row = load.get(id)
      return row === undefined ? undefined : (JSON.parse(String(row.state)) as Saved)
    },
    save: async (s) => {
      store.transaction(() => upsert.run(s.id, s.domain, s.workflow, s.status, JSON.stringify(s), s.updatedAt))
    },
    inline: {
      save: (s) => void upsert.run(s.id, s.domain, s.workflow, s.status, JSON.stringify(s), s.updatedAt),
      remove: (id) => void remove.run(id)
    },
    remove: async (id) => {
      store.transaction(() => remove.run(id))
    },
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
export const postgres = async (url: string): Promise<WorkflowStore> => {
  const pool = new pg.Pool({ connectionString: url, max: 4 })
  pool.on("error", () => {}) // an idle client's error surfaces on the next query
  const client = await pool.connect()
  try {
    await client.query("SELECT pg_advisory_lock(4242001)")
    await client.query(`CREATE TABLE IF NOT EXISTS baton_workflows (
      id TEXT PRIMARY KEY, domain TEXT NOT NULL, workflow TEXT NOT NULL, status TEXT NOT NULL,
      state JSONB NOT NULL, updated_at TIMESTAMPTZ NOT NULL)`)
    await client.query("CREATE INDEX IF NOT EXISTS baton_workflows_status ON baton_workflows (status, updated_at)")
  } finally {
    await client.query("SELECT pg_advisory_unlock(4242001)").catch(() => undefined)
    client.release()
  }
  return {
    kind: "postgres",
    load: async (id) => {
      const r = await pool.query<{ state: Saved }>("SELECT state FROM baton_workflows WHERE id = $1", [id])
      return r.rows[0]?.state
    },
    save: async (s) => {
      await pool.query(
        `INSERT INTO baton_workflows (id, domain, workflow, status, state, updated_at) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, state = EXCLUDED.state, updated_at = EXCLUDED.updated_at`,
        [s.id, s.domain, s.workflow, s.status, JSON.stringify(s), s.updatedAt]
      )
    },
    remove: async (id) => {
      await pool.query("DELETE FROM baton_workflows WHERE id = $1", [id])
    },
    list: async ({ status, domain, limit = 1000 }) => {
      const r = await pool.query<{ state: Saved }>(
        "SELECT state FROM baton_workflows WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR domain = $2) ORDER BY updated_at LIMIT $3",
        [status ?? null, domain ?? null, limit]
      )
      return r.rows.map((row) => row.state)
    },
    close: () => pool.end()
  }
}
