/**
 * A processor's durable inbox: a message is acknowledged to the broker once it is here, and
 * processed from here. Its envelope id is the primary key, so a redelivered message is recognised
 * and not applied twice; the row is marked done in the transaction that applies its effects.
 */
import { Envelope } from "@baton/core"
import { Effect } from "effect"
import { SqlError } from "effect/sql"
import { ddl, type Dialect, type Query, type Sql, type Store } from "./Store.ts"

/** The SQLSTATE that `settleFirst` fails a transaction with on PostgreSQL. */
const notPendingCode = "BTN01"
/** What `receiveDoneFirst` fails a transaction with on PostgreSQL: a serialization failure (a lost conflict, run again at once). */
const notFirstCode = "40001"

export const migrations = [
  {
    name: "runtime/003-inbox",
    sql: ddl(
      (t) => `CREATE TABLE inbox (
      processor TEXT NOT NULL,
      envelope_id TEXT NOT NULL,
      topic TEXT NOT NULL,
      key TEXT NOT NULL,
      payload TEXT NOT NULL,
      status TEXT NOT NULL,
      received_at TEXT NOT NULL,
      done_at TEXT,
      PRIMARY KEY (processor, envelope_id)${t.rowid}
    );
    CREATE INDEX inbox_pending ON inbox (processor, status);`
    )
  },
  {
    // The cluster partition of the key, for the instance that owns it (0 for a single instance).
    name: "runtime/006-inbox-partition",
    sql: ddl((t) => `ALTER TABLE inbox ADD COLUMN part ${t.int} NOT NULL DEFAULT 0; CREATE INDEX inbox_part ON inbox (status, part)`)
  },
  {
    // PostgreSQL: fails the transaction of a message no longer pending (`settleFirst`).
    name: "runtime/009-inbox-settled",
    sql: {
      sqlite: "",
      pg: `CREATE OR REPLACE FUNCTION baton_settled(n BIGINT) RETURNS VOID LANGUAGE plpgsql AS $$
      BEGIN
        IF n = 0 THEN RAISE EXCEPTION 'the message is no longer pending here' USING ERRCODE = '${notPendingCode}'; END IF;
      END $$`
    }
  },
  {
    // PostgreSQL: the pending rows' index holds pending rows only (a partial index), and the
    // partition index goes (the pending reads by partition filter a processor's pending rows).
    // A done mark changes `status`, so its new row version is never HOT and was inserted into
    // every index on the inbox (inbox_part, inbox_pending, the primary key, and Parking's
    // inbox_key): a partial index over pending rows gets no entry for it, so a done mark now
    // inserts into the primary key only, and a receive into 3 indexes instead of 4. Measured
    // (order flow, 1,200 orders, 9 interleaved rounds against the previous schema, CPU of the
    // runtime's own backends): median 0.94x per order (~2.85 -> ~2.7 ms; 8 of 9 rounds lower,
    // per-round 0.92-1.02x). A fillfactor of 75 on top measured no further gain (0.98x). SQLite:
    // unchanged (its planner uses a partial index only for queries that name the predicate's
    // terms; not measured there).
    name: "runtime/010-inbox-pending-only",
    sql: {
      sqlite: "",
      pg: "DROP INDEX IF EXISTS inbox_part; DROP INDEX IF EXISTS inbox_pending; CREATE INDEX inbox_waiting ON inbox (processor, rowid) WHERE status = 'pending'"
    }
  },
  {
    // SQLite: the same. An index entry there holds the rowid, so (processor) is in arrival order
    // within a processor; every pending read names `status = 'pending'`, the partial index's own
    // term, so the planner takes it (its pages, ORDER BY rowid without a sort), and `inbox_part`
    // was read by no query of a single instance (SQLite is never clustered: `pendingIn` filters
    // the pending rows). A receive adds an entry to 3 indexes instead of 4 (Parking's inbox_key,
    // partial too: repair/004) and a done mark, which rewrote the entries of the 3 indexes that
    // hold `status`, removes one from each partial index only. Both stay a page or two, however
    // many rows the inbox keeps, where the full ones took a page of each per commit at a place
    // of its key. Measured (4 commits a message: a receive into 3 inboxes, 3 done marks; 20,000
    // messages kept): 27.7 -> 18.0 WAL pages a message, 205 -> 144 us.
    name: "runtime/011-inbox-pending-only-sqlite",
    sql: {
      sqlite: "DROP INDEX IF EXISTS inbox_part; DROP INDEX IF EXISTS inbox_pending; CREATE INDEX inbox_waiting ON inbox (processor) WHERE status = 'pending'",
      pg: ""
    }
  },
  {
    // PostgreSQL: fails the transaction of a message that could not be written done first (`receiveDoneFirst`).
    name: "runtime/015-inbox-done-first",
    sql: {
      sqlite: "",
      pg: `CREATE OR REPLACE FUNCTION baton_done_first(n BIGINT) RETURNS VOID LANGUAGE plpgsql AS $$
      BEGIN
        IF n = 0 THEN RAISE EXCEPTION 'the message could not run in its sender''s transaction' USING ERRCODE = '${notFirstCode}'; END IF;
      END $$`
    }
  },
  {
    // PostgreSQL: `receiveDoneFirst` looks for a pending message of the processor's of the key; without
    // this index it walked the processor's pending rows (dead entries too, until a vacuum): 2-3 ms a
    // statement with 20,000 of them, for every chained run into a processor with a backlog.
    name: "runtime/016-inbox-pending-key",
    sql: { sqlite: "", pg: "CREATE INDEX IF NOT EXISTS inbox_pending_key ON inbox (processor, key) WHERE status = 'pending'" }
  },
  {
    // PostgreSQL: what `receiveDoneFirst` calls when its row cannot be written (a serialization
    // failure, as `baton_done_first` of 0): a condition, called only then (see `doneFirst`).
    name: "runtime/017-inbox-not-first",
    sql: {
      sqlite: "",
      pg: `CREATE OR REPLACE FUNCTION baton_not_first() RETURNS BOOLEAN LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'the message could not run in its sender''s transaction' USING ERRCODE = '${notFirstCode}';
      END $$`
    }
  }
]

