/**
 * The front's ingress log (`BATON_FRONT=log`, docs/front-thread.md 3.1): initiating events
 * committed in a SQLite file of their own, `front/ingress.db`, before the broker's PUBACK, with its
 * own group commit. Main's database records the highest entry it forwarded (`front_mark`, by this
 * log's id) in the transaction of what the entries became: nothing here is marked forwarded.
 *
 * Two invariants make that mark safe. `seq` is never given again: a rowid (no AUTOINCREMENT, as
 * main's log, `runtime/014`) is one more than the largest in the table, so `prune` always keeps
 * the newest row (an emptied table would start again at 1, under the mark: lost). And the file
 * has an identity, `meta.log_id`, random, written when it is created: a deleted or replaced file
 * gets a new one, so main's mark for it starts at 0; an older copy of the file (a restore) keeps
 * its id with a newest entry below the mark, which main refuses to start with.
 */
import { randomUUID } from "node:crypto"
import { join } from "node:path"
import { Effect } from "effect"
import { grouped, inserts, rowing, sized, values, type Pending } from "./GroupAppend.ts"
import { entryOf, type Entry } from "./IngressLog.ts"
import * as Sqlite from "./Sqlite.ts"
import { timeline, type Store } from "./Store.ts"

export const migrations = [
  {
    name: "front/001-ingress-log",
    sql: `CREATE TABLE meta (log_id TEXT NOT NULL);
    CREATE TABLE ingress_log (
      seq INTEGER PRIMARY KEY,
      topic TEXT NOT NULL,
      payload BLOB NOT NULL,
      size INTEGER NOT NULL,
      client_id TEXT,
      received_at TEXT NOT NULL
    )`
  }
]

/** The file under the data directory. */
export const pathIn = (dataDir: string): string => join(dataDir, "front", "ingress.db")

/** Opens (or creates) the front log at `path`. */
export const open = async (options: {
  readonly path: string
  readonly synchronous: "OFF" | "NORMAL" | "FULL"
  readonly previewBytes: number
  readonly maxBytes: number
  /** Called with a batch written but not committed yet (a kill point for the crash tests). */
  readonly beforeCommit?: () => void
  readonly onCheckpointError?: (message: string) => void
  /**
   * 0: no checkpointer thread of this connection's own (main's reading handle while the front
   * thread writes and checkpoints the file, `BATON_FRONT=thread`); Sqlite.ts's default otherwise.
   */
  readonly checkpointIntervalMs?: number
}) => {
  const store: Store = await Sqlite.open({
    path: options.path,
    synchronous: options.synchronous,
    ...(options.checkpointIntervalMs === undefined ? {} : { checkpointIntervalMs: options.checkpointIntervalMs }),
    ...(options.onCheckpointError === undefined ? {} : { onCheckpointError: options.onCheckpointError })
  })
  try {
    await store.migrate(migrations)
    // Written once, in a transaction of its own: a crash before it leaves no entry without it.
    const logId = await store.transaction(
      Effect.gen(function* () {
        const row = yield* store.query("SELECT log_id FROM meta").get()
        if (row !== undefined) return String(row.log_id)
        const id = randomUUID()
        yield* store.query("INSERT INTO meta (log_id) VALUES (?)").run(id)
        return id
      })
    )
    return make(store, logId, options)
  } catch (error) {
    await store.close()
    throw error
  }
}

const make = (store: Store, logId: string, options: Parameters<typeof open>[0]) => {
  const insertOf = sized(store, (n) => `INSERT INTO ingress_log (topic, payload, size, client_id, received_at) VALUES ${values(n, 5)}`)
  const after = store.query("SELECT seq, topic, payload, size, client_id FROM ingress_log WHERE seq > ? ORDER BY seq LIMIT ?")
  const newest = store.query("SELECT MAX(seq) AS seq FROM ingress_log")
  // The newest row stays (see the module's comment), whatever `mark` and `before` say.
  const prune = store.query("DELETE FROM ingress_log WHERE seq <= ? AND seq < (SELECT MAX(seq) FROM ingress_log) AND received_at < ? RETURNING seq")

  const flush = async (entries: Array<Pending>) => {
    const { at, kept } = rowing(options)
    try {
      // An INSERT per append (SQLite's statements cost no round trip).
      await store.transaction(inserts(insertOf, entries, (e) => [e.topic, kept(e), e.payload.length, e.clientId, at], 1, options.beforeCommit))
    } catch (error) {
      for (const e of entries) e.done(error as Error)
      return
    }
    timeline?.("c", entries.length)
    for (const e of entries) e.done()
  }

  return {
    /** The file's identity (`meta.log_id`). */
    logId,
    /** Resolves once the message is committed; messages appended together commit together. */
    append: grouped(store, flush),
    /** The highest `seq` in the file; 0 when it holds none. */
    newest: (): Promise<number> => store.run(Effect.map(newest.get(), (r) => Number(r?.seq ?? 0))),
    /** Up to `limit` entries above `mark`, in `seq` order. */
    after: (mark: number, limit: number): Promise<ReadonlyArray<Entry>> =>
      store.run(Effect.map(after.all(mark, limit), (rows) => rows.map(entryOf))),
    /**
     * Deletes the entries up to `mark` (forwarded) received before `before`, the newest row
     * always kept; answers the highest `seq` deleted (0: none), up to which main forgets the seen ids.
     */
    prune: (before: Date, mark: number): Promise<number> =>
      store.run(Effect.map(prune.all(mark, before.toISOString()), (rows) => rows.reduce((top, r) => Math.max(top, Number(r.seq)), 0))),
    close: (): Promise<void> => store.close()
  }
}

export type FrontLog = ReturnType<typeof make>
