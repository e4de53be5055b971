/** The record of every refused or failed message: nothing is dropped without a row here. */
import type { Rejection } from "@baton/core"
import { Effect } from "effect"
import * as Page from "./Page.ts"
import { ddl, type Row, type Sql, type Store } from "./Store.ts"

export interface Recorded extends Rejection {
  readonly id: string
  readonly at: string
}

export const migrations = [
  {
    name: "runtime/001-rejections",
    sql: ddl(
      (t) => `CREATE TABLE rejections (
      id TEXT PRIMARY KEY,
      at TEXT NOT NULL,
      kind TEXT NOT NULL,
      topic TEXT NOT NULL,
      reason TEXT NOT NULL,
      body TEXT NOT NULL${t.rowid}
    );
    CREATE INDEX rejections_at ON rejections (at);`
    )
  }
]

const recordedOf = (r: Row): Recorded => ({ id: String(r.id), at: String(r.at), ...(JSON.parse(String(r.body)) as Rejection) })

export const make = async (store: Store) => {
  await store.migrate(migrations)
  const insert = store.query("INSERT INTO rejections (id, at, kind, topic, reason, body) VALUES (?, ?, ?, ?, ?, ?)")
  const recent = store.query("SELECT id, at, body FROM rejections ORDER BY at DESC, rowid DESC LIMIT ?")
  const count = store.query("SELECT kind, COUNT(*) AS n FROM rejections GROUP BY kind")
  return {
    /** Records a rejection, inside the caller's transaction. */
    record: (id: string, at: Date, rejection: Rejection): Sql<Recorded> => {
      const row: Recorded = { id, at: at.toISOString(), ...rejection }
      return Effect.as(insert.run(id, row.at, rejection.kind, rejection.topic, rejection.reason, JSON.stringify(rejection)), row)
    },
    recent: (limit: number): Promise<ReadonlyArray<Recorded>> =>
      store.run(Effect.map(recent.all(limit), (rows) => rows.map(recordedOf))),
    /** A page of rejections in the order they were recorded (`desc`: newest first). */
    page: async (req: Page.Request): Promise<Page.Page<Recorded>> => {
      const { items, next } = await Page.page(store, { select: "id, at, body", from: "rejections", keys: Page.arrival }, req)
      return { items: items.map(recordedOf), next }
    },
    counts: (): Promise<Record<string, number>> => store.run(Effect.map(count.all(), (rows) => Object.fromEntries(rows.map((r) => [String(r.kind), Number(r.n)]))))
  }
}

export type Log = Awaited<ReturnType<typeof make>>
