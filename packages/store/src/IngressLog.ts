/**
 * The durable ingress log: an initiating event is committed here before the broker acknowledges
 * it to the publisher (Aedes sends a QoS 1 PUBACK before storing, docs/platform-facts.md), and
 * forwarded from here. Appends arriving together share one transaction (group commit); on
 * PostgreSQL up to 32 of them are one INSERT, committed on its own (no BEGIN and COMMIT), and a
 * larger batch is a transaction of such INSERTs.
 */
import { Effect } from "effect"
import { chunks, grouped, inserts, rowing, sized as sizedOn, values, type Pending } from "./GroupAppend.ts"
import { ddl, timeline, type Row, type Sql, type Store } from "./Store.ts"

/** Most appends written by one statement on PostgreSQL (a larger batch: a transaction of such statements). */
const maxRowsPerStatement = 32

export const migrations = [
  {
    name: "runtime/004-ingress",
    sql: ddl(
      (t) => `CREATE TABLE ingress_log (
      seq ${t.serialKey},
      topic TEXT NOT NULL,
      payload ${t.blob} NOT NULL,
      size ${t.int} NOT NULL,
      client_id TEXT,
      received_at TEXT NOT NULL,
      forwarded_at TEXT${t.rowid}
    );
    CREATE INDEX ingress_unforwarded ON ingress_log (forwarded_at) WHERE forwarded_at IS NULL;
    CREATE TABLE ingress_seen (envelope_id TEXT PRIMARY KEY, seq ${t.int} NOT NULL${t.rowid});`
    )
  },
  {
    // The instance that forwards the entry (a cluster shares the table).
    name: "runtime/008-ingress-instance",
    sql: "ALTER TABLE ingress_log ADD COLUMN instance TEXT NOT NULL DEFAULT ''"
  },
  {
    // SQLite: the seen envelope ids in one b-tree keyed by the id (WITHOUT ROWID), not a rowid
    // table beside an index of its primary key: a first sighting writes one page, not two.
    // Measured (a request-reply's two commits: log, seen id, inbox, done mark, reply): 10.9 ->
    // 9.9 WAL pages a request. PostgreSQL: unchanged.
    name: "runtime/012-ingress-seen-keyed",
    sql: {
      sqlite: `CREATE TABLE ingress_seen_keyed (envelope_id TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
      INSERT INTO ingress_seen_keyed (envelope_id, seq) SELECT envelope_id, seq FROM ingress_seen;
      DROP TABLE ingress_seen;
      ALTER TABLE ingress_seen_keyed RENAME TO ingress_seen`,
      pg: ""
    }
  },
  {
    // SQLite: `seq` a plain rowid, not AUTOINCREMENT, whose high-water mark in sqlite_sequence
    // was one more page written by every append. A rowid is one more than the largest in the
    // table, so a number is given again only once every entry from it up was pruned, and nothing
    // then refers to it: a seen envelope id keeps the number of an entry still in the log (both
    // are pruned in one transaction, up to one number), the drain and the inline forwarding hold
    // only entries not yet forwarded (never pruned), and the relay's position is the outbox's.
    // The log's order is still the numbers' order (a new entry is above every entry left).
    // PostgreSQL: unchanged (a sequence).
    name: "runtime/014-ingress-rowid-sqlite",
    sql: {
      sqlite: `CREATE TABLE ingress_log_rowid (
      seq INTEGER PRIMARY KEY,
      topic TEXT NOT NULL,
      payload BLOB NOT NULL,
      size INTEGER NOT NULL,
      client_id TEXT,
      received_at TEXT NOT NULL,
      forwarded_at TEXT,
      instance TEXT NOT NULL DEFAULT ''
    );
    INSERT INTO ingress_log_rowid (seq, topic, payload, size, client_id, received_at, forwarded_at, instance)
      SELECT seq, topic, payload, size, client_id, received_at, forwarded_at, instance FROM ingress_log;
    DROP TABLE ingress_log;
    ALTER TABLE ingress_log_rowid RENAME TO ingress_log;
    CREATE INDEX ingress_unforwarded ON ingress_log (forwarded_at) WHERE forwarded_at IS NULL`,
      pg: ""
    }
  },
  {
    // PostgreSQL: the drain's read (`unforwarded`: an instance's entries in order, every batch on
    // PostgreSQL) and `adopt` by an index in that order, which the read stops on after its LIMIT.
    // The old index's key was always NULL: a bitmap scan took every entry it held, which are the
    // unforwarded ones and those forwarded since the last VACUUM (a bitmap scan never marks an
    // entry dead), visited each one's heap page and sorted. Order flow, 12,000 orders, no VACUUM:
    // ~6,000 index entries a read on average (~150 reads a run), and a read at the end 602 buffer
    // hits and 3.6 ms, against 47 and 0.2 ms: an ordinary index scan marks the dead entries it
    // passes and skips them after, though it still walks their leaf pages (~270 entries a page)
    // until a VACUUM. The log's heap and indexes: 0.81x the buffer hits of the run.
    // Nothing else used the old index (`lastForwarded` asks for forwarded entries, the rest go by
    // `seq`). SQLite: unchanged (its old index is already in rowid order, that is `seq`, and an
    // update removes an entry at once; the read measured 20 us either way).
    name: "runtime/019-ingress-unforwarded-seq-pg",
    sql: {
      sqlite: "",
      pg: `CREATE INDEX IF NOT EXISTS ingress_unforwarded_seq ON ingress_log (instance, seq) WHERE forwarded_at IS NULL;
      DROP INDEX IF EXISTS ingress_unforwarded`
    }
  },
  {
    // With `BATON_FRONT=log`, the highest entry of each front log (`FrontLog.ts`, by its id) whose
    // forward committed: written in the transaction of what the entries became, the hand-over's
    // deduplication (docs/front-thread.md 3.1).
    name: "runtime/020-front-mark",
    sql: "CREATE TABLE front_mark (log_id TEXT PRIMARY KEY, seq INTEGER NOT NULL)"
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

/** An entry as read from a log's row (`seq, topic, payload, size, client_id`). */
export const entryOf = (r: Row): Entry => ({
  seq: Number(r.seq),
  topic: String(r.topic),
  payload: Buffer.from(r.payload as Uint8Array),
  size: Number(r.size),
  clientId: r.client_id === null ? null : String(r.client_id)
})

/** See `make`'s `inline` option. */
export interface Inline {
  readonly forwarder: () => ((entries: ReadonlyArray<Entry>) => Sql<() => void, unknown>) | undefined
  readonly settled: () => void
  /**
   * A failure of the forward that runs the batch's transaction again at once (`Store.transaction`'s
   * `again`), up to once per entry: the forwarder refused what failed, and forwards it otherwise the next time.
   */
  readonly again: (error: unknown) => boolean
}

/** What `firstSights` of nothing finds. */
const noneSeen: ReadonlySet<number> = new Set()

/** Most entries one statement of a drain marks or records. */
const maxKeysPerStatement = 128

export const make = async (
  store: Store,
  options: {
    readonly previewBytes: number
    readonly maxBytes: number
    /** Called with a batch written but not committed yet (a kill point for the crash tests); before a batch of one statement is sent. */
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
    readonly afterCommit?: () => Promise<void>
    /**
     * Runs inside each append's transaction, before the inserts; throwing refuses the batch. A
     * cluster on an external broker checks there that this instance still holds the ingress
     * session (a former holder cannot log what the new one is taking).
     */
    readonly fence?: Sql<void>
    /**
     * Forwarding inside the append's own transaction (the single-instance embedded setup).
     * `forwarder` is asked as a batch starts: a function means nothing older is left unforwarded,
     * and the batch's entries are inserted already marked forwarded and given to it in the same
     * transaction (it returns what to run once committed); `undefined` leaves the batch to the
     * drain, and `settled` is called once such a batch has committed or failed.
     */
    readonly inline?: Inline
  }
) => {
  await store.migrate(migrations)
  const instance = options.instance ?? ""
  const sized = (text: (n: number) => string) => sizedOn(store, text)
  const insertText = "INSERT INTO ingress_log (topic, payload, size, client_id, received_at, instance)"
  const unforwarded = store.query("SELECT seq, topic, payload, size, client_id FROM ingress_log WHERE forwarded_at IS NULL AND instance = ? ORDER BY seq LIMIT ?")
  const adopt = store.query("UPDATE ingress_log SET instance = ? WHERE forwarded_at IS NULL AND instance = ? RETURNING seq")
  // Statements over `n` entries at once (a drained batch: one statement, not one per entry).
  const forwarded = sized((n) => `UPDATE ingress_log SET forwarded_at = ? WHERE seq ${n === 1 ? "= ?" : `IN (${Array.from({ length: n }, () => "?").join(", ")})`}`)
  const seen = sized((n) => `INSERT INTO ingress_seen (envelope_id, seq) VALUES ${Array.from({ length: n }, () => "(?, ?)").join(", ")} ON CONFLICT DO NOTHING RETURNING seq`)
  const lastForwarded = store.query("SELECT MAX(seq) AS seq FROM ingress_log WHERE forwarded_at IS NOT NULL AND forwarded_at < ?")
  const pruneLog = store.query("DELETE FROM ingress_log WHERE forwarded_at IS NOT NULL AND seq <= ? RETURNING seq")
  const pruneSeen = store.query("DELETE FROM ingress_seen WHERE seq <= ?")

  /** `n` appends as one statement. */
  const insertOf = sized((n) => `${insertText} VALUES ${values(n, 6)}`)
  /** `n` appends born forwarded, giving their sequence numbers. */
  const insertForwardedOf = sized((n) => `${insertText.slice(0, -1)}, forwarded_at) VALUES ${values(n, 7)} RETURNING seq`)
  type Append = Pending
  const flush = async (entries: Array<Pending>) => {
    const { at, kept } = rowing(options)
    const row = (e: Pending) => [e.topic, kept(e), e.payload.length, e.clientId, at, instance]
    const forward = options.inline?.forwarder()
    if (forward !== undefined) return flushForwarded(entries, at, kept, row, forward)
    try {
      if (store.dialect === "pg" && options.fence === undefined && entries.length <= maxRowsPerStatement) {
        // One statement, committed on its own: no BEGIN and COMMIT (two statements less a batch).
        options.beforeCommit?.()
        timeline?.("s", entries.length)
        await store.run(insertOf(entries.length).run(...entries.flatMap(row)))
      } else
        // SQLite: an INSERT per append (its statements cost no round trip).
        await store.transaction(inserts(insertOf, entries, row, store.dialect === "pg" ? maxRowsPerStatement : 1, options.beforeCommit, options.fence))
    } catch (error) {
      options.inline?.settled()
      for (const e of entries) e.done(error as Error)
      return
    }
    timeline?.("c", entries.length)
    options.inline?.settled()
    try {
      await options.afterCommit?.()
    } catch (error) {
      for (const e of entries) e.done(error as Error)
      return
    }
    for (const e of entries) e.done()
  }

  /**
   * `inline.again`, at most once per entry of a batch of `n`: each run again refuses at least the
   * request that failed the one before (a batch of requests that all fail runs n + 1 times, each
   * then received pending as the savepoint's way left it, none left unacknowledged).
   */
  const againFor = (n: number): ((error: unknown) => boolean) | undefined => {
    const again = options.inline?.again
    if (again === undefined) return undefined
    let left = n
    return (error) => left-- > 0 && again(error)
  }

  /** A batch inserted born forwarded and forwarded in the same transaction (see `inline`). */
  const flushForwarded = async (
    entries: ReadonlyArray<Append>,
    at: string,
    kept: (e: Append) => Buffer,
    row: (e: Append) => ReadonlyArray<unknown>,
    forward: (entries: ReadonlyArray<Entry>) => Sql<() => void, unknown>
  ) => {
    let after: () => void
    try {
      // SQLite: an INSERT per append (its statements cost no round trip); plain steps, not a
      // generator (a request-reply round trip is one such batch of one).
      const inserts = chunks(entries, store.dialect === "pg" ? maxRowsPerStatement : 1)
      // Sequence numbers are taken in the order of the rows.
      const insert = (chunk: ReadonlyArray<Append>): Sql<ReadonlyArray<number>> =>
        Effect.map(insertForwardedOf(chunk.length).all(...chunk.flatMap((e) => [...row(e), at])), (inserted) => inserted.map((r) => Number(r.seq)).sort((a, b) => a - b))
      const seqs: Sql<ReadonlyArray<number>> = inserts.length === 1 ? insert(inserts[0]!) : Effect.map(Effect.forEach(inserts, insert), (lists) => lists.flat())
      after = await store.transaction(
        Effect.flatMap(timeline === undefined ? seqs : Effect.andThen(Effect.sync(() => timeline?.("s", entries.length)), seqs), (numbers) =>
          Effect.map(forward(entries.map((e, i) => ({ seq: numbers[i]!, topic: e.topic, payload: kept(e), size: e.payload.length, clientId: e.clientId }))), (after) => {
            options.beforeCommit?.()
            return after
          })
        ),
        againFor(entries.length)
      )
    } catch (error) {
      for (const e of entries) e.done(error as Error)
      return
    }
    timeline?.("c", entries.length)
    for (const e of entries) e.done(undefined, true)
    after()
  }

  return {
    /**
     * Resolves once the message is committed (true: forwarded in the same transaction, see
     * `inline`); messages appended together (see `schedule`) commit together.
     */
    append: grouped(store, flush),
    unforwarded: (limit: number): Promise<ReadonlyArray<Entry>> =>
      store.run(
        Effect.map(unforwarded.all(instance, limit), (rows) => rows.map(entryOf))
      ),
    /** Marks entries forwarded; call inside the transaction that wrote what they became. */
    forwarded: (...seqs: ReadonlyArray<number>): Sql<void> => {
      const at = new Date().toISOString()
      return Effect.forEach(chunks(seqs, maxKeysPerStatement), (chunk) => forwarded(chunk.length).run(at, ...chunk), { discard: true })
    },
    /** Forgets entries forwarded before `before`, and the envelope ids seen with them (the deduplication window). */
    prune: (before: Date): Promise<number> =>
      store.transaction(
        Effect.gen(function* () {
          const upTo = (yield* lastForwarded.get(before.toISOString()))?.seq
          if (upTo === null || upTo === undefined) return 0
          yield* pruneSeen.run(Number(upTo))
          return yield* pruneLog.run(Number(upTo))
        })
      ),
    /** Forgets the envelope ids seen with entries up to `upTo` (a front log's, `BATON_FRONT=log`: its prune's answer). */
    forget: (upTo: number): Promise<number> => store.run(pruneSeen.run(upTo)),
    /** Takes over the unforwarded entries of dead instances; returns how many. */
    adopt: (dead: ReadonlyArray<string>): Promise<number> =>
      store.transaction(Effect.reduce(dead, () => 0, (n, d) => Effect.map(adopt.run(instance, d), (m) => n + m))),
    /** Records a full envelope's id, inside the caller's transaction; false when it was seen before (a client's retransmission). */
    firstSight: (envelopeId: string, seq: number): Sql<boolean> => Effect.map(seen(1).all(envelopeId, seq), (rows) => rows.length > 0),
    /**
     * `firstSight` for several entries at once, in one statement: the entries (by `seq`) whose
     * envelope id was first seen here. Of two with the same id, the first in the list.
     */
    firstSights: (sightings: ReadonlyArray<{ readonly envelopeId: string; readonly seq: number }>): Sql<ReadonlySet<number>> =>
      sightings.length === 0
        ? Effect.succeed(noneSeen)
        : Effect.map(
            Effect.forEach(chunks(sightings, maxKeysPerStatement), (chunk) => seen(chunk.length).all(...chunk.flatMap((s) => [s.envelopeId, s.seq]))),
            (results) => new Set(results.flat().map((r) => Number(r.seq)))
          )
  }
}

export type IngressLog = Awaited<ReturnType<typeof make>>
