/**
 * The flows API: the causation graph of one initiating event (its correlation), read from what the
 * store already keeps, with no statement added to a message's path. Sources:
 * - the inbox: every message a processor received, with its envelope, until the retention sweep
 *   prunes it (`BATON_RETENTION_HOURS`), and its status (pending, done, failed);
 * - the tap: the last envelopes the outbox relay published (in memory, `tapSize` of them, as many
 *   as fit in its buffer), for the events no local processor consumes (the end of a chain);
 * - the rejections, the dashboard and the held keys of the workflow event pattern, the mediator's
 *   workflow of the same id.
 * Searches scan the inbox rows received in their time window (at most `scanLimit`, newest first).
 */
import { Envelope as Envelopes, type Rejection } from "@baton/core"
import type { Row, Store } from "@baton/store"

export interface Delivery {
  readonly processor: string
  /** pending, done, failed, or parked (behind a held key, the workflow event pattern). */
  readonly status: string
  readonly receivedAt: string
  readonly doneAt: string | undefined
}

export interface FlowEvent {
  readonly id: string
  readonly type: string
  readonly key: string
  readonly correlationId: string
  readonly causationId: string
  readonly occurredAt: string
  readonly topic: string
  readonly data: unknown
  /** What each processor that received it made of it; empty for an event nobody here consumes. */
  readonly deliveries: ReadonlyArray<Delivery>
}

export interface FlowRejection {
  readonly id: string
  readonly at: string
  readonly kind: string
  readonly topic: string
  readonly processor: string | undefined
  readonly reason: string
  readonly envelopeId: string | undefined
  /** `POST /errors/<id>/resubmit` accepts it (a processor failed on a valid message, not resubmitted yet). */
  readonly resubmittable: boolean
  /** The id of its resubmission, once resubmitted (Console.ts names it `<rejection id>/resubmitted`). */
  readonly resubmittedAs?: string
}

export interface Summary {
  readonly correlationId: string
  /** The initiating event, when it is still kept. */
  readonly initiating: { readonly id: string; readonly type: string; readonly key: string; readonly occurredAt: string } | undefined
  readonly events: number
  readonly types: ReadonlyArray<string>
  /** Deliveries not processed yet: waiting in an inbox, or parked behind a held key. */
  readonly pending: number
  readonly parked: number
  readonly failed: number
  readonly lastAt: string
}

/** The recent envelopes the relay published, in memory. */
export interface Tap {
  readonly record: (topic: string, payload: string) => void
  readonly recent: () => ReadonlyArray<{ readonly topic: string; readonly payload: string }>
  /** Calls `listener` with each envelope published from now on; returns the unsubscribe. */
  readonly listen: (listener: (topic: string, envelope: Envelopes.Envelope) => void) => () => void
}

/** Bytes of the tap's buffer per envelope it keeps, by default (the order flow's envelopes are about 0.5 KB). */
export const tapBytesPerEntry = 1024

/**
 * The last `size` envelopes published, as long as they fit in `bytes` (the oldest go first), their
 * topic and payload copied as UTF-8 into one buffer outside V8's heap. Kept as strings, every
 * envelope outlived two scavenges (the ring holds it for the next `size` publishes, seconds under
 * load): each was copied twice by the young generation's collector and then grew the old one (at
 * 200 orders/s, 0.45-0.6x the bytes promoted per scavenge without them: `TAIL_GC=1` of tail.ts). Copied here,
 * nothing of it stays on the heap, and the memory is bounded by bytes, not only by the count (a
 * count of 256 KB payloads was 2.5 GB). An envelope larger than the whole buffer is not kept.
 */
