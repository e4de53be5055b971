/**
 * The transactional outbox: what the runtime announces is written in the same transaction as the
 * state change that caused it; a relay publishes it with confirmed sends and deletes it after.
 * After a crash, what is still here is published again: duplicates on the wire, never lost.
 */
import { Envelope, type QoS } from "@baton/core"
import { Effect } from "effect"
import { beforeClose } from "./Sqlite.ts"
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
  },
  {
    // SQLite: `seq` a plain rowid, not AUTOINCREMENT, whose high-water mark in sqlite_sequence
    // was one more page written by every transaction that adds an entry. A rowid is one more than
    // the largest in the table, so the numbers of the last entries deleted would be given again
    // once the relay has sent everything: `make` numbers the entries itself above the largest
    // number this process has deleted (`sentUpTo`). PostgreSQL: unchanged (a sequence).
    name: "runtime/013-outbox-rowid-sqlite",
    sql: {
      sqlite: `CREATE TABLE outbox_rowid (
      seq INTEGER PRIMARY KEY,
      topic TEXT NOT NULL,
      payload TEXT NOT NULL,
      qos INTEGER NOT NULL,
      created_at TEXT NOT NULL,
      instance TEXT NOT NULL DEFAULT ''
    );
    INSERT INTO outbox_rowid (seq, topic, payload, qos, created_at, instance) SELECT seq, topic, payload, qos, created_at, instance FROM outbox;
    DROP TABLE outbox;
    ALTER TABLE outbox_rowid RENAME TO outbox`,
      pg: ""
    }
  },
  {
    // PostgreSQL: the relay's read (`pending`: an instance's entries in order) and `size` (every
    // `/healthz`) by an index instead of a sequential scan. Sent entries are deleted, but their
    // heap pages stay (no free space map before a VACUUM): without it, each read went through
    // every page the outbox ever filled since the last VACUUM, ~16 entries a page (autovacuum off:
    // since the table was made). Order flow, 6,200 orders on this server: 910 such scans, the
    // outbox's heap 31 buffer hits per order at 6,000 orders, 70 at 12,000 (21.5 at 3,000).
    // SQLite frees a deleted entry's page (unchanged).
    name: "runtime/018-outbox-instance-pg",
    sql: { sqlite: "", pg: "CREATE INDEX IF NOT EXISTS outbox_instance ON outbox (instance, seq)" }
  }
]

/**
 * Per store, the largest sequence number that this process has deleted from the outbox (SQLite).
 * The relay keeps the last number it handed to publishing and takes an entry offered right after
 * a commit as the next one to publish when it follows that number (Relay.ts): a number deleted
 * and given again to a later entry could be taken for the one right after what was published
 * while older entries are still unsent (published out of order). Numbers above this one, and
 * above every entry in the table, were never given in this process; a new process has no relay
 * position to confuse, and nothing stored refers to a deleted entry's number.
 */
const sentUpTo = new WeakMap<Store, { top: number }>()

export interface Entry {
  readonly seq: number
  readonly topic: string
  readonly payload: string
  readonly qos: QoS
}

const noRuns: ReadonlyArray<[number, number]> = []

/** SQLite: how long the delete of sent entries waits for a transaction that adds one, ms (see `deferred`). */
const laterMs = 5

/** Maximal runs of consecutive numbers, as [first, last] pairs, in order: what `sentRuns` takes. */
export const runs = (seqs: ReadonlyArray<number>): ReadonlyArray<readonly [number, number]> => {
  const out: Array<[number, number]> = []
  for (const n of seqs) {
    const last = out.at(-1)
    if (last !== undefined && n === last[1] + 1) last[1] = n
    else out.push([n, n])
  }
  return out
}

