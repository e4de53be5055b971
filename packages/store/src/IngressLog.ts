/**
 * The durable ingress log: an initiating event is committed here before the broker acknowledges
 * it to the publisher (Aedes sends a QoS 1 PUBACK before storing, PLATFORM-FACTS.md), and
 * forwarded from here. Appends arriving together share one transaction (group commit).
 */
import type { Store } from "./Sqlite.ts"

export const migrations = [
  {
    name: "runtime/004-ingress",
    sql: `CREATE TABLE ingress_log (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      topic TEXT NOT NULL,
      payload BLOB NOT NULL,
      size INTEGER NOT NULL,
      client_id TEXT,
      received_at TEXT NOT NULL,
      forwarded_at TEXT
    );
    CREATE INDEX ingress_unforwarded ON ingress_log (forwarded_at) WHERE forwarded_at IS NULL;
    CREATE TABLE ingress_seen (envelope_id TEXT PRIMARY KEY, seq INTEGER NOT NULL);`
  },
  {
    // The instance that forwards the entry (a cluster shares the table).
    name: "runtime/008-ingress-instance",
    sql: "ALTER TABLE ingress_log ADD COLUMN instance TEXT NOT NULL DEFAULT ''"
  }
]

export interface Entry {
  readonly seq: number
  readonly topic: string
  readonly payload: Buffer
  /** Size of the original payload; `payload` holds only a preview of an oversized one. */
  readonly size: number
  readonly clientId: string | null
}

export const make = (
  store: Store,
  options: {
    readonly previewBytes: number
    readonly maxBytes: number
    /** Called with a batch written but not committed yet (a kill point for the crash tests). */
    readonly beforeCommit?: () => void
    /** In a cluster: this instance forwards only its own entries (and those it adopts). */
    readonly instance?: string
    /**
     * Runs right after a batch commits, before any publisher is acknowledged (a cluster forwards
     * there: once a publisher has its PUBACK, the event is already routed, so a later event of
     * the same key sent to another instance cannot overtake it). When it throws, the batch stays
     * committed but its publishers are not acknowledged: the broker sends the messages again, and
     * the copies are forwarded after the originals (the same envelope id is taken once).
     */
    readonly afterCommit?: () => void
    /**
     * Runs inside each append's transaction, before the inserts; throwing refuses the batch. A
     * cluster on an external broker checks there that this instance still holds the ingress
     * session (a former holder cannot log what the new one is taking).
     */
    readonly fence?: () => void
  }
) => {
  store.migrate(migrations)
  const db = store.db
  const instance = options.instance ?? ""
  const insert = db.prepare("INSERT INTO ingress_log (topic, payload, size, client_id, received_at, instance) VALUES (?, ?, ?, ?, ?, ?)")
  const unforwarded = db.prepare("SELECT seq, topic, payload, size, client_id FROM ingress_log WHERE forwarded_at IS NULL AND instance = ? ORDER BY seq LIMIT ?")
  const adopt = db.prepare("UPDATE ingress_log SET instance = ? WHERE forwarded_at IS NULL AND instance = ?")
  const forwarded = db.prepare("UPDATE ingress_log SET forwarded_at = ? WHERE seq = ?")
  const seen = db.prepare("INSERT OR IGNORE INTO ingress_seen (envelope_id, seq) VALUES (?, ?)")
  const lastForwarded = db.prepare("SELECT MAX(seq) AS seq FROM ingress_log WHERE forwarded_at IS NOT NULL AND forwarded_at < ?")
  const pruneLog = db.prepare("DELETE FROM ingress_log WHERE forwarded_at IS NOT NULL AND seq <= ?")
  const pruneSeen = db.prepare("DELETE FROM ingress_seen WHERE seq <= ?")

  let batch: Array<{ readonly topic: string; readonly payload: Buffer; readonly clientId: string | null; readonly done: (e?: Error) => void }> = []
  const flush = () => {
    const entries = batch
    batch = []
    try {
      store.transaction(() => {
        options.fence?.()
        const at = new Date().toISOString()
        for (const e of entries) {
          // An oversized payload is kept as a preview: the rejection records its size.
          const kept = e.payload.length > options.maxBytes ? e.payload.subarray(0, options.previewBytes) : e.payload
          insert.run(e.topic, kept, e.payload.length, e.clientId, at, instance)
        }
        options.beforeCommit?.()
      })
    } catch (error) {
      for (const e of entries) e.done(error as Error)
      return
    }
    try {
      options.afterCommit?.()
    } catch (error) {
      for (const e of entries) e.done(error as Error)
      return
    }
    for (const e of entries) e.done()
  }

  return {
    /** Resolves once the message is committed; messages appended in the same tick commit together. */
    append: (topic: string, payload: Buffer, clientId: string | null): Promise<void> =>
      new Promise<void>((resolve, reject) => {
        if (batch.length === 0) setImmediate(flush)
        batch.push({ topic, payload, clientId, done: (e) => (e === undefined ? resolve() : reject(e)) })
      }),
    unforwarded: (limit: number): ReadonlyArray<Entry> =>
      unforwarded.all(instance, limit).map((r) => ({
        seq: Number(r.seq),
        topic: String(r.topic),
        payload: Buffer.from(r.payload as Uint8Array),
        size: Number(r.size),
        clientId: r.client_id === null ? null : String(r.client_id)
      })),
    /** Marks an entry forwarded; call inside the transaction that wrote what it became. */
    forwarded: (seq: number): void => void forwarded.run(new Date().toISOString(), seq),
    /** Forgets entries forwarded before `before`, and the envelope ids seen with them (the deduplication window). */
    prune: (before: Date): number =>
      store.transaction(() => {
        const upTo = lastForwarded.get(before.toISOString())?.seq
        if (upTo === null || upTo === undefined) return 0
        pruneSeen.run(Number(upTo))
        return Number(pruneLog.run(Number(upTo)).changes)
      }),
    /** Takes over the unforwarded entries of dead instances; returns how many. */
    adopt: (dead: ReadonlyArray<string>): number => store.transaction(() => dead.reduce((n, d) => n + Number(adopt.run(instance, d).changes), 0)),
    /** Records a full envelope's id; false when it was seen before (a client's retransmission). */
    firstSight: (envelopeId: string, seq: number): boolean => seen.run(envelopeId, seq).changes > 0
  }
}

export type IngressLog = ReturnType<typeof make>