export const tap = (size: number, bytes: number = size * tapBytesPerEntry): Tap => {
  const capacity = size > 0 ? Math.max(0, Math.floor(bytes)) : 0
  // Written through once here, at start: each page's first touch costs a fault (12-21 us on this
  // VM, 3-6.5 ms a MB), which the first pass through the ring (about 2,000 orders for the default
  // 10 MB) otherwise paid on the relay's path, 2.25% of the order flow's CPU samples then.
  const buffer = Buffer.allocUnsafeSlow(capacity).fill(0)
  // Entry slots, a ring of `size`: where each starts in `buffer`, its topic's and its whole length,
  // and the parity of the lap of the buffer it was written in.
  const starts = new Int32Array(size)
  const topicLengths = new Int32Array(size)
  const lengths = new Int32Array(size)
  const laps = new Uint8Array(size)
  let head = 0
  let count = 0
  /** Where the next entry is written in `buffer`, and the parity of the lap it is on. */
  let cursor = 0
  let lap = 0
  const listeners = new Set<(topic: string, envelope: Envelopes.Envelope) => void>()
  const dropOldest = () => {
    head = (head + 1) % size
    count--
  }
  // The entries lie in the order written: first those of the previous lap, all at or after the
  // cursor, then those of this lap, before it. A write drops the oldest entries its bytes cover;
  // one that does not fit before the end starts the next lap at 0, dropping the previous lap's.
  const keep = (topic: string, payload: string) => {
    const topicLength = Buffer.byteLength(topic)
    const length = topicLength + Buffer.byteLength(payload)
    if (length > capacity) return
    if (cursor + length > capacity) {
      while (count > 0 && laps[head] !== lap) dropOldest()
      lap ^= 1
      cursor = 0
    }
    while (count > 0 && (count === size || (laps[head] !== lap && starts[head]! < cursor + length))) dropOldest()
    const slot = (head + count) % size
    starts[slot] = cursor
    topicLengths[slot] = topicLength
    lengths[slot] = length
    laps[slot] = lap
    buffer.write(topic, cursor, "utf8")
    buffer.write(payload, cursor + topicLength, "utf8")
    cursor += length
    count++
  }
  return {
    record: (topic, payload) => {
      if (capacity > 0) keep(topic, payload)
      // Parsed only when someone listens: the relay's path stays as it was.
      if (listeners.size === 0) return
      const envelope = parse(payload)
      if (envelope !== undefined) for (const l of listeners) l(topic, envelope)
    },
    recent: () =>
      Array.from({ length: count }, (_, i) => {
        const slot = (head + i) % size
        const start = starts[slot]!
        const payloadStart = start + topicLengths[slot]!
        return { topic: buffer.toString("utf8", start, payloadStart), payload: buffer.toString("utf8", payloadStart, start + lengths[slot]!) }
      }),
    listen: (listener) => {
      listeners.add(listener)
      return () => void listeners.delete(listener)
    }
  }
}

const parse = (payload: string): Envelopes.Envelope | undefined => {
  if (payload === "") return undefined
  try {
    const value = JSON.parse(payload) as Partial<Envelopes.Envelope>
    return typeof value?.id === "string" && typeof value.correlationId === "string" && typeof value.type === "string" ? (value as Envelopes.Envelope) : undefined
  } catch {
    return undefined
  }
}

/** `%text%` for `LIKE ... ESCAPE '\'`. */
const containing = (text: string) => `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`

/**
 * The correlation of a refused payload: a client's initiating event (refused at the door) has its
 * own id as its correlation, as the ingress would have stamped it.
 */
const correlationOf = (payload: string): string | undefined => {
  const e = parse(payload)
  if (e !== undefined) return e.correlationId
  try {
    const value = JSON.parse(payload) as { readonly id?: unknown; readonly correlationId?: unknown } | null
    const id = value?.correlationId ?? value?.id
    return typeof id === "string" ? id : undefined
  } catch {
    return undefined
  }
}

/** The envelope id of a rejection's resubmission: resubmitted once. */
export const resubmissionOf = (rejectionId: string) => `${rejectionId}/resubmitted`

export class BadQuery extends Error {
  override readonly name = "BadQuery"
}