/** `instance`: in a cluster, this instance's relay publishes only its own entries (and those it adopts). */
export const make = async (store: Store, options: { readonly instance?: string } = {}) => {
  await store.migrate(migrations)
  const instance = options.instance ?? ""
  let found = sentUpTo.get(store)
  if (found === undefined) sentUpTo.set(store, (found = { top: 0 }))
  const deleted = found
  // SQLite: above both the largest number in the table and the largest this process deleted
  // (`sentUpTo`); PostgreSQL: its sequence.
  const columns = store.dialect === "sqlite" ? "(seq, topic, payload, qos, created_at, instance) VALUES (max(?, (SELECT coalesce(max(seq), 0) FROM outbox)) + 1, " : "(topic, payload, qos, created_at, instance) VALUES ("
  const insertText = `INSERT INTO outbox ${columns}?, ?, ?, ?, ?)`
  const insert = store.query(insertText)
  const insertReturning = store.query(`${insertText} RETURNING seq`)
  /** The values of an insert: on SQLite led by the number to stay above. */
  const values = (topic: string, payload: string, qos: QoS): ReadonlyArray<unknown> =>
    store.dialect === "sqlite" ? [deleted.top, topic, payload, qos, Envelope.isoNow(), instance] : [topic, payload, qos, Envelope.isoNow(), instance]
  const pending = store.query("SELECT seq, topic, payload, qos FROM outbox WHERE instance = ? ORDER BY seq LIMIT ?")
  const remove = store.query("DELETE FROM outbox WHERE seq <= ? AND seq >= ? AND instance = ?")
  // PostgreSQL: the entries of several runs in one statement (`sentRuns`).
  const removeListed = store.dialect === "pg" ? store.query("DELETE FROM outbox WHERE instance = ? AND seq = ANY(?::bigint[])") : undefined
  const count = store.query("SELECT COUNT(*) AS n FROM outbox WHERE instance = ?")
  const adopt = store.query("UPDATE outbox SET instance = ? WHERE instance = ? RETURNING seq")

  // SQLite: the delete of entries that the relay was offered (`added`) and has sent goes with the
  // next transaction that adds one (the page it deletes from is the one the add writes: a page
  // and a commit less a request-reply round trip, where a delete of its own commits a page of its
  // own), or, once `laterMs` passed since the last add, in a commit of its own (the timer, armed at
  // the first sent entry, waits out the rest of the delay when an add came meanwhile: a
  // request-reply round trip every ~0.7 ms had the latest reply's delete committed on its own every
  // 5 ms, a commit and a page more, right before the next request was read), and at the latest
  // twice `laterMs` after the oldest was sent (one a rolled-back add carried). Until then they are left
  // out of what this outbox reads (`pending`, `size`: both delete them first). A crash in between
  // publishes them again, as one between a publish and its delete would. What a drain read
  // (`pending`) is deleted at once, as before. PostgreSQL: deleted at once (the next add may be
  // on another connection).
  const deferred = store.dialect === "sqlite"
  /** Numbers of entries given by `added` (offered to the relay), not yet sent. */
  const offered = new Set<number>()
  /** Runs of sent entries not yet deleted, in order; `riding`: how many of them an add's transaction has deleted (maybe rolled back). */
  const sentRuns: Array<[number, number]> = []
  /** When each of `sentRuns` was sent (`performance.now()`), in the same order: the first is the oldest. */
  const sentAt: Array<number> = []
  let riding = 0
  let timer: ReturnType<typeof setTimeout> | undefined
  /** When the last add's transaction took the sent runs (`deleteRiding`), by `performance.now()`. */
  let lastAdd = Number.NEGATIVE_INFINITY
  /**
   * Arms the timer: at its end, the runs left are deleted on their own once `laterMs` passed since
   * the last add (the next add would take them: it waits out the rest), or once the oldest was
   * sent twice that long ago (one an add carried and rolled back is left to this delete: adds that
   * keep coming would otherwise put it off for as long as they come); none left, it stops.
   */
  const arm = (ms: number) => {
    timer = setTimeout(() => {
      timer = undefined
      if (sentRuns.length === 0) return
      const now = performance.now()
      const wait = Math.min(laterMs - (now - lastAdd), 2 * laterMs - (now - sentAt[0]!))
      if (wait > 0) return arm(wait)
      void deleteSent().catch(() => {})
    }, ms)
    timer.unref()
  }
  /** The last `deleteSent`'s delete (settled: never rejects). */
  let deleting: Promise<unknown> = Promise.resolve()
  /**
   * Deletes the runs of sent entries in a commit of their own (again those an add's transaction
   * deleted: it may have rolled back); resolves once every delete begun before it is done.
   */
  const deleteSent = async (): Promise<void> => {
    if (timer !== undefined) clearTimeout(timer)
    timer = undefined
    const runs = sentRuns.splice(0)
    const times = sentAt.splice(0)
    riding = 0
    const before = deleting
    if (runs.length === 0) return void (await before)
    const deletes = Effect.forEach(runs, ([first, last]) => remove.run(last, first, instance), { discard: true })
    const done = before.then(() => (runs.length === 1 ? store.run(deletes) : store.transaction(deletes)))
    deleting = done.catch(() => {})
    try {
      await done
    } catch (error) {
      sentRuns.unshift(...runs)
      sentAt.unshift(...times)
      throw error
    }
  }
  if (deferred) beforeClose(store, () => deleteSent().catch(() => {}))
  /** The deletes of runs sent since the last add, inside the add's transaction; gives the runs it deletes. */
  const deleteRiding: Sql<ReadonlyArray<[number, number]>> = Effect.suspend(() => {
    lastAdd = performance.now()
    if (riding === sentRuns.length) return Effect.succeed(noRuns)
    const runs = sentRuns.slice(riding)
    riding = sentRuns.length
    return Effect.as(
      Effect.forEach(runs, ([first, last]) => remove.run(last, first, instance), { discard: true }),
      runs
    )
  })
  /**
   * The runs an add's transaction deleted, once it has committed (`added`'s entry is read only
   * then): they are gone, and need no delete of their own (`deleteSent` would delete them again,
   * in a transaction of its own every `laterMs`, not knowing whether that add committed). Runs
   * that `deleteSent` has taken meanwhile (or put back, its delete failed) are left to it.
   */
  const committed = (runs: ReadonlyArray<[number, number]>) => {
    for (const run of runs) {
      const at = sentRuns.indexOf(run)
      if (at < 0 || at >= riding) continue
      sentRuns.splice(at, 1)
      sentAt.splice(at, 1)
      riding--
    }
  }
  /**
   * Deletes the entries from `first` to `last` (a contiguous run that `pending` returned); on
   * SQLite with the next add's transaction or soon after (see `deferred`).
   */
  const sent = (first: number, last: number): Promise<void> => {
    // Before the delete: should it commit and still fail, its numbers are not given again either.
    deleted.top = Math.max(deleted.top, last)
    let all = deferred
    for (let seq = first; all && seq <= last; seq++) all = offered.has(seq)
    // The relay publishes in order: nothing offered up to `last` is left to send.
    for (const seq of offered) if (seq <= last) offered.delete(seq)
    if (!all) return store.run(Effect.asVoid(remove.run(last, first, instance)))
    const tail = sentRuns.at(-1)
    if (tail !== undefined && sentRuns.length > riding && tail[1] + 1 === first) tail[1] = last
    else {
      sentRuns.push([first, last])
      sentAt.push(performance.now())
    }
    if (timer === undefined) arm(laterMs)
    return Promise.resolve()
  }
  const withDeletes = <A>(add: Sql<A>): Sql<A> => (deferred ? Effect.andThen(deleteRiding, add) : add)
  /** `withDeletes`, giving also the runs it deleted. */
  const withDeleted = <A>(add: Sql<A>): Sql<readonly [A, ReadonlyArray<[number, number]>]> =>
    deferred ? Effect.flatMap(deleteRiding, (runs) => Effect.map(add, (a) => [a, runs] as const)) : Effect.map(add, (a) => [a, noRuns] as const)
  return {
    /** Adds a message to publish; call inside the transaction of the change that caused it. */
    add: (topic: string, payload: string, qos: QoS = 1): Sql<void> => withDeletes(Effect.asVoid(insert.write(...values(topic, payload, qos)))),
    /**
     * `add`, giving the entry as written (with its sequence number), to read once the transaction
     * has committed (and only then: reading it tells the outbox that the sent entries this
     * transaction deleted are gone): for the relay's `offer` (publishing it at once when nothing
     * older is unsent).
     */
    added: (topic: string, payload: string, qos: QoS = 1): Sql<() => Entry> =>
      Effect.map(withDeleted(insertReturning.writeRows(...values(topic, payload, qos))), ([rows, runs]) => () => {
        const seq = Number(rows()[0]?.seq)
        if (deferred) {
          offered.add(seq)
          committed(runs)
        }
        return { seq, topic, payload, qos }
      }),
    pending: async (limit: number): Promise<ReadonlyArray<Entry>> => {
      await deleteSent()
      return store.run(
        Effect.map(pending.all(instance, limit), (rows) =>
          rows.map((r) => ({ seq: Number(r.seq), topic: String(r.topic), payload: String(r.payload), qos: Number(r.qos) as QoS }))
        )
      )
    },
    sent,
    /**
     * Deletes now the sent entries whose delete is deferred (SQLite, see `deferred`): after it,
     * what the table holds is what is not yet sent. For a caller that counts or waits (the relay's
     * `idle`, `/metrics`), never per message. Resolves once every delete begun before it is done.
     */
    flush: (): Promise<void> => (deferred ? deleteSent() : Promise.resolve()),
    /**
     * `sent` for several runs (in order) of what one batch published. On PostgreSQL in one
     * statement: in a cluster the instances share the numbering, so an instance's entries are
     * rarely consecutive and a batch is as many runs as entries (one delete each, before).
     */
    sentRuns: async (runs: ReadonlyArray<readonly [number, number]>): Promise<void> => {
      if (removeListed === undefined || runs.length < 2) {
        for (const [first, last] of runs) await sent(first, last)
        return
      }
      const seqs: Array<number> = []
      for (const [first, last] of runs) for (let seq = first; seq <= last; seq++) seqs.push(seq)
      return store.run(Effect.asVoid(removeListed.run(instance, seqs)))
    },
    size: async (): Promise<number> => {
      await deleteSent()
      return store.run(Effect.map(count.get(instance), (r) => Number(r?.n ?? 0)))
    },
    /** Takes over the unsent entries of dead instances; returns how many. */
    adopt: (dead: ReadonlyArray<string>): Promise<number> =>
      store.transaction(Effect.reduce(dead, () => 0, (n, d) => Effect.map(adopt.run(instance, d), (m) => n + m)))
  }
}

export type Outbox = Awaited<ReturnType<typeof make>>
