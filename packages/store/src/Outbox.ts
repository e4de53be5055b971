/**
 * The transactional outbox: what the runtime announces is written in the same transaction as the
 * state change that caused it; a relay publishes it with confirmed sends and deletes it after.
 * After a crash, what is still here is published again: duplicates on the wire, never lost.
 */
import type { QoS } from "@baton/core"
import type { Store } from "./Sqlite.ts"

export const migrations = [
  {
    name: "runtime/002-outbox",
    sql: `CREATE TABLE outbox (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      topic TEXT NOT NULL,
      payload TEXT NOT NULL,
      qos INTEGER NOT NULL,
      created_at TEXT NOT NULL
    )`
  }
]

export interface Entry {
  readonly seq: number
  readonly topic: string
  readonly payload: string
  readonly qos: QoS
}

export const make = (store: Store) => {
  store.migrate(migrations)
  const insert = store.db.prepare("INSERT INTO outbox (topic, payload, qos, created_at) VALUES (?, ?, ?, ?)")
  const pending = store.db.prepare("SELECT seq, topic, payload, qos FROM outbox ORDER BY seq LIMIT ?")
  const remove = store.db.prepare("DELETE FROM outbox WHERE seq <= ? AND seq >= ?")
  const count = store.db.prepare("SELECT COUNT(*) AS n FROM outbox")
  return {
    /** Adds a message to publish; call inside the transaction of the change that caused it. */
    add: (topic: string, payload: string, qos: QoS = 1): void => {
      insert.run(topic, payload, qos, new Date().toISOString())
    },
    pending: (limit: number): ReadonlyArray<Entry> =>
      pending.all(limit).map((r) => ({ seq: Number(r.seq), topic: String(r.topic), payload: String(r.payload), qos: Number(r.qos) as QoS })),
    /** Deletes the entries from `first` to `last` (a contiguous run that `pending` returned). */
    sent: (first: number, last: number): void => {
      store.transaction(() => remove.run(last, first))
    },
    size: (): number => Number(count.get()?.n ?? 0)
  }
}

export type Outbox = ReturnType<typeof make>
