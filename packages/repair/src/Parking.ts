/**
 * Order per key across failures (EDA-NOTES.md, section 4, the caveat): when a message of key K
 * fails, K is held; every later message of K is parked, in arrival order, in the processor's inbox
 * (status `parked`, payload kept); other keys keep flowing. When the failed message is resolved
 * (its repair processed, or discarded), K is released and the parked messages drain one at a time,
 * oldest first, each unparked in the transaction that finished the one before, so that a crash
 * never loses the place and a newer message of K never overtakes them.
 */
import type { Store } from "@baton/store"

export const migrations = [
  {
    name: "repair/001-held-keys",
    sql: `CREATE TABLE held_keys (
      processor TEXT NOT NULL,
      key TEXT NOT NULL,
      failed_id TEXT NOT NULL,
      resubmitted_id TEXT,
      since TEXT NOT NULL,
      parked INTEGER NOT NULL DEFAULT 0,
      alerted TEXT,
      PRIMARY KEY (processor, key)
    );
    CREATE INDEX inbox_key ON inbox (processor, key, status);`
  }
]

export interface Held {
  readonly processor: string
  readonly key: string
  /** The message whose failure holds the key. */
  readonly failedId: string
  /** Its repaired or corrected resubmission, which may pass while the key is held. */
  readonly resubmittedId: string | undefined
  readonly since: string
  readonly parked: number
  /** What was alerted about this hold: `count`, `age`, or both. */
  readonly alerted: string | undefined
}

export interface Parked {
  readonly envelopeId: string
  readonly topic: string
  readonly payload: string
}

const heldOf = (r: Record<string, unknown>): Held => ({
  processor: String(r.processor),
  key: String(r.key),
  failedId: String(r.failed_id),
  resubmittedId: r.resubmitted_id === null ? undefined : String(r.resubmitted_id),
  since: String(r.since),
  parked: Number(r.parked),
  alerted: r.alerted === null ? undefined : String(r.alerted)
})

/** Call after the inbox migrations (the index is on the inbox). */
export const make = (store: Store) => {
  store.migrate(migrations)
  const db = store.db
  const get = db.prepare("SELECT * FROM held_keys WHERE processor = ? AND key = ?")
  const all = db.prepare("SELECT * FROM held_keys ORDER BY since")
  const hold = db.prepare(
    "INSERT INTO held_keys (processor, key, failed_id, since) VALUES (?, ?, ?, ?) ON CONFLICT (processor, key) DO UPDATE SET failed_id = excluded.failed_id, resubmitted_id = NULL"
  )
  const resubmitted = db.prepare("UPDATE held_keys SET resubmitted_id = ? WHERE processor = ? AND key = ? AND failed_id = ?")
  const release = db.prepare("DELETE FROM held_keys WHERE processor = ? AND key = ?")
  const park = db.prepare("UPDATE inbox SET status = 'parked' WHERE processor = ? AND envelope_id = ? AND status = 'pending'")
  const count = db.prepare("UPDATE held_keys SET parked = parked + 1 WHERE processor = ? AND key = ?")
  const alerted = db.prepare("UPDATE held_keys SET alerted = ? WHERE processor = ? AND key = ?")
  const older = db.prepare(
    `SELECT 1 FROM inbox WHERE processor = ? AND key = ? AND status IN ('pending', 'parked')
       AND rowid < (SELECT rowid FROM inbox WHERE processor = ? AND envelope_id = ?) LIMIT 1`
  )
  const oldest = db.prepare("SELECT envelope_id, topic, payload FROM inbox WHERE processor = ? AND key = ? AND status = 'parked' ORDER BY rowid LIMIT 1")
  const unpark = db.prepare("UPDATE inbox SET status = 'pending' WHERE processor = ? AND envelope_id = ? AND status = 'parked'")
  const parkedOf = db.prepare("SELECT COUNT(*) AS n FROM inbox WHERE processor = ? AND key = ? AND status = 'parked'")
  return {
    held: (processor: string, key: string): Held | undefined => {
      const r = get.get(processor, key)
      return r === undefined ? undefined : heldOf(r)
    },
    all: (): ReadonlyArray<Held> => all.all().map(heldOf),
    /** Holds `key` because `failedId` failed (inside the failure's transaction). */
    hold: (processor: string, key: string, failedId: string, at: Date): void => {
      hold.run(processor, key, failedId, at.toISOString())
    },
    /** Lets `envelopeId`, the resubmission of the failed message, pass while the key is held. */
    resubmitted: (processor: string, key: string, failedId: string, envelopeId: string): boolean =>
      resubmitted.run(envelopeId, processor, key, failedId).changes > 0,
    /**
     * Whether a message must wait: its key is held, or an older message of its key still waits
     * (parked, or unparked and not yet processed). The resubmission of the failed message passes.
     */
    mustWait: (processor: string, key: string, envelopeId: string): boolean => {
      const h = get.get(processor, key)
      if (h !== undefined) return h.resubmitted_id !== envelopeId
      return older.get(processor, key, processor, envelopeId) !== undefined
    },
    /** Parks a pending message; returns the key's hold with its new count (undefined while draining). */
    park: (processor: string, key: string, envelopeId: string): Held | undefined => {
      park.run(processor, envelopeId)
      count.run(processor, key)
      const r = get.get(processor, key)
      return r === undefined ? undefined : heldOf(r)
    },
    parked: (processor: string, key: string): number => Number(parkedOf.get(processor, key)?.n ?? 0),
    alerted: (processor: string, key: string, what: string): void => {
      alerted.run(what, processor, key)
    },
    /** Releases a key (inside the resolution's transaction). */
    release: (processor: string, key: string): boolean => release.run(processor, key).changes > 0,
    /**
     * Unparks the oldest parked message of `key` unless the key is held (inside the transaction
     * that finished the message before it); the caller schedules it after the commit.
     */
    next: (processor: string, key: string): Parked | undefined => {
      if (get.get(processor, key) !== undefined) return undefined
      const r = oldest.get(processor, key)
      if (r === undefined) return undefined
      unpark.run(processor, String(r.envelope_id))
      return { envelopeId: String(r.envelope_id), topic: String(r.topic), payload: String(r.payload) }
    }
  }
}

export type Parking = ReturnType<typeof make>