/** A transaction failed because `settleFirst` found its message no longer pending (or, in a cluster, no longer this instance's). */
export const isNotPending = (error: unknown): boolean =>
  SqlError.isSqlError(error) && (error.reason.cause as { readonly code?: unknown } | undefined)?.code === notPendingCode

export type Status = "pending" | "done" | "failed"

export interface Entry {
  readonly envelopeId: string
  readonly topic: string
  readonly key: string
  readonly payload: string
}

/**
 * `status = 'pending'` for a row found by its primary key (processor, envelope_id), as a condition
 * that PostgreSQL's planner cannot use as an index condition. Written plainly, the planner took
 * `inbox_part` (status, part) or `inbox_pending` (processor, status) for it (today's partial
 * `inbox_waiting` holds the same dead entries until a vacuum) rather than the primary key (to the statistics, pending rows are few and the costs tie), and walks every index
 * entry a row left when it was pending: the dead ones of every message processed since the last
 * vacuum (measured: ~570 index entries read per settle of the order flow, a third of PostgreSQL's
 * CPU). SQLite takes the primary key either way.
 */
export const pendingByKey = (dialect: Dialect): string => (dialect === "pg" ? "(status = 'pending') IS TRUE" : "status = 'pending'")

/** FNV-1a: a stable partition for a key. */
export const partitionOf = (key: string, partitions: number): number => {
  let h = 0x811c9dc5
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193)
  return (h >>> 0) % partitions
}

