/**
 * Order per key across failures (docs/concepts.md, section 4, the caveat): when a message of key K
 * fails, K is held; every later message of K is parked, in arrival order, in the processor's inbox
 * (status `parked`, payload kept); other keys keep flowing. When the failed message is resolved
 * (its repair processed, or discarded), K is released and the parked messages drain one at a time,
 * oldest first, each unparked in the transaction that finished the one before, so that a crash
 * never loses the place and a newer message of K never overtakes them.
 *
 * Every operation but `all` is an effect to compose inside the caller's transaction (the
 * message's, or an operator action's); none opens a transaction of its own. Messages of one key
 * run one at a time on one instance, so the races left are with the operator's actions (discard,
 * resubmit) and the alert sweep: the held row is read `FOR UPDATE` where a decision follows, and
 * the other read-modify-writes are single statements.
 */
import { Effect } from "effect"
import { ddl, Inbox, Postgres, type Sql, type SqlGen, type Store } from "@baton/store"

export const migrations = [
  {
    name: "repair/001-held-keys",
    sql: ddl(
      (t) => `CREATE TABLE held_keys (
      processor TEXT NOT NULL,
      key TEXT NOT NULL,
      failed_id TEXT NOT NULL,
      resubmitted_id TEXT,
      since TEXT NOT NULL,
      parked ${t.int} NOT NULL DEFAULT 0,
      alerted TEXT,
      PRIMARY KEY (processor, key)${t.rowid}
    );
    CREATE INDEX inbox_key ON inbox (processor, key, status);`
    )
  },
  {
    // PostgreSQL: over pending and parked rows only (the statuses read through it), so that a
    // message's done mark adds no entry to it (see the inbox's runtime/010-inbox-pending-only).
    name: "repair/002-inbox-key-open",
    sql: {
      sqlite: "",
      pg: "DROP INDEX IF EXISTS inbox_key; CREATE INDEX inbox_key ON inbox (processor, key, status) WHERE status IN ('pending', 'parked')"
    }
  },
  {
    // SQLite: the same (see the inbox's runtime/011-inbox-pending-only-sqlite). Its planner takes
    // a partial index only for a query that names the index's own terms: the reads of parked
    // rows name them too (`open`).
    name: "repair/004-inbox-key-open-sqlite",
    sql: {
      sqlite: "DROP INDEX IF EXISTS inbox_key; CREATE INDEX inbox_key ON inbox (processor, key, status) WHERE status IN ('pending', 'parked')",
      pg: ""
    }
  }
]

/**
 * `status = 'parked'` as a condition that SQLite's planner matches with inbox_key, whose rows are
 * the pending and parked ones only (PostgreSQL proves the implication itself).
 */
const parkedIn = (dialect: Store["dialect"]): string => (dialect === "sqlite" ? "status IN ('pending', 'parked') AND status = 'parked'" : "status = 'parked'")

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
  resubmittedId: r.resubmitted_id === null || r.resubmitted_id === undefined ? undefined : String(r.resubmitted_id),
  since: String(r.since),
  parked: Number(r.parked),
  alerted: r.alerted === null || r.alerted === undefined ? undefined : String(r.alerted)
})

const columns = "processor, key, failed_id, resubmitted_id, since, parked, alerted"

