/**
 * The workflow event pattern's workflow processor (docs/concepts.md, section 4), usable by any
 * consumer: a consumer that fails on a message hands it over (message, error, original topic,
 * consumer, attempt history, causation trail) and moves on at once. The workflow processor runs
 * the repair registered for the message's type; a repaired message is resubmitted to the original
 * consumer only, as a new message (new envelope id, `causationId` = the failed one). What cannot
 * be repaired goes to the durable dashboard, where a person resubmits it corrected or discards it.
 * Every hand-off is recorded, and every transition is announced on `events/`.
 */
import { Conflict, Envelope, Log, NotFound, Sensitive, Topics, type Processor, type Repair } from "@baton/core"
import { ddl, Page, Postgres, type Outbox, type Sql, type SqlGen, type Store } from "@baton/store"
import { Effect } from "effect"
import type { Held, Parked, Parking } from "./Parking.ts"

/** What a consumer hands over when it fails on a message. */
export interface HandOff {
  readonly processor: string
  /** The topic the message came on, as clients know it. */
  readonly topic: string
  readonly envelope: Envelope.Envelope
  readonly error: string
  readonly attempts: ReadonlyArray<{ readonly attempt: number; readonly error: string; readonly at: string }>
  /** Ids from the initiating event to the failed message. */
  readonly trail: ReadonlyArray<string>
}

export type { Repair }

export const events = {
  keyHeld: "key-held",
  parked: "message-parked",
  alert: "parking-alert",
  repaired: "message-repaired",
  added: "dashboard-entry-added",
  resubmitted: "dashboard-entry-resubmitted",
  discarded: "dashboard-entry-discarded",
  released: "key-released"
} as const

export type EntryStatus = "repaired" | "open" | "resubmitted" | "discarded"

export interface Entry {
  readonly id: string
  readonly processor: string
  readonly topic: string
  readonly key: string
  readonly type: string
  readonly failedId: string
  readonly error: string
  readonly status: EntryStatus
  /** The discard reason, or the id of the resubmitted message. */
  readonly resolution: string | undefined
  /** The failed message's data. */
  readonly payload: unknown
  /** The data of the message sent in its place (repaired, or resubmitted corrected or as it was). */
  readonly resubmittedPayload: unknown
  readonly attempts: HandOff["attempts"]
  readonly trail: ReadonlyArray<string>
  readonly createdAt: string
  readonly resolvedAt: string | undefined
}

export const migrations = [
  {
    name: "repair/002-dashboard",
    sql: ddl(
      (t) => `CREATE TABLE dashboard (
      id TEXT PRIMARY KEY,
      processor TEXT NOT NULL,
      topic TEXT NOT NULL,
      key TEXT NOT NULL,
      type TEXT NOT NULL,
      failed_id TEXT NOT NULL UNIQUE,
      envelope TEXT NOT NULL,
      error TEXT NOT NULL,
      attempts TEXT NOT NULL,
      trail TEXT NOT NULL,
      status TEXT NOT NULL,
      resolution TEXT,
      created_at TEXT NOT NULL,
      resolved_at TEXT${t.rowid}
    );
    CREATE INDEX dashboard_status ON dashboard (status, created_at);`
    )
  },
  { name: "repair/003-dashboard-resubmitted", sql: "ALTER TABLE dashboard ADD COLUMN resubmitted TEXT" }
]

export interface Limits {
  /** Parked messages of one key before an alert. */
  readonly maxParked: number
  /** Age of a hold before an alert. */
  readonly maxHeldMs: number
}