export const make = async (
  store: Store,
  options: {
    /** Cluster partitions (1 for a single instance). */
    readonly partitions?: number
    /** Called inside the receiving transaction with the new entry's partition (wakes its owner). */
    readonly notify?: (part: number) => Sql<void>
    /**
     * A condition on the entry's row that `settle` also requires (a cluster's fencing: this
     * instance still owns the entry's partition, checked and locked in the same statement), with
     * its parameters; `fence`: those for a message given a fencing token (a cluster: the tenure it
     * was scheduled in), the statement and its cost the same.
     */
    readonly guard?: { readonly condition: string; readonly params: ReadonlyArray<unknown>; readonly fence?: (token: number) => ReadonlyArray<unknown> }
  } = {}
) => {
  await store.migrate(migrations)
  const partitions = options.partitions ?? 1
  const insert = store.query(
    "INSERT INTO inbox (processor, envelope_id, topic, key, payload, status, received_at, part) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?) ON CONFLICT DO NOTHING RETURNING part"
  )
  /** One message to `n` processors' inboxes in one statement, answering the processors it was new to. */
  const inserts = new Map<number, Query>()
  const insertFor = (n: number): Query => {
    let q = inserts.get(n)
    if (q === undefined) {
      // Its text built once per `n` (not on each delivery).
      const rows = Array.from({ length: n }, () => "(?, ?, ?, ?, ?, 'pending', ?, ?)").join(", ")
      inserts.set(n, (q = store.query(`INSERT INTO inbox (processor, envelope_id, topic, key, payload, status, received_at, part) VALUES ${rows} ON CONFLICT DO NOTHING RETURNING processor`)))
    }
    return q
  }
  const guard = options.guard
  // Under a guard (a cluster's fencing), the new row is checked against it as `settle` checks a
  // pending one (the row as `inbox`, so that the guard's condition reads its `part`): a row of a
  // partition no longer this instance's is not written, and the partition's row is locked to the commit.
  const insertDone = store.query(
    guard === undefined
      ? "INSERT INTO inbox (processor, envelope_id, topic, key, payload, status, received_at, done_at, part) VALUES (?, ?, ?, ?, ?, 'done', ?, ?, ?) ON CONFLICT DO NOTHING RETURNING part"
      : `INSERT INTO inbox (processor, envelope_id, topic, key, payload, status, received_at, done_at, part) SELECT * FROM (VALUES (?, ?, ?, ?, ?, 'done', ?, ?, CAST(? AS BIGINT))) AS inbox (processor, envelope_id, topic, key, payload, status, received_at, done_at, part) WHERE ${guard.condition} ON CONFLICT DO NOTHING RETURNING part`
  )
  // `receiveDoneAlone` (SQLite, no guard): `othersPending` and `insertDone` in one statement. Any
  // pending row of the processor's: one of this message's own is a conflict all the same. The
  // condition in the row's VALUES (its status NULL when one is pending, and the row skipped, `OR
  // IGNORE`: every other value of it is given, never NULL), not an INSERT's SELECT WHERE NOT
  // EXISTS: an INSERT whose SELECT reads its own table first copies that SELECT's rows into an
  // ephemeral table (each run opens one). Measured (a copy of the order flow's file, 10,000 runs
  // interleaved; without `RETURNING`, see `Store.withoutReturning`): 18.2 -> 9.9 us a statement.
  const insertDoneAlone =
    store.dialect === "sqlite" && guard === undefined
      ? store.query(
          "INSERT OR IGNORE INTO inbox (processor, envelope_id, topic, key, payload, status, received_at, done_at, part) VALUES (?, ?, ?, ?, ?, CASE WHEN EXISTS (SELECT 1 FROM inbox WHERE processor = ? AND status = 'pending') THEN NULL ELSE 'done' END, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING part"
        )
      : undefined
  // `receiveDoneFirst`: written only when nothing of the processor's of its key is pending (the guard's
  // condition too) and the row is not there, else the transaction fails (`baton_not_first`, called
  // only then: in the condition's ELSE, and in ON CONFLICT's, evaluated only on a conflict); it
  // answers nothing and goes out with the next statement. A plain INSERT: the same statement as a
  // data-modifying WITH counting its rows into `baton_done_first` (before), measured in psql,
  // 4,000 runs of each prepared, interleaved: 145-190 us a statement against 237-332 (wall, a round
  // trip each included), and no aggregate, CTE or function call when it is written; the order flow
  // (ab.ts pg 3000 5 against the WITH): PostgreSQL's CPU per order 0.85x (lower in 5 of 5 rounds).
  // `baton_done_first` stays for instances of the previous version during an upgrade. One
  // difference (its review, 2026-12-02): ON CONFLICT's DO UPDATE locks the row that is already
  // there before it refuses it, so a duplicate hop whose row another open transaction holds FOR
  // SHARE or FOR UPDATE waits for that lock (up to `lock_timeout`, 55P03, a conflict all the same)
  // where the WITH failed at once; nothing here locks inbox rows so (an UPDATE in flight made both wait).
  const doneFirst =
    store.dialect === "pg"
      ? store.query(
          `INSERT INTO inbox (processor, envelope_id, topic, key, payload, status, received_at, done_at, part) SELECT * FROM (VALUES (?, ?, ?, ?, ?, 'done', ?, ?, CAST(? AS BIGINT))) AS inbox (processor, envelope_id, topic, key, payload, status, received_at, done_at, part) WHERE CASE WHEN NOT EXISTS (SELECT 1 FROM inbox AS o WHERE o.processor = inbox.processor AND o.status = 'pending' AND o.key = inbox.key)${guard === undefined ? "" : ` AND ${guard.condition}`} THEN true ELSE baton_not_first() END ON CONFLICT (processor, envelope_id) DO UPDATE SET status = inbox.status WHERE baton_not_first()`
        )
      : undefined
  const status = store.query("SELECT status FROM inbox WHERE processor = ? AND envelope_id = ?")
  // The payload stays until the row is pruned (masked, when the caller gives its masked text): the
  // flows API (runtime/src/Flows.ts) reads the envelopes from here, and a failed message is
  // resubmitted from it.
  const settleWhere = `processor = ? AND envelope_id = ? AND ${pendingByKey(store.dialect)}${guard === undefined ? "" : ` AND ${guard.condition}`}`
  const settle = store.query(`UPDATE inbox SET status = ?, done_at = ?, payload = COALESCE(?, payload) WHERE ${settleWhere} RETURNING status`)
  const guardParams = guard?.params ?? []
  const fenceOf = guard?.fence
  /** The guard's parameters for a message with fencing token `fence` (none: the guard's own). */
  const paramsOf = (fence: number | undefined): ReadonlyArray<unknown> => (fence === undefined || fenceOf === undefined ? guardParams : fenceOf(fence))
  const settleUpdate = `UPDATE inbox SET status = ?, done_at = ?, payload = COALESCE(?, payload) WHERE ${settleWhere} RETURNING 1`
  const settled = store.dialect === "pg" ? store.query(`WITH s AS (${settleUpdate}) SELECT baton_settled((SELECT COUNT(*) FROM s))`) : undefined
  const pending = store.query("SELECT envelope_id, topic, key, payload FROM inbox WHERE processor = ? AND status = 'pending' ORDER BY rowid")
  const pendingAfter = store.query("SELECT rowid AS seq, part, envelope_id, topic, key, payload FROM inbox WHERE processor = ? AND status = 'pending' AND rowid > ? ORDER BY rowid LIMIT ?")
  const prune = store.query("DELETE FROM inbox WHERE status <> 'pending' AND done_at < ? RETURNING status")
  const othersPending = store.query("SELECT 1 AS pending FROM inbox WHERE processor = ? AND status = 'pending' AND envelope_id <> ? LIMIT 1")
  const notify = options.notify
  /** `value`, once the owner of partition `part` is told of a new entry (when there is one to tell). */
  const notified = <A>(part: number, value: A): Sql<A> => (notify === undefined ? Effect.succeed(value) : Effect.as(notify(part), value))
  return {
    /** Records a received message, inside the caller's transaction; false when it was already here (a redelivery). */
    receive: (processor: string, entry: Entry): Sql<boolean> =>
      Effect.suspend(() => {
        const part = partitionOf(entry.key, partitions)
        return Effect.flatMap(insert.run(processor, entry.envelopeId, entry.topic, entry.key, entry.payload, Envelope.isoNow(), part), (n) =>
          n > 0 ? notified(part, true) : Effect.succeed(false)
        )
      }),
    /**
     * `receive` for a message announced inside a transaction (in-process routing): on PostgreSQL
     * its statement goes out with the transaction's next one. Whether it was new is read after the
     * commit; the owner of its partition is woken either way (a redelivery wakes it for nothing).
     */
    deliver: (processor: string, entry: Entry): Sql<() => boolean> =>
      Effect.suspend(() => {
        const part = partitionOf(entry.key, partitions)
        const written = insert.write(processor, entry.envelopeId, entry.topic, entry.key, entry.payload, Envelope.isoNow(), part)
        // Nobody to wake (a single instance): the answer in the write's `map`.
        return notify === undefined ? Effect.map(written, (rows) => () => rows() > 0) : Effect.flatMap(written, (rows) => notified(part, () => rows() > 0))
      }),
    /**
     * `deliver` to several processors at once (the local consumers of one topic): one statement.
     * Gives the processors it was new to, read after the commit.
     */
    deliverAll: (processors: ReadonlyArray<string>, entry: Entry): Sql<() => ReadonlySet<string>> =>
      Effect.suspend(() => {
        const part = partitionOf(entry.key, partitions)
        const at = Envelope.isoNow()
        const names = [...new Set(processors)]
        // The rows' parameters in one array (not an array per row, flattened).
        const params: Array<unknown> = []
        for (const p of names) params.push(p, entry.envelopeId, entry.topic, entry.key, entry.payload, at, part)
        const written = insertFor(names.length).writeRows(...params)
        const freshOf = (rows: () => ReadonlyArray<Record<string, unknown>>) => {
          let fresh: ReadonlySet<string> | undefined
          return () => (fresh ??= new Set(rows().map((r) => String(r.processor))))
        }
        // Nobody to wake (a single instance): the answer in the write's `map`.
        return notify === undefined ? Effect.map(written, freshOf) : Effect.flatMap(written, (rows) => notified(part, freshOf(rows)))
      }),
    /**
     * `receive` and `settle` (done) at once, for a message handled in the transaction that
     * receives it (the ingress's inline request-reply): its row written done, never pending (no
     * entry in the pending rows' index to add and remove again). False when it was already here
     * (a redelivery), or under a guard its partition is no longer this instance's: then nothing
     * of it may run. `kept` replaces the payload (its masked text).
     */
    receiveDone: (processor: string, entry: Entry, kept?: string): Sql<boolean> =>
      Effect.suspend(() => {
        const at = Envelope.isoNow()
        return insertDone.any(processor, entry.envelopeId, entry.topic, entry.key, kept ?? entry.payload, at, at, partitionOf(entry.key, partitions), ...guardParams)
      }),
    /**
     * SQLite without a guard: `receiveDone` only when the processor has no other pending message
     * (`othersPending`), in one statement where those are two. False when one is pending or the
     * row is already here (a redelivery): nothing of it may run. Undefined elsewhere.
     */
    receiveDoneAlone:
      insertDoneAlone === undefined
        ? undefined
        : (processor: string, entry: Entry, kept?: string): Sql<boolean> =>
            Effect.suspend(() => {
              const at = Envelope.isoNow()
              return insertDoneAlone.any(processor, entry.envelopeId, entry.topic, entry.key, kept ?? entry.payload, processor, at, at, partitionOf(entry.key, partitions))
            }),
    /**
     * PostgreSQL: `receiveDone` as a statement of its transaction that goes out with the next
     * one, for a message that no other of the processor's may precede: when one of its key is pending (or
     * the row is there, or fails the guard), the transaction fails with a serialization failure
     * (a lost conflict: it runs again). `fence`: the fencing token for the guard, as `settle`'s
     * (a cluster: the tenure of the partition the run was decided in). Undefined elsewhere.
     */
    receiveDoneFirst:
      doneFirst === undefined
        ? undefined
        : (processor: string, entry: Entry, kept?: string, fence?: number): Sql<void> =>
            Effect.suspend(() => {
              const at = Envelope.isoNow()
              return Effect.asVoid(doneFirst.write(processor, entry.envelopeId, entry.topic, entry.key, kept ?? entry.payload, at, at, partitionOf(entry.key, partitions), ...paramsOf(fence)))
            }),
    status: (processor: string, envelopeId: string): Sql<Status | undefined> =>
      Effect.map(status.get(processor, envelopeId), (r) => r?.status as Status | undefined),
    /**
     * Marks a pending message processed (or failed); call inside the transaction of its effects.
     * `kept` replaces the payload kept until the row is pruned (its masked text).
     * False when it is no longer pending (or fails the guard): then nothing of it may commit.
     * `fence`: the message's fencing token for the guard (see `guard`).
     */
    settle: (processor: string, envelopeId: string, outcome: "done" | "failed", kept?: string, fence?: number): Sql<boolean> =>
      settle.any(outcome, Envelope.isoNow(), kept ?? null, processor, envelopeId, ...paramsOf(fence)),
    /**
     * `settle` as the first statement of the transaction of a message's effects. On PostgreSQL it
     * goes out with the next statement (one round trip less) and answers true: when the message
     * is no longer pending (or fails the guard) the transaction fails with an error that
     * `isNotPending` recognises, so nothing of it commits. The server runs it before anything
     * after it, so its row locks are taken first as with `settle`.
     */
    settleFirst: (processor: string, envelopeId: string, outcome: "done" | "failed", kept?: string, fence?: number): Sql<boolean> =>
      settled === undefined
        ? settle.any(outcome, Envelope.isoNow(), kept ?? null, processor, envelopeId, ...paramsOf(fence))
        : Effect.as(settled.write(outcome, Envelope.isoNow(), kept ?? null, processor, envelopeId, ...paramsOf(fence)), true),
    /**
     * Whether the processor has a pending message other than `envelopeId` (any key): none means
     * nothing older waits for it, so it may run at once (see Consumer's `inline`).
     */
    othersPending: (processor: string, envelopeId: string): Sql<boolean> => othersPending.any(processor, envelopeId),
    /** Whether `settle` checks the guard (a cluster's ownership) itself. */
    guarded: guard !== undefined,
    /**
     * Forgets settled messages settled before `before`: a redelivery older than that would be
     * applied again, so the retention is the deduplication window.
     */
    prune: (before: Date): Promise<number> => store.transaction(prune.run(before.toISOString())),
    /** Messages received but not yet processed, in arrival order (recovery after a crash). */
    pending: (processor: string): Promise<ReadonlyArray<Entry>> => store.run(Effect.map(pending.all(processor), (rows) => rows.map(entryOf))),
    /**
     * At most `limit` of them, in arrival order, after the row `after` (0: from the first): a page
     * of a backlog, read when there is room to run it (back-pressure, see Consumer), each with its partition.
     */
    pendingPage: (processor: string, after: number, limit: number): Promise<ReadonlyArray<Entry & { readonly seq: number; readonly part: number }>> =>
      store.run(Effect.map(pendingAfter.all(processor, after, limit), (rows) => rows.map((r) => ({ ...entryOf(r), seq: Number(r.seq), part: Number(r.part) })))),
    /** The same, for the given cluster partitions only (a partition this instance just acquired). */
    pendingIn: (processor: string, parts: ReadonlyArray<number>): Promise<ReadonlyArray<Entry>> =>
      parts.length === 0
        ? Promise.resolve([])
        : store.run(
            Effect.map(
              store
                .query(`SELECT envelope_id, topic, key, payload FROM inbox WHERE status = 'pending' AND processor = ? AND part IN (${parts.map(() => "?").join(", ")}) ORDER BY rowid`)
                .all(processor, ...parts),
              (rows) => rows.map(entryOf)
            )
          )
  }
}

const entryOf = (r: Record<string, unknown>): Entry => ({ envelopeId: String(r.envelope_id), topic: String(r.topic), key: String(r.key), payload: String(r.payload) })

export type Inbox = Awaited<ReturnType<typeof make>>
