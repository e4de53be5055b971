/** The record of every refused or failed message: nothing is dropped without a row here. */
import type { Rejection } from "@baton/core"
import type { Store } from "./Sqlite.ts"

export interface Recorded extends Rejection {
  readonly id: string
  readonly at: string
}

export const migrations = [
  {
    name: "runtime/001-rejections",
    sql: `CREATE TABLE rejections (
      id TEXT PRIMARY KEY,
      at TEXT NOT NULL,
      kind TEXT NOT NULL,
      topic TEXT NOT NULL,
      reason TEXT NOT NULL,
      body TEXT NOT NULL
    );
    CREATE INDEX rejections_at ON rejections (at);`
  }
]

export const make = (store: Store) => {
  store.migrate(migrations)
  const insert = store.db.prepare("INSERT INTO rejections (id, at, kind, topic, reason, body) VALUES (?, ?, ?, ?, ?, ?)")
  const recent = store.db.prepare("SELECT id, at, body FROM rejections ORDER BY at DESC, rowid DESC LIMIT ?")
  const count = store.db.prepare("SELECT kind, COUNT(*) AS n FROM rejections GROUP BY kind")
  return {
    record: (id: string, at: Date, rejection: Rejection): Recorded => {
      const row: Recorded = { id, at: at.toISOString(), ...rejection }
      insert.run(id, row.at, rejection.kind, rejection.topic, rejection.reason, JSON.stringify(rejection))
      return row
    },
    recent: (limit: number): ReadonlyArray<Recorded> =>
      recent.all(limit).map((r) => ({ id: String(r.id), at: String(r.at), ...(JSON.parse(String(r.body)) as Rejection) })),
    counts: (): Record<string, number> =>
      Object.fromEntries(count.all().map((r) => [String(r.kind), Number(r.n)]))
  }
}

export type Log = ReturnType<typeof make>