/** Call after the inbox migrations (the index is on the inbox). */
export const make = async (store: Store) => {
  await store.migrate(migrations)
  const get = store.query(`SELECT ${columns} FROM held_keys WHERE processor = ? AND key = ?`)
  const lock = store.query(`SELECT ${columns} FROM held_keys WHERE processor = ? AND key = ?${Postgres.forUpdate(store.dialect)}`)
  const all = store.query(`SELECT ${columns} FROM held_keys ORDER BY since`)
  const hold = store.query(
    "INSERT INTO held_keys (processor, key, failed_id, since) VALUES (?, ?, ?, ?) ON CONFLICT (processor, key) DO UPDATE SET failed_id = excluded.failed_id, resubmitted_id = NULL"
  )
  const resubmitted = store.query("UPDATE held_keys SET resubmitted_id = ? WHERE processor = ? AND key = ? AND failed_id = ? RETURNING key")
  const release = store.query("DELETE FROM held_keys WHERE processor = ? AND key = ? RETURNING key")
  const park = store.query(`UPDATE inbox SET status = 'parked' WHERE processor = ? AND envelope_id = ? AND ${Inbox.pendingByKey(store.dialect)} RETURNING envelope_id`)
  const count = store.query(`UPDATE held_keys SET parked = parked + 1 WHERE processor = ? AND key = ? RETURNING ${columns}`)
  const alerted = store.query("UPDATE held_keys SET alerted = ? WHERE processor = ? AND key = ? RETURNING key")
  // Adds a reason to a hold's alerts unless it is there already: one alert per hold and reason, even from two instances.
  const alertOnce = store.query(
    `UPDATE held_keys SET alerted = CASE WHEN alerted IS NULL OR alerted = '' THEN ? ELSE alerted || ',' || ? END
       WHERE processor = ? AND key = ? AND (alerted IS NULL OR ',' || alerted || ',' NOT LIKE ?) RETURNING ${columns}`
  )
  const older = store.query(
    `SELECT 1 AS older FROM inbox WHERE processor = ? AND key = ? AND status IN ('pending', 'parked')
       AND rowid < (SELECT rowid FROM inbox WHERE processor = ? AND envelope_id = ?) LIMIT 1`
  )
  // The oldest parked message, unparked in one statement (a concurrent `next` cannot take it twice).
  const unpark = store.query(
    `UPDATE inbox SET status = 'pending' WHERE processor = ? AND status = 'parked' AND envelope_id = (
       SELECT envelope_id FROM inbox WHERE processor = ? AND key = ? AND ${parkedIn(store.dialect)} ORDER BY rowid LIMIT 1
     ) RETURNING envelope_id, topic, payload`
  )
  const parkedOf = store.query(`SELECT COUNT(*) AS n FROM inbox WHERE processor = ? AND key = ? AND ${parkedIn(store.dialect)}`)
  const optional = (r: Record<string, unknown> | undefined) => (r === undefined ? undefined : heldOf(r))
  return {
    held: (processor: string, key: string): Sql<Held | undefined> => Effect.map(get.get(processor, key), optional),
    /** Every hold, oldest first, inside the caller's transaction (the alert sweep). */
    holds: (): Sql<ReadonlyArray<Held>> => Effect.map(all.all(), (rows) => rows.map(heldOf)),
    /** Every hold, oldest first, outside any transaction (the dashboard). */
    all: (): Promise<ReadonlyArray<Held>> => store.run(Effect.map(all.all(), (rows) => rows.map(heldOf))),
    /** Holds `key` because `failedId` failed (inside the failure's transaction). */
    hold: (processor: string, key: string, failedId: string, at: Date): Sql<void> => Effect.asVoid(hold.run(processor, key, failedId, at.toISOString())),
    /** Lets `envelopeId`, the resubmission of the failed message, pass while the key is held. */
    resubmitted: (processor: string, key: string, failedId: string, envelopeId: string): Sql<boolean> =>
      Effect.map(resubmitted.run(envelopeId, processor, key, failedId), (n) => n > 0),
    /**
     * Whether a message must wait: its key is held, or an older message of its key still waits
     * (parked, or unparked and not yet processed). The resubmission of the failed message passes.
     * Locks the hold (PostgreSQL): run it in the transaction that parks the message, so that a
     * discard that releases the key meanwhile waits for the park and then unparks it.
     */
    mustWait: Effect.fnUntraced(function* (processor: string, key: string, envelopeId: string): SqlGen<boolean> {
      const h = yield* lock.get(processor, key)
      if (h !== undefined) return h.resubmitted_id !== envelopeId
      return (yield* older.get(processor, key, processor, envelopeId)) !== undefined
    }),
    /** Parks a pending message; returns the key's hold with its new count (undefined while draining). */
    park: Effect.fnUntraced(function* (processor: string, key: string, envelopeId: string): SqlGen<Held | undefined> {
      if ((yield* park.run(processor, envelopeId)) === 0) return optional(yield* get.get(processor, key))
      return optional(yield* count.get(processor, key))
    }),
    parked: (processor: string, key: string): Sql<number> => Effect.map(parkedOf.get(processor, key), (r) => Number(r?.n ?? 0)),
    /** Sets what was alerted about a hold (`count`, `age`, `count,age`). */
    alerted: (processor: string, key: string, what: string): Sql<void> => Effect.asVoid(alerted.run(what, processor, key)),
    /** Adds `reason` to a hold's alerts unless it is there already; the hold when it was added (then alert). */
    alert: (processor: string, key: string, reason: string): Sql<Held | undefined> =>
      Effect.map(alertOnce.get(reason, reason, processor, key, `%,${reason},%`), optional),
    /** Releases a key (inside the resolution's transaction). */
    release: (processor: string, key: string): Sql<boolean> => Effect.map(release.run(processor, key), (n) => n > 0),
    /**
     * Unparks the oldest parked message of `key` unless the key is held (inside the transaction
     * that finished the message before it); the caller schedules it after the commit.
     */
    next: Effect.fnUntraced(function* (processor: string, key: string): SqlGen<Parked | undefined> {
      if ((yield* get.get(processor, key)) !== undefined) return undefined
      const r = yield* unpark.get(processor, processor, key)
      return r === undefined ? undefined : { envelopeId: String(r.envelope_id), topic: String(r.topic), payload: String(r.payload) }
    })
  }
}

export type Parking = Awaited<ReturnType<typeof make>>
