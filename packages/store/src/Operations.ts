/**
 * The operations log: every operator action over HTTP (restart, resubmit, discard), who did it,
 * when, on what, why, and how it ended, kept in the store next to the rejections it resolves.
 */
import { Effect } from "effect"
import * as Page from "./Page.ts"
import { ddl, type Store } from "./Store.ts"

export interface Operation {
  /** `workflow-restart`, `workflow-discard`, `dashboard-resubmit`, `dashboard-discard`. */
  readonly action: string
  /** The workflow or dashboard entry acted on. */
  readonly target: string
  readonly user: string
  readonly reason: string | undefined
  /** The HTTP status of the answer: 200, or why it was refused (400, 404, 409). */
  readonly status: number
  /** What was sent (card numbers masked) and what came of it. */
  readonly detail: Readonly<Record<string, unknown>>
}

export interface Recorded extends Operation {
  readonly id: string
  readonly at: string
}

export const migrations = [
  {
    name: "runtime/002-operations",
    sql: ddl(
      (t) => `CREATE TABLE operations (
      id TEXT PRIMARY KEY,
      at TEXT NOT NULL,
      username TEXT NOT NULL,
      action TEXT NOT NULL,
      target TEXT NOT NULL,
      reason TEXT,
      status ${t.int} NOT NULL,
      detail TEXT NOT NULL${t.rowid}
    );
    CREATE INDEX operations_target ON operations (target);`
    )
  }
]

const recordedOf = (r: Record<string, unknown>): Recorded => ({
  id: String(r.id),
  at: String(r.at),
  user: String(r.username),
  action: String(r.action),
  target: String(r.target),
  reason: r.reason === null || r.reason === undefined ? undefined : String(r.reason),
  status: Number(r.status),
  detail: JSON.parse(String(r.detail)) as Record<string, unknown>
})

export const make = async (store: Store) => {
  await store.migrate(migrations)
  const insert = store.query("INSERT INTO operations (id, at, username, action, target, reason, status, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
  return {
    record: (id: string, at: Date, op: Operation): Promise<Recorded> =>
      store.run(Effect.as(insert.run(id, at.toISOString(), op.user, op.action, op.target, op.reason ?? null, op.status, JSON.stringify(op.detail)), { id, at: at.toISOString(), ...op })),
    /** A page of the log, in the order operations were recorded; only those on `target` when given. */
    page: async (req: Page.Request, target?: string): Promise<Page.Page<Recorded>> => {
      const { items, next } = await Page.page(
        store,
        { select: "*", from: "operations", ...(target === undefined ? {} : { where: ["target = ?"], params: [target] }), keys: Page.arrival },
        req
      )
      return { items: items.map(recordedOf), next }
    }
  }
}

export type Log = Awaited<ReturnType<typeof make>>