const entryOf = (r: Record<string, unknown>): Entry => {
  const envelope = JSON.parse(String(r.envelope)) as Envelope.Envelope
  return {
    id: String(r.id),
    processor: String(r.processor),
    topic: String(r.topic),
    key: String(r.key),
    type: String(r.type),
    failedId: String(r.failed_id),
    error: String(r.error),
    status: String(r.status) as EntryStatus,
    resolution: r.resolution === null || r.resolution === undefined ? undefined : String(r.resolution),
    payload: envelope.data,
    resubmittedPayload: r.resubmitted === null || r.resubmitted === undefined ? undefined : JSON.parse(String(r.resubmitted)),
    attempts: JSON.parse(String(r.attempts)) as HandOff["attempts"],
    trail: JSON.parse(String(r.trail)) as ReadonlyArray<string>,
    createdAt: String(r.created_at),
    resolvedAt: r.resolved_at === null || r.resolved_at === undefined ? undefined : String(r.resolved_at)
  }
}


/**
 * Records a message in the inboxes of its local consumers, inside the caller's transaction (the
 * runtime's router); yields the deliveries to run after the commit.
 */
export type Route = (topic: string, envelope: Envelope.Envelope, payload: string) => Sql<ReadonlyArray<() => void>, unknown>

export const make = async (deps: {
  readonly store: Store
  readonly parking: Parking
  readonly outbox: Outbox.Outbox
  readonly repairs: Readonly<Record<string, Repair>>
  readonly limits: Limits
  readonly logger: Log.Logger
  /** Records a message in a local consumer's inbox (inside the transaction); yields its deliveries. */
  readonly route: Route
  /** Runs an unparked message on its consumer, after the commit. */
  readonly schedule: (processor: string, parked: Parked) => void
  /** Tells the outbox relay that there is something to publish. */
  readonly poke: () => void
  readonly clock?: Envelope.Clock
}) => {
  const { store, parking, outbox, logger } = deps
  const clock = deps.clock ?? Envelope.systemClock
  await store.migrate(migrations)
  const insert = store.query(
    `INSERT INTO dashboard (id, processor, topic, key, type, failed_id, envelope, error, attempts, trail, status, resolution, created_at, resolved_at, resubmitted)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`
  )
  const get = store.query("SELECT * FROM dashboard WHERE id = ?")
  const lock = store.query(`SELECT * FROM dashboard WHERE id = ?${Postgres.forUpdate(store.dialect)}`)
  const list = store.query("SELECT * FROM dashboard WHERE status = ? ORDER BY created_at, rowid LIMIT ?")
  const listAll = store.query("SELECT * FROM dashboard ORDER BY created_at, rowid LIMIT ?")
  const resolve = store.query("UPDATE dashboard SET status = ?, resolution = ?, resubmitted = ?, resolved_at = ? WHERE id = ? AND status = 'open' RETURNING id")

  /** Announces on `events/` through the outbox (inside the caller's transaction). */
  const announce = (type: string, key: string, correlationId: string, data: Record<string, unknown>): Sql<void> => {
    const envelope: Envelope.Envelope = { id: clock.newId(), type, key, correlationId, causationId: correlationId, occurredAt: clock.now().toISOString(), data }
    return outbox.add(Topics.event(type), Envelope.encode(envelope))
  }

  const record = (h: HandOff, status: EntryStatus, resolution: string | null, resubmitted?: unknown): Sql<string> => {
    const id = clock.newId()
    const at = clock.now().toISOString()
    return Effect.as(
      insert.run(id, h.processor, h.topic, h.envelope.key, h.envelope.type, h.envelope.id, Envelope.encode(h.envelope), h.error, JSON.stringify(h.attempts), JSON.stringify(h.trail), status, resolution, at, status === "open" ? null : at, resubmitted === undefined ? null : JSON.stringify(resubmitted)),
      id
    )
  }

  /** The new message that replaces a failed one, for its consumer only. */
  const resubmission = (failed: Envelope.Envelope, data: unknown): Envelope.Envelope => ({
    id: clock.newId(),
    type: failed.type,
    correlationId: failed.correlationId,
    causationId: failed.id,
    key: failed.key,
    ...(failed.replyTo === undefined ? {} : { replyTo: failed.replyTo }),
    occurredAt: clock.now().toISOString(),
    // It stays in the failed message's trace.
    ...(failed.traceparent === undefined ? {} : { traceparent: failed.traceparent }),
    // The repaired data follows the failed message's schema version.
    ...(failed.version === undefined ? {} : { version: failed.version }),
    data
  })

  const processor: Processor = {
    name: "workflow-processor",
    consumes: [],
    topics: [Topics.repair],
    handle: Effect.fnUntraced(function* (event: Envelope.Envelope) {
      const h = event.data as HandOff
      const failed = h.envelope
      let fix: ReturnType<Repair>
      try {
        fix = deps.repairs[failed.type]?.(failed, h.error)
      } catch (error) {
        logger.log("warn", "repair threw; sending to the dashboard", { type: failed.type, reason: Log.reason(error) })
        fix = undefined
      }
      if (fix !== undefined) {
        const resubmitted = resubmission(failed, fix.data)
        yield* parking.resubmitted(h.processor, failed.key, failed.id, resubmitted.id)
        yield* record(h, "repaired", resubmitted.id, fix.data)
        logger.log("info", "message repaired", { processor: h.processor, key: failed.key, failed: failed.id, changes: fix.changes.join("; ") })
        return [
          { id: resubmitted.id, type: failed.type, topic: Topics.resubmit(h.processor), key: failed.key, correlationId: failed.correlationId, causationId: failed.id, ...(resubmitted.version === undefined ? {} : { version: resubmitted.version }), data: fix.data },
          { type: events.repaired, key: failed.key, data: { processor: h.processor, key: failed.key, failedId: failed.id, resubmittedId: resubmitted.id, error: h.error, changes: fix.changes } }
        ]
      }
      const entryId = yield* record(h, "open", null)
      logger.log("warn", "message sent to the dashboard", { processor: h.processor, key: failed.key, failed: failed.id, entry: entryId, reason: h.error })
      return [{ type: events.added, key: failed.key, data: { entryId, processor: h.processor, key: failed.key, failedId: failed.id, type: failed.type, error: h.error } }]
    })
  }

  /** An open entry and the message that failed (locked until the resolution commits), or the reason it cannot be resolved. */
  const open = Effect.fnUntraced(function* (id: string): SqlGen<{ readonly entry: Entry; readonly failed: Envelope.Envelope }, NotFound | Conflict> {
    const r = yield* lock.get(id)
    if (r === undefined) return yield* Effect.fail(new NotFound(`no dashboard entry ${id}`))
    const entry = entryOf(r)
    if (entry.status !== "open") return yield* Effect.fail(new Conflict(`dashboard entry ${id} is ${entry.status}${entry.resolution === undefined ? "" : ` (${entry.resolution})`}`))
    return { entry, failed: JSON.parse(String(r.envelope)) as Envelope.Envelope }
  })

  /** Marks an open entry resolved; a concurrent resolution that won is a conflict. */
  const resolved = (id: string, status: "resubmitted" | "discarded", resolution: string, resubmitted?: unknown): Sql<void, Conflict> =>
    Effect.flatMap(resolve.run(status, resolution, resubmitted === undefined ? null : JSON.stringify(resubmitted), clock.now().toISOString(), id), (n) =>
      n > 0 ? Effect.void : Effect.fail(new Conflict(`dashboard entry ${id} was resolved meanwhile`))
    )

  /** The entry as it is now (inside the caller's transaction). */
  const current = (id: string): Sql<Entry> => Effect.map(get.get(id), (r) => entryOf(r!))

  return {
    processor,
    list: (status: EntryStatus | "all", limit: number): Promise<ReadonlyArray<Entry>> =>
      store.run(Effect.map(status === "all" ? listAll.all(limit) : list.all(status, limit), (rows) => rows.map(entryOf))),
    /** A page of entries in the order they were recorded (`desc`: newest first). */
    page: async (status: EntryStatus | "all", req: Page.Request): Promise<Page.Page<Entry>> => {
      const { items, next } = await Page.page(store, { select: "*", from: "dashboard", ...(status === "all" ? {} : { where: ["status = ?"], params: [status] }), keys: Page.arrival }, req)
      return { items: items.map(entryOf), next }
    },
    /** Resubmits an entry's message to its consumer, with corrected data when given (the caller logs who did it). */
    resubmit: async (id: string, data: unknown): Promise<Entry> => {
      const { entry, deliveries } = await store.transaction(
        Effect.gen(function* () {
          const { entry, failed } = yield* open(id)
          const message = resubmission(failed, data === undefined ? failed.data : data)
          yield* resolved(id, "resubmitted", message.id, message.data)
          yield* parking.resubmitted(entry.processor, entry.key, entry.failedId, message.id)
          yield* announce(events.resubmitted, entry.key, failed.correlationId, { entryId: id, processor: entry.processor, key: entry.key, failedId: entry.failedId, resubmittedId: message.id, corrected: data !== undefined })
          const deliveries = yield* deps.route(Topics.resubmit(entry.processor), message, Envelope.encode(message))
          return { entry: yield* current(id), deliveries }
        })
      )
      for (const deliver of deliveries) deliver()
      deps.poke()
      return entry
    },
    /** Discards an entry's message for good; its key is released and its parked messages drain (the caller logs who did it). */
    discard: async (id: string, note: string): Promise<Entry> => {
      // The operator's reason is published: no card number in it.
      const reason = Sensitive.text(note)
      const { entry, unparked } = await store.transaction(
        Effect.gen(function* () {
          const { entry, failed } = yield* open(id)
          yield* resolved(id, "discarded", reason)
          yield* announce(events.discarded, entry.key, failed.correlationId, { entryId: id, processor: entry.processor, key: entry.key, failedId: entry.failedId, reason })
          const held = yield* parking.held(entry.processor, entry.key)
          if (held?.failedId !== entry.failedId) return { entry: yield* current(id), unparked: undefined }
          yield* parking.release(entry.processor, entry.key)
          yield* announce(events.released, entry.key, failed.correlationId, { processor: entry.processor, key: entry.key, parked: yield* parking.parked(entry.processor, entry.key) })
          const next = yield* parking.next(entry.processor, entry.key)
          return { entry: yield* current(id), unparked: next === undefined ? undefined : { processor: entry.processor, next } }
        })
      )
      if (unparked !== undefined) deps.schedule(unparked.processor, unparked.next)
      deps.poke()
      return entry
    },
    /** Alerts about holds older than the limit, once per hold (run periodically). */
    sweep: async (now: Date): Promise<number> => {
      const alerts = await store.transaction(
        Effect.gen(function* () {
          const alerts: Array<{ readonly held: Held; readonly age: number }> = []
          for (const h of yield* parking.holds()) {
            const age = now.getTime() - Date.parse(h.since)
            if (age <= deps.limits.maxHeldMs || h.alerted?.split(",").includes("age") === true) continue
            // Atomic: another instance's sweep that alerted meanwhile wins, and this one skips it.
            const held = yield* parking.alert(h.processor, h.key, "age")
            if (held === undefined) continue
            yield* announce(events.alert, held.key, held.failedId, { processor: held.processor, key: held.key, reason: "age", heldMs: age, limitMs: deps.limits.maxHeldMs, parked: held.parked })
            alerts.push({ held, age })
          }
          return alerts
        })
      )
      for (const { held, age } of alerts) logger.log("warn", "parking alert", { processor: held.processor, key: held.key, reason: "age", "held-ms": age })
      if (alerts.length > 0) deps.poke()
      return alerts.length
    }
  }
}

export type WorkflowProcessor = Awaited<ReturnType<typeof make>>
