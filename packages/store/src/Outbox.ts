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
  },
  {
    // The instance whose relay publishes the entry (a cluster shares the table).
    name: "runtime/007-outbox-instance",
    sql: "ALTER TABLE outbox ADD COLUMN instance TEXT NOT NULL DEFAULT ''"
  }
]

export interface Entry {
  readonly seq: number
  readonly topic: string
  readonly payload: string
  readonly qos: QoS
}

/** `instance`: in a cluster, this instance's relay publishes only its own entries (and those it adopts). */
export const make = (store: Store, options: { readonly instance?: string } = {}) => {
  store.migrate(migrations)
  const instance = options.instance ?? ""
  const insert = store.db.prepare("INSERT INTO outbox (topic, payload, qos, created_at, instance) VALUES (?, ?, ?, ?, ?)")
  const pending = store.db.prepare("SELECT seq, topic, payload, qos FROM outbox WHERE instance = ? ORDER BY seq LIMIT ?")
  const remove = store.db.prepare("DELETE FROM outbox WHERE seq <= ? AND seq >= ? AND instance = ?")
  const count = store.db.prepare("SELECT COUNT(*) AS n FROM outbox WHERE instance = ?")
  const adopt = store.db.prepare("UPDATE outbox SET instance = ? WHERE instance = ?")
  return {
    /** Adds a message to publish; call inside the transaction of the change that caused it. */
    add: (topic: string, payload: string, qos: QoS = 1): void => {
      insert.run(topic, payload, qos, new Date().toISOString(), instance)
    },
    pending: (limit: number): ReadonlyArray<Entry> =>
      pending.all(instance, limit).map((r) => ({ seq: Number(r.seq), topic: String(r.topic), payload: String(r.payload), qos: Number(r.qos) as QoS })),
    /** Deletes the entries from `first` to `last` (a contiguous run that `pending` returned). */
    sent: (first: number, last: number): void => {
      store.transaction(() => remove.run(last, first, instance))
    },
    size: (): number => Number(count.get(instance)?.n ?? 0),
    /** Takes over the unsent entries of dead instances; returns how many. */
    adopt: (dead: ReadonlyArray<string>): number => store.transaction(() => dead.reduce((n, d) => n + Number(adopt.run(instance, d).changes), 0))
  }
}

export type Outbox = ReturnType<typeof make>