export const make = (deps: {
  readonly store: Store
  readonly tap: Tap
  /** Rows a search reads at most. */
  readonly scanLimit?: number
  /** Whether the dashboard table exists (a processor parks failed messages). */
  readonly dashboard: boolean
}) => {
  const { store } = deps
  const scanLimit = deps.scanLimit ?? 20_000
  const inboxOf = store.query(
    "SELECT processor, envelope_id, topic, payload, status, received_at, done_at FROM inbox WHERE payload LIKE ? ESCAPE '\\' ORDER BY rowid"
  )
  const rejectionsOf = store.query("SELECT id, at, body FROM rejections WHERE body LIKE ? ESCAPE '\\' ORDER BY rowid")
  const dashboardOf = deps.dashboard
    ? store.query("SELECT id, processor, key, type, failed_id, error, status, resolution, created_at FROM dashboard WHERE trail LIKE ? ESCAPE '\\' ORDER BY rowid")
    : undefined
  const rejectionById = store.query("SELECT id, at, body FROM rejections WHERE id = ?")

  /** Events by id, with their deliveries, from inbox rows and the tap. */
  const gather = (rows: ReadonlyArray<Row>, keep: (e: Envelopes.Envelope) => boolean) => {
    const events = new Map<string, { event: Omit<FlowEvent, "deliveries">; deliveries: Array<Delivery> }>()
    const add = (e: Envelopes.Envelope, topic: string) => {
      let entry = events.get(e.id)
      if (entry === undefined) {
        entry = {
          event: { id: e.id, type: e.type, key: e.key, correlationId: e.correlationId, causationId: e.causationId, occurredAt: e.occurredAt, topic, data: e.data },
          deliveries: []
        }
        events.set(e.id, entry)
      }
      return entry
    }
    for (const r of rows) {
      const e = parse(String(r.payload))
      if (e === undefined || !keep(e)) continue
      add(e, String(r.topic)).deliveries.push({
        processor: String(r.processor),
        status: String(r.status),
        receivedAt: String(r.received_at),
        doneAt: r.done_at === null || r.done_at === undefined ? undefined : String(r.done_at)
      })
    }
    for (const { topic, payload } of deps.tap.recent()) {
      const e = parse(payload)
      if (e === undefined || !keep(e)) continue
      const entry = add(e, topic)
      // A public topic is what clients know: prefer it to an internal one.
      if (!topic.startsWith("$")) entry.event = { ...entry.event, topic }
    }
    return [...events.values()].map(({ event, deliveries }) => ({ ...event, deliveries })).sort((a, b) => a.occurredAt.localeCompare(b.occurredAt))
  }

  const rejectionOf = (r: Row): FlowRejection & { readonly payload: string } => {
    const body = JSON.parse(String(r.body)) as Rejection
    const envelopeId = body.envelopeId ?? parse(body.payload)?.id
    return {
      id: String(r.id),
      at: String(r.at),
      kind: body.kind,
      topic: body.topic,
      processor: body.processor,
      reason: body.reason,
      envelopeId,
      resubmittable: body.kind === "processing-failed" && body.processor !== undefined && envelopeId !== undefined,
      payload: body.payload
    }
  }

  /** The inbox rows received since `since` (newest first, at most `scanLimit`), as flows. */
  const scan = async (filter: { readonly since: Date; readonly key?: string; readonly type?: string; readonly correlationId?: string }) => {
    const where = ["received_at >= ?", "payload <> ''"]
    const params: Array<unknown> = [filter.since.toISOString()]
    if (filter.key !== undefined) {
      where.push("key = ?")
      params.push(filter.key)
    }
    if (filter.correlationId !== undefined) {
      where.push("payload LIKE ? ESCAPE '\\'")
      params.push(containing(`"correlationId":${JSON.stringify(filter.correlationId)}`))
    }
    const rows = await store.run(
      store.query(`SELECT processor, envelope_id, topic, payload, status, received_at, done_at FROM inbox WHERE ${where.join(" AND ")} ORDER BY rowid DESC LIMIT ?`).all(...params, scanLimit)
    )
    const since = filter.since.toISOString()
    const events = gather([...rows].reverse(), (e) =>
      (filter.key === undefined || e.key === filter.key) && (filter.correlationId === undefined || e.correlationId === filter.correlationId) && e.occurredAt >= since
    )
    const flows = new Map<string, Array<FlowEvent>>()
    for (const e of events) flows.set(e.correlationId, [...(flows.get(e.correlationId) ?? []), e])
    return [...flows.entries()].map(([correlationId, of]) => ({ correlationId, events: of }))
  }

  const summary = (correlationId: string, events: ReadonlyArray<FlowEvent>): Summary => {
    const first = events.find((e) => e.id === correlationId)
    const deliveries = events.flatMap((e) => e.deliveries)
    return {
      correlationId,
      initiating: first === undefined ? undefined : { id: first.id, type: first.type, key: first.key, occurredAt: first.occurredAt },
      events: events.length,
      types: [...new Set(events.map((e) => e.type))],
      pending: deliveries.filter((d) => d.status === "pending").length,
      parked: deliveries.filter((d) => d.status === "parked").length,
      failed: deliveries.filter((d) => d.status === "failed").length,
      lastAt: events.reduce((at, e) => (e.occurredAt > at ? e.occurredAt : at), "")
    }
  }

  const sinceOf = (params: URLSearchParams, defaultMinutes: number): Date => {
    const since = params.get("since")
    const minutes = params.get("minutes")
    if (since !== null) {
      const at = new Date(since)
      if (Number.isNaN(at.getTime())) throw new BadQuery(`since must be an ISO time (2026-01-31T12:00:00Z), got '${since}'`)
      return at
    }
    const m = minutes === null ? defaultMinutes : Number(minutes)
    if (!Number.isFinite(m) || m <= 0) throw new BadQuery(`minutes must be a positive number, got '${minutes}'`)
    return new Date(Date.now() - m * 60_000)
  }
  const limitOf = (params: URLSearchParams) => {
    const n = Math.floor(Number(params.get("limit") ?? 50))
    if (!Number.isFinite(n) || n < 1) throw new BadQuery(`limit must be a positive integer, got '${params.get("limit")}'`)
    return Math.min(n, 1000)
  }
  const textParam = (params: URLSearchParams, name: string) => {
    const v = params.get(name)?.trim()
    return v === undefined || v === "" ? undefined : v
  }

  return {
    /** The graph of one correlation: its events with their deliveries, its rejections and dashboard entries. */
    flow: async (correlationId: string) => {
      const pattern = containing(`"correlationId":${JSON.stringify(correlationId)}`)
      const rows = await store.run(inboxOf.all(pattern))
      const events = gather(rows, (e) => e.correlationId === correlationId)
      const ids = new Set(events.map((e) => e.id))
      const rejections = (await store.run(rejectionsOf.all(containing(correlationId))))
        .map(rejectionOf)
        .filter((r) => (r.envelopeId !== undefined && ids.has(r.envelopeId)) || correlationOf(r.payload) === correlationId)
        .map(({ payload: _, ...r }) => (ids.has(resubmissionOf(r.id)) ? { ...r, resubmittable: false, resubmittedAs: resubmissionOf(r.id) } : r))
      const dashboard =
        dashboardOf === undefined
          ? []
          : (await store.run(dashboardOf.all(containing(correlationId)))).map((r) => ({
              id: String(r.id),
              processor: String(r.processor),
              key: String(r.key),
              type: String(r.type),
              failedId: String(r.failed_id),
              error: String(r.error),
              status: String(r.status),
              resolution: r.resolution === null ? undefined : String(r.resolution),
              createdAt: String(r.created_at)
            }))
      return { correlationId, summary: summary(correlationId, events), events, rejections, dashboard }
    },
    /** `?correlationId=&type=&key=&since=|minutes=&limit=`: the flows seen in the window, newest first. */
    search: async (params: URLSearchParams) => {
      const type = textParam(params, "type")
      const key = textParam(params, "key")
      const correlationId = textParam(params, "correlationId")
      const flows = await scan({ since: sinceOf(params, 60), ...(key === undefined ? {} : { key }), ...(correlationId === undefined ? {} : { correlationId }) })
      const found = flows.filter((f) => type === undefined || f.events.some((e) => e.type === type)).map((f) => summary(f.correlationId, f.events))
      return { flows: found.sort((a, b) => b.lastAt.localeCompare(a.lastAt)).slice(0, limitOf(params)) }
    },
    /** `?type=X&notReached=Y&minutes=N`: initiating events of type X in the last N minutes whose flow has no event Y. */
    stuck: async (params: URLSearchParams) => {
      const type = textParam(params, "type")
      const notReached = textParam(params, "notReached")
      if (type === undefined || notReached === undefined) throw new BadQuery("stuck flows need ?type=<initiating event type>&notReached=<event type>[&minutes=N]")
      const flows = await scan({ since: sinceOf(params, 10) })
      const stuck = flows
        .filter((f) => f.events.some((e) => e.id === f.correlationId && e.type === type) && !f.events.some((e) => e.type === notReached))
        .map((f) => summary(f.correlationId, f.events))
      return { type, notReached, flows: stuck.sort((a, b) => (a.initiating?.occurredAt ?? "").localeCompare(b.initiating?.occurredAt ?? "")).slice(0, limitOf(params)) }
    },
    rejection: async (id: string) => {
      const r = await store.run(rejectionById.get(id))
      return r === undefined ? undefined : { ...rejectionOf(r), body: JSON.parse(String(r.body)) as Rejection }
    }
  }
}

export type Flows = ReturnType<typeof make>
