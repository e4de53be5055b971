/**
 * A processor's durable inbox: a message is acknowledged to the broker once it is here, and
 * processed from here. Its envelope id is the primary key, so a redelivered message is recognised
 * and not applied twice; the row is marked done in the transaction that applies its effects.
 */
import type { Store } from "./Sqlite.ts"

export const migrations = [
  {
    name: "runtime/003-inbox",
    sql: `CREATE TABLE inbox (
      processor TEXT NOT NULL,
      envelope_id TEXT NOT NULL,
      topic TEXT NOT NULL,
      key TEXT NOT NULL,
      payload TEXT NOT NULL,
      status TEXT NOT NULL,
      received_at TEXT NOT NULL,
      done_at TEXT,
      PRIMARY KEY (processor, envelope_id)
    );
    CREATE INDEX inbox_pending ON inbox (processor, status);`
  },
  {
    // The cluster partition of the key, for the instance that owns it (0 for a single instance).
    name: "runtime/006-inbox-partition",
    sql: "ALTER TABLE inbox ADD COLUMN part INTEGER NOT NULL DEFAULT 0; CREATE INDEX inbox_part ON inbox (status, part)"
  }
]

export type Status = "pending" | "done" | "failed"

export interface Entry {
  readonly envelopeId: string
  readonly topic: string
  readonly key: string
  readonly payload: string
}

/** FNV-1a: a stable partition for a key. */
export const partitionOf = (key: string, partitions: number): number => {
  let h = 0x811c9dc5
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193)
  return (h >>> 0) % partitions
}

export const make = (
  store: Store,
  options: {
    /** Cluster partitions (1 for a single instance). */
    readonly partitions?: number
    /** Called inside the receiving transaction with the new entry's partition (wakes its owner). */
    readonly notify?: (part: number) => void
  } = {}
) => {
  store.migrate(migrations)
  const db = store.db
  const partitions = options.partitions ?? 1
  const insert = db.prepare(
    "INSERT OR IGNORE INTO inbox (processor, envelope_id, topic, key, payload, status, received_at, part) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)"
  )
  const status = db.prepare("SELECT status FROM inbox WHERE processor = ? AND envelope_id = ?")
  const settle = db.prepare("UPDATE inbox SET status = ?, done_at = ?, payload = '' WHERE processor = ? AND envelope_id = ? AND status = 'pending'")
  const pending = db.prepare("SELECT envelope_id, topic, key, payload FROM inbox WHERE processor = ? AND status = 'pending' ORDER BY rowid")
  const prune = db.prepare("DELETE FROM inbox WHERE status <> 'pending' AND done_at < ?")
  return {
    /** Records a received message; false when it was already here (a redelivery). */
    receive: (processor: string, entry: Entry): boolean =>
      store.transaction(() => {
        const part = partitionOf(entry.key, partitions)
        const fresh = insert.run(processor, entry.envelopeId, entry.topic, entry.key, entry.payload, new Date().toISOString(), part).changes > 0
        if (fresh) options.notify?.(part)
        return fresh
      }),
    status: (processor: string, envelopeId: string): Status | undefined => status.get(processor, envelopeId)?.status as Status | undefined,
    /** Marks a pending message processed (or failed); call inside the transaction of its effects. */
    settle: (processor: string, envelopeId: string, outcome: "done" | "failed"): boolean =>
      settle.run(outcome, new Date().toISOString(), processor, envelopeId).changes > 0,
    /**
     * Forgets settled messages settled before `before`: a redelivery older than that would be
     * applied again, so the retention is the deduplication window.
     */
    prune: (before: Date): number => store.transaction(() => Number(prune.run(before.toISOString()).changes)),
    /** Messages received but not yet processed, in arrival order (recovery after a crash). */
    pending: (processor: string): ReadonlyArray<Entry> => pending.all(processor).map(entryOf),
    /** The same, for the given cluster partitions only (a partition this instance just acquired). */
    pendingIn: (processor: string, parts: ReadonlyArray<number>): ReadonlyArray<Entry> =>
      parts.length === 0
        ? []
        : db
            .prepare(`SELECT envelope_id, topic, key, payload FROM inbox WHERE status = 'pending' AND processor = ? AND part IN (${parts.map(() => "?").join(", ")}) ORDER BY rowid`)
            .all(processor, ...parts)
            .map(entryOf)
  }
}

const entryOf = (r: Record<string, unknown>): Entry => ({ envelopeId: String(r.envelope_id), topic: String(r.topic), key: String(r.key), payload: String(r.payload) })

export type Inbox = ReturnType<typeof make>
