/**
 * The workflow event pattern's workflow processor (EDA-NOTES.md, section 4), usable by any
 * consumer: a consumer that fails on a message hands it over (message, error, original topic,
 * consumer, attempt history, causation trail) and moves on at once. The workflow processor runs
 * the repair registered for the message's type; a repaired message is resubmitted to the original
 * consumer only, as a new message (new envelope id, `causationId` = the failed one). What cannot
 * be repaired goes to the durable dashboard, where a person resubmits it corrected or discards it.
 * Every hand-off is recorded, and every transition is announced on `events/`.
 */
import { Conflict, Envelope, Log, NotFound, Topics, type Processor, type Repair } from "@baton/core"
import type { Outbox, Store } from "@baton/store"
import type { Parked, Parking } from "./Parking.ts"

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
  readonly payload: unknown
  readonly attempts: HandOff["attempts"]
  readonly trail: ReadonlyArray<string>
  readonly createdAt: string
  readonly resolvedAt: string | undefined
}

export const migrations = [
  {
    name: "repair/002-dashboard",
    sql: `CREATE TABLE dashboard (
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
      resolved_at TEXT
    );
    CREATE INDEX dashboard_status ON dashboard (status, created_at);`
  }
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
    resolution: r.resolution === null ? undefined : String(r.resolution),
    payload: envelope.data,
    attempts: JSON.parse(String(r.attempts)) as HandOff["attempts"],
    trail: JSON.parse(String(r.trail)) as ReadonlyArray<string>,
    createdAt: String(r.created_at),
    resolvedAt: r.resolved_at === null ? undefined : String(r.resolved_at)
  }
}

