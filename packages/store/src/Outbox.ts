/**
 * The transactional outbox: what the runtime announces is written in the same transaction as the
 * state change that caused it; a relay publishes it with confirmed sends and deletes it after.
 * After a crash, what is still here is published again: duplicates on the wire, never lost.
 */
import type { QoS } from "@baton/core"
import { Effect } from "effect"
import { ddl, type Sql, type Store } from "./Store.ts"

export const migrations = [
  {
    name: "runtime/002-outbox",
    sql: ddl(
      (t) => `CREATE TABLE outbox (
      seq ${t.serialKey},
      topic TEXT NOT NULL,
      payload TEXT NOT NULL,
      qos ${t.int} NOT NULL,
      created_at TEXT NOT NULL${t.rowid}
    )`
    )
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
export const make = async (store: Store, options: { readonly instance?: string } = {}) => {
  await store.migrate(migrations)
  const instance = options.instance ?? ""
  const insert = store.query("INSERT INTO outbox (topic, payload, qos, created_at, instance) VALUES (?, ?, ?, ?, ?)")
  const insertReturning = store.query("INSERT INTO outbox (topic, payload, qos, created_at, instance) VALUES (?, ?, ?, ?, ?) RETURNING seq")
  const pending = store.query("SELECT seq, topic, payload, qos FROM outbox WHERE instance = ? ORDER BY seq LIMIT ?")
  const remove = store.query("DELETE FROM outbox WHERE seq <= ? AND seq >= ? AND instance = ?")
  const count = store.query("SELECT COUNT(*) AS n FROM outbox WHERE instance = ?")
  const adopt = store.query("UPDATE outbox SET instance = ? WHERE instance = ? RETURNING seq")
  return {
    /** Adds a message to publish; call inside the transaction of the change that caused it. */
    add: (topic: string, payload: string, qos: QoS = 1): Sql<void> => Effect.asVoid(insert.write(topic, payload, qos, new Date().toISOString(), instance)),
    /**
     * `add`, giving the entry as written (with its sequence number), to read once the transaction
     * has committed: for the relay's `offer` (publishing it at once when nothing older is unsent).
     */
    added: (topic: string, payload: string, qos: QoS = 1): Sql<() => Entry> =>
      Effect.map(insertReturning.writeRows(topic, payload, qos, new Date().toISOString(), instance), (rows) => () => ({ seq: Number(rows()[0]?.seq), topic, payload, qos })),
    pending: (limit: number): Promise<ReadonlyArray<Entry>> =>
      store.run(
        Effect.map(pending.all(instance, limit), (rows) =>
          rows.map((r) => ({ seq: Number(r.seq), topic: String(r.topic), payload: String(r.payload), qos: Number(r.qos) as QoS }))
        )
      ),
    /** Deletes the entries from `first` to `last` (a contiguous run that `pending` returned). */
    sent: (first: number, last: number): Promise<void> => store.run(Effect.asVoid(remove.run(last, first, instance))),
    size: (): Promise<number> => store.run(Effect.map(count.get(instance), (r) => Number(r?.n ?? 0))),
    /** Takes over the unsent entries of dead instances; returns how many. */
    adopt: (dead: ReadonlyArray<string>): Promise<number> =>
      store.transaction(Effect.reduce(dead, () => 0, (n, d) => Effect.map(adopt.run(instance, d), (m) => n + m)))
  }
}

export type Outbox = Awaited<ReturnType<typeof make>>