export const make = (deps: {
  readonly store: Store
  readonly parking: Parking
  readonly outbox: Outbox.Outbox
  readonly repairs: Readonly<Record<string, Repair>>
  readonly limits: Limits
  readonly logger: Log.Logger
  /** Records a message in a local consumer's inbox (inside the transaction); returns its delivery. */
  readonly route: (topic: string, envelope: Envelope.Envelope, payload: string) => ReadonlyArray<() => void>
  /** Runs an unparked message on its consumer, after the commit. */
  readonly schedule: (processor: string, parked: Parked) => void
  /** Tells the outbox relay that there is something to publish. */
  readonly poke: () => void
  readonly clock?: Envelope.Clock
}) => {
  const { store, parking, outbox, logger } = deps
  const clock = deps.clock ?? Envelope.systemClock
  store.migrate(migrations)
  const db = store.db
  const insert = db.prepare(
    `INSERT OR IGNORE INTO dashboard (id, processor, topic, key, type, failed_id, envelope, error, attempts, trail, status, resolution, created_at, resolved_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
  )
  const get = db.prepare("SELECT * FROM dashboard WHERE id = ?")
  const list = db.prepare("SELECT * FROM dashboard WHERE status = ? ORDER BY created_at, rowid LIMIT ?")
  const listAll = db.prepare("SELECT * FROM dashboard ORDER BY created_at, rowid LIMIT ?")
  const resolve = db.prepare("UPDATE dashboard SET status = ?, resolution = ?, resolved_at = ? WHERE id = ? AND status = 'open'")

  /** Announces on `events/` through the outbox (inside the caller's transaction). */
  const announce = (type: string, key: string, correlationId: string, data: Record<string, unknown>) => {
    const envelope: Envelope.Envelope = { id: clock.newId(), type, key, correlationId, causationId: correlationId, occurredAt: clock.now().toISOString(), data }
    outbox.add(Topics.event(type), Envelope.encode(envelope))
  }

  const record = (h: HandOff, status: EntryStatus, resolution: string | null): string => {
    const id = clock.newId()
    const at = clock.now().toISOString()
    insert.run(id, h.processor, h.topic, h.envelope.key, h.envelope.type, h.envelope.id, Envelope.encode(h.envelope), h.error, JSON.stringify(h.attempts), JSON.stringify(h.trail), status, resolution, at, status === "open" ? null : at)
    return id
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
    data
  })

  const processor: Processor = {
    name: "workflow-processor",
    consumes: [],
    topics: [Topics.repair],
    handle: (event) => {
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
        parking.resubmitted(h.processor, failed.key, failed.id, resubmitted.id)
        record(h, "repaired", resubmitted.id)
        logger.log("info", "message repaired", { processor: h.processor, key: failed.key, failed: failed.id, changes: fix.changes.join("; ") })
        return [
          { id: resubmitted.id, type: failed.type, topic: Topics.resubmit(h.processor), key: failed.key, correlationId: failed.correlationId, causationId: failed.id, data: fix.data },
          { type: events.repaired, key: failed.key, data: { processor: h.processor, key: failed.key, failedId: failed.id, resubmittedId: resubmitted.id, error: h.error, changes: fix.changes } }
        ]
      }
      const entryId = record(h, "open", null)
      logger.log("warn", "message sent to the dashboard", { processor: h.processor, key: failed.key, failed: failed.id, entry: entryId, reason: h.error })
      return [{ type: events.added, key: failed.key, data: { entryId, processor: h.processor, key: failed.key, failedId: failed.id, type: failed.type, error: h.error } }]
    }
  }

  /** An open entry and the message that failed, or the reason it cannot be resolved. */
  const open = (id: string): { readonly entry: Entry; readonly failed: Envelope.Envelope } => {
    const r = get.get(id)
    if (r === undefined) throw new NotFound(`no dashboard entry ${id}`)
    const entry = entryOf(r)
    if (entry.status !== "open") throw new Conflict(`dashboard entry ${id} is ${entry.status}${entry.resolution === undefined ? "" : ` (${entry.resolution})`}`)
    return { entry, failed: JSON.parse(String(r.envelope)) as Envelope.Envelope }
  }

  return {
    processor,
    list: (status: EntryStatus | "all", limit: number): ReadonlyArray<Entry> => (status === "all" ? listAll.all(limit) : list.all(status, limit)).map(entryOf),
    /** Resubmits an entry's message to its consumer, with corrected data when given. */
    resubmit: (id: string, data: unknown): Entry => {
      const deliveries = store.transaction(() => {
        const { entry, failed } = open(id)
        const message = resubmission(failed, data === undefined ? failed.data : data)
        resolve.run("resubmitted", message.id, clock.now().toISOString(), id)
        parking.resubmitted(entry.processor, entry.key, entry.failedId, message.id)
        announce(events.resubmitted, entry.key, failed.correlationId, { entryId: id, processor: entry.processor, key: entry.key, failedId: entry.failedId, resubmittedId: message.id, corrected: data !== undefined })
        return deps.route(Topics.resubmit(entry.processor), message, Envelope.encode(message))
      })
      for (const deliver of deliveries) deliver()
      deps.poke()
      logger.log("info", "dashboard entry resubmitted", { entry: id })
      return entryOf(get.get(id)!)
    },
    /** Discards an entry's message for good; its key is released and its parked messages drain. */
    discard: (id: string, reason: string): Entry => {
      const unparked = store.transaction(() => {
        const { entry, failed } = open(id)
        resolve.run("discarded", reason, clock.now().toISOString(), id)
        announce(events.discarded, entry.key, failed.correlationId, { entryId: id, processor: entry.processor, key: entry.key, failedId: entry.failedId, reason })
        const held = parking.held(entry.processor, entry.key)
        if (held?.failedId !== entry.failedId) return undefined
        parking.release(entry.processor, entry.key)
        announce(events.released, entry.key, failed.correlationId, { processor: entry.processor, key: entry.key, parked: parking.parked(entry.processor, entry.key) })
        const next = parking.next(entry.processor, entry.key)
        return next === undefined ? undefined : { processor: entry.processor, next }
      })
      if (unparked !== undefined) deps.schedule(unparked.processor, unparked.next)
      deps.poke()
      logger.log("info", "dashboard entry discarded", { entry: id, reason })
      return entryOf(get.get(id)!)
    },
    /** Alerts about holds older than the limit, once per hold (run periodically). */
    sweep: (now: Date): number => {
      const alerts = store.transaction(() => {
        let alerts = 0
        for (const h of parking.all()) {
          const age = now.getTime() - Date.parse(h.since)
          if (age <= deps.limits.maxHeldMs || h.alerted?.includes("age") === true) continue
          parking.alerted(h.processor, h.key, [h.alerted, "age"].filter((x) => x !== undefined).join(","))
          announce(events.alert, h.key, h.failedId, { processor: h.processor, key: h.key, reason: "age", heldMs: age, limitMs: deps.limits.maxHeldMs, parked: h.parked })
          logger.log("warn", "parking alert", { processor: h.processor, key: h.key, reason: "age", "held-ms": age })
          alerts++
        }
        return alerts
      })
      if (alerts > 0) deps.poke()
      return alerts
    }
  }
}

export type WorkflowProcessor = ReturnType<typeof make>
