/**
 * The ingress: takes every initiating event published on `initiate/#`, checks its size, JSON,
 * topic and schema, wraps a bare object in a new envelope, and forwards the envelope on
 * `accepted/<name>` for the processors. Anything else goes to the error path, never silently away.
 */
import { Effect, Result } from "effect"
import { Envelope, Log, Topics, Trace, type App, type Initiating, type Message } from "@baton/core"
import { isUnavailable, squash, timeline, type FrontLog, type IngressLog, type Outbox, type Sql, type Store } from "@baton/store"
import * as Crash from "./Crash.ts"
import { RunElsewhere } from "./Decision.ts"
import * as Due from "./Due.ts"
import type { ErrorPath } from "./ErrorPath.ts"
import { untraced, type Tracing } from "./Observability.ts"
import type { Router } from "./Router.ts"

export type Verdict =
  | {
      readonly _tag: "Accepted"
      readonly envelope: Envelope.Envelope
      /**
       * The envelope is the ingress's own (a bare object wrapped, its id new): no resend can carry
       * its id, so it is not recorded among the ids seen (a resent bare object is a new event).
       */
      readonly wrapped?: true
    }
  | {
      readonly _tag: "Refused"
      readonly kind: "malformed-json" | "schema-violation" | "unknown-topic" | "oversized-payload"
      readonly reason: string
      readonly issues?: ReadonlyArray<Envelope.Issue>
    }

const none: ReadonlyArray<() => void> = []
/** An accepted entry as the ingress forwards it (`judged`). */
interface Routed {
  readonly envelope: Envelope.Envelope
  readonly payload: string
}
/** A batch judged (`forward`): its entries, their verdicts, what each accepted one became. */
interface Judged {
  readonly entries: ReadonlyArray<IngressLog.Entry>
  readonly verdicts: ReadonlyArray<Verdict>
  readonly routed: Array<Routed | undefined>
}
/** One decoder for every payload (without `stream`, each `decode` starts afresh). */
const utf8 = new TextDecoder("utf-8", { fatal: true })

const looksLikeEnvelope = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value) && "id" in value && "type" in value && "data" in value

/** Decides what happens to one message on `initiate/...`: pure, so it is tested without a broker. */
export const judge = (
  contracts: ReadonlyMap<string, Initiating>,
  message: Message,
  maxPayloadBytes: number,
  clock: Envelope.Clock = Envelope.systemClock,
  size: number = message.payload.length,
  /** The publisher, when the broker knows it: a `replyTo` must be one of its reply topics. */
  clientId: string | null = null
): Verdict => {
  if (size > maxPayloadBytes)
    return { _tag: "Refused", kind: "oversized-payload", reason: `payload of ${size} bytes exceeds the limit of ${maxPayloadBytes} bytes` }
  const name = Topics.initiatingName(message.topic) ?? ""
  const contract = contracts.get(name)
  if (contract === undefined) {
    const known = [...contracts.keys()].map(Topics.initiate).join(", ")
    return { _tag: "Refused", kind: "unknown-topic", reason: `no initiating event is published on ${message.topic}; known topics: ${known}` }
  }
  let json: unknown
  try {
    json = JSON.parse(utf8.decode(message.payload))
  } catch (error) {
    const why = error instanceof SyntaxError ? error.message : "payload is not valid UTF-8"
    return { _tag: "Refused", kind: "malformed-json", reason: `payload is not valid JSON: ${why}` }
  }
  let base: Envelope.Envelope
  if (looksLikeEnvelope(json)) {
    const input = Envelope.decodeInitiatingInput(json)
    if (Result.isFailure(input))
      return { _tag: "Refused", kind: "schema-violation", reason: "invalid envelope", issues: input.failure }
    const e = input.success
    if (e.type !== name)
      return { _tag: "Refused", kind: "schema-violation", reason: `envelope type '${e.type}' does not match topic ${message.topic}`, issues: [{ path: "type", message: `Expected "${name}"` }] }
    const replyProblem = e.replyTo === undefined ? undefined : Topics.replyToProblem(e.replyTo, clientId)
    if (replyProblem !== undefined) return { _tag: "Refused", kind: "schema-violation", reason: `replyTo ${replyProblem}`, issues: [{ path: "replyTo", message: replyProblem }] }
    base = {
      id: e.id,
      type: e.type,
      correlationId: e.correlationId ?? e.id,
      causationId: e.causationId ?? e.id,
      key: e.key ?? contract.key?.(e.data) ?? e.id,
      ...(e.replyTo === undefined ? {} : { replyTo: e.replyTo }),
      occurredAt: e.occurredAt ?? Envelope.occurred(clock),
      // A client's trace context is kept when well-formed; otherwise the ingress starts a trace.
      ...(Trace.parse(e.traceparent) === undefined ? {} : { traceparent: e.traceparent! }),
      data: e.data
    }
  } else {
    base = Envelope.initiate(name, json, {}, clock)
  }
  const data = contract.decode(base.data)
  if (Result.isFailure(data)) {
    const issues = data.failure.map((i) => (looksLikeEnvelope(json) ? { ...i, path: i.path === "" ? "data" : `data.${i.path}` } : i))
    return {
      _tag: "Refused",
      kind: "schema-violation",
      reason: `${Topics.initiate(name)} does not match its schema: ${issues.map((i) => `${i.path === "" ? "(root)" : i.path}: ${i.message}`).join("; ")}`,
      issues
    }
  }
  const key = looksLikeEnvelope(json) ? base.key : (contract.key?.(data.success) ?? base.key)
  // Valid JSON (`\u0000`) but not storable in PostgreSQL's TEXT (the seen ids, the inbox's keys):
  // its transaction would fail, and the drain, forwarding the log in order, would stop at it for good.
  if (base.id.includes("\u0000") || key.includes("\u0000"))
    return { _tag: "Refused", kind: "schema-violation", reason: "invalid envelope: a NUL character in its id or key", issues: [{ path: base.id.includes("\u0000") ? "id" : "key", message: "a NUL character" }] }
  // The data follows the current schema: its version, whatever a client's envelope says.
  const version = contract.version === undefined || contract.version === 1 ? {} : { version: contract.version }
  const envelope: Envelope.Envelope = { ...base, key, ...version, data: data.success }
  // Its data is what the contract decoded: a reader of the same declaration need not decode it again.
  const vouched = contract.vouch === undefined ? envelope : Envelope.vouch(envelope, contract.vouch)
  return looksLikeEnvelope(json) ? { _tag: "Accepted", envelope: vouched } : { _tag: "Accepted", envelope: vouched, wrapped: true }
}

export const contractsOf = (apps: ReadonlyArray<App>): ReadonlyMap<string, Initiating> =>
  new Map(apps.flatMap((app) => app.initiating.map((i) => [i.name, i] as const)))

/**
 * Where the ingress logs initiating events and where its drain takes them from, in order: main's
 * own log (`logSource`), or the front's file (`frontSource`, `BATON_FRONT=log`,
 * docs/front-thread.md 3.1).
 */
export interface Source {
  /** Commits an initiating event; true: forwarded in the same transaction (main's log's `inline`). */
  readonly append: (topic: string, payload: Buffer, clientId: string | null) => Promise<boolean>
  /** Up to `limit` entries to forward next, in order. */
  readonly unforwarded: (limit: number) => Promise<ReadonlyArray<IngressLog.Entry>>
  /** Inside the forward's transaction, before judging: of `entries`, those to forward (a repeated hand-over's dropped). */
  readonly fresh: (entries: ReadonlyArray<IngressLog.Entry>) => Sql<ReadonlyArray<IngressLog.Entry>>
  /** Inside the forward's transaction: records the entries forwarded (`seqs` in order). */
  readonly forwarded: (seqs: ReadonlyArray<number>) => Sql<void>
  /** Once the forward of entries up to `seq` committed (read, whether forwarded or dropped). */
  readonly committed: (seq: number) => void
  /**
   * Entries handed over from another file: its forward's commit is the `handover-committed` point,
   * and the drain lets the event loop turn between its pages (see `frontPage`).
   */
  readonly handover: boolean
  /** Most entries a forward's transaction takes. */
  readonly page: number
}

export const logSource = (log: IngressLog.IngressLog): Source => ({
  append: log.append,
  unforwarded: log.unforwarded,
  fresh: Effect.succeed,
  forwarded: (seqs) => log.forwarded(...seqs),
  committed: () => undefined,
  handover: false,
  page: 256
})

/**
 * The front's page: its entries are never forwarded in their append's transaction, so a burst is
 * the drain's; a page of 256 order flows run in one transaction held the event loop (and the
 * accepts behind it) for tens of ms. As many as a group commit holds (Sqlite.ts's `maxBatch`).
 */
const frontPage = 64

/** A front log's hand-over that skipped or repeated an entry past the mark: a defect, the runtime stops. */
export class HandoverOutOfOrder extends Error {
  override readonly name = "HandoverOutOfOrder"
}

/** Whether `error` (or what caused it) is a `HandoverOutOfOrder`. */
export const isOutOfOrder = (error: unknown): boolean => {
  for (let e = error, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) if (e instanceof HandoverOutOfOrder) return true
  return false
}

/** The front log read at start: its newest entry, and main's mark for it (`front_mark`, 0 when none). */
export const frontMark = async (store: Store, front: FrontLog.FrontLog): Promise<{ readonly mark: number; readonly newest: number }> => {
  const row = await store.run(store.query("SELECT seq FROM front_mark WHERE log_id = ?").get(front.logId))
  return { mark: Number(row?.seq ?? 0), newest: await front.newest() }
}

/**
 * The retention sweep over the front log (docs/front-thread.md 3.4): its entries forwarded (up to
 * main's mark) and received before `before`, its newest row kept, then main's seen envelope ids
 * up to the highest entry deleted; answers that entry (0: none). A crash between the two leaves
 * seen ids one sweep longer.
 */
export const pruneFront = async (store: Store, front: FrontLog.FrontLog, log: IngressLog.IngressLog, before: Date): Promise<number> => {
  const upTo = await front.prune(before, (await frontMark(store, front)).mark)
  if (upTo > 0) await log.forget(upTo)
  return upTo
}

/**
 * The front log as the drain's source: entries above main's mark, the mark moved in the
 * transaction of what they became. The mark is read in that transaction, not trusted from
 * memory: a forward that committed and failed before its cursor moved reads its entries again,
 * dropped there. What is left must start right above the mark, without a gap (`seq` is never
 * given again, FrontLog.ts): otherwise a defect.
 */
export const frontSource = (store: Store, front: FrontLog.FrontLog, mark: number, moved?: (mark: number) => void): Source => {
  const read = store.query("SELECT seq FROM front_mark WHERE log_id = ?")
  const write = store.query("INSERT INTO front_mark (log_id, seq) VALUES (?, ?) ON CONFLICT (log_id) DO UPDATE SET seq = excluded.seq")
  let cursor = mark
  return {
    append: async (topic, payload, clientId) => {
      await front.append(topic, payload, clientId)
      return false
    },
    unforwarded: (limit) => front.after(cursor, limit),
    fresh: (entries) =>
      Effect.flatMap(read.get(front.logId), (row) => {
        const at = Number(row?.seq ?? 0)
        const fresh = entries.filter((e) => e.seq > at)
        const gap = fresh.findIndex((e, i) => e.seq !== at + 1 + i)
        return gap === -1
          ? Effect.succeed(fresh)
          : Effect.die(new HandoverOutOfOrder(`front log ${front.logId}: entry ${fresh[gap]!.seq} handed over where ${at + 1 + gap} was due (mark ${at})`))
      }),
    forwarded: (seqs) => (seqs.length === 0 ? Effect.void : write.run(front.logId, seqs[seqs.length - 1]!).pipe(Effect.asVoid)),
    committed: (seq) => {
      if (seq <= cursor) return
      cursor = seq
      moved?.(seq)
    },
    handover: true,
    page: frontPage
  }
}

/**
 * The ingress worker. `receive` commits an initiating event to the durable log (the broker
 * acknowledges the publisher only after that); the drain judges logged events in order and, in
 * one transaction per batch, writes the accepted envelope to the outbox (or the refusal to the error
 * path) and marks the entry forwarded. A full envelope seen before is a client's retransmission:
 * it is forwarded once.
 */
export const make = (deps: {
  readonly contracts: ReadonlyMap<string, Initiating>
  readonly maxPayloadBytes: number
  readonly store: Store
  /** Main's log: its seen envelope ids, and what the ingress logs and drains unless `source` says otherwise. */
  readonly log: IngressLog.IngressLog
  /** Where initiating events are logged and drained from (main's log by default). */
  readonly source?: Source
  /** Sources drained once at start before `source`, in order (each holding older entries than the next). */
  readonly before?: ReadonlyArray<{ readonly source: Source; readonly drained?: (forwarded: number) => Promise<void> }>
  /** Called at each kill point after `Crash.point` (a test throws there: a kill, or a failure). */
  readonly point?: (name: Crash.Point) => void
  /** A defect that stops forwarding for good (a hand-over out of order): the runtime must end. */
  readonly fatal?: (error: unknown) => void
  readonly outbox: Outbox.Outbox
  readonly reject: ErrorPath
  /** Routes accepted events to local consumers in the same transaction (embedded broker). */
  readonly router?: Router
  /**
   * Forward a batch inside its append's transaction when nothing older is unforwarded (the log
   * must be made with `inline`); only for a single instance with the router (embedded broker).
   */
  readonly inline?: boolean
  readonly logger: Log.Logger
  /** The ingress span: the root of each initiating event's trace (or a child of the client's). */
  readonly tracing?: Tracing
  /** How long after a failed drain the log is drained again (500 ms). */
  readonly retryMs?: number
}) => {
  const tracing = deps.tracing ?? untraced
  const live = deps.source ?? logSource(deps.log)
  let poke: (() => void) | undefined
  let scheduled = false
  /** A drain failed: the next one, due without a publish to wake it (`stop` cancels it). */
  let retry: Due.Due | undefined
  let stopped = false
  /** A hand-over out of order (`HandoverOutOfOrder`): nothing is drained again. */
  let broken = false
  /** Events being appended to the log (`receive`): `idle` waits for them. */
  let appending = 0
  /** Resolved once none is being appended (made only when `idle` waits for one: nothing per event otherwise). */
  let appended: PromiseWithResolvers<void> | undefined

  /**
   * Judges logged entries and writes what each becomes, in order, inside the batch's transaction.
   * The envelope ids of the accepted full envelopes are recorded in one statement (one round trip
   * a batch); those of bare objects wrapped here are new, recorded nowhere: a statement and a page
   * of the seen ids less for each batch of them.
   */
  const forward = (entries: ReadonlyArray<IngressLog.Entry>, source: Source | undefined): Sql<ReadonlyArray<() => void>, RunElsewhere> =>
    Effect.suspend(() => {
      const again = judgedBefore(entries)
      const verdicts = again?.verdicts ?? entries.map((entry) => judge(deps.contracts, { topic: entry.topic, payload: entry.payload }, deps.maxPayloadBytes, Envelope.systemClock, entry.size, entry.clientId))
      const batch = again ?? (lastJudged = { entries, verdicts, routed: [] })
      const sightings = entries.flatMap((entry, i) => {
        const verdict = verdicts[i]!
        return verdict._tag === "Accepted" && verdict.wrapped !== true ? [{ envelopeId: verdict.envelope.id, seq: entry.seq }] : []
      })
      const local: Array<() => void> = []
      // The runs done in it (the router's `inline`): their spans end as rolled back when it fails.
      const rolledBack: Array<(cause: unknown) => void> = []
      // The entries in order, as plain steps (not a generator): a request-reply round trip is a batch of one.
      const from = (first: ReadonlySet<number>, i: number): Sql<ReadonlyArray<() => void>, RunElsewhere> =>
        i < entries.length
          ? Effect.flatMap(judged(entries[i]!, verdicts[i]!, first, batch.routed, i, rolledBack), (deliveries) => {
              local.push(...deliveries)
              return from(first, i + 1)
            })
          : source !== undefined
            ? Effect.as(source.forwarded(entries.map((e) => e.seq)), local)
            : Effect.succeed(local)
      const forwarded = Effect.flatMap(deps.log.firstSights(sightings), (first) => from(first, 0))
      return Effect.tapCause(forwarded, (cause) =>
        Effect.sync(() => {
          if (rolledBack.length === 0) return
          const error = squash(cause)
          for (const end of rolledBack.splice(0)) end(error)
        })
      )
    })
  /**
   * The batch last judged (its entries: each payload one publish's buffer, the same when its
   * transaction runs again) and what its accepted entries became (`routed`, by index): a batch
   * run again at once (a request failed in it, `inline.again`) forwards the same envelopes under
   * the same ingress spans. Judged again, each event had a second ingress span, without a
   * client's traceparent in a trace of its own: a request's failed run in one, its retry from the
   * queue in another (RequestReply.inline.test.ts). Forgotten once the batch committed.
   */
  let lastJudged: Judged | undefined
  const judgedBefore = (entries: ReadonlyArray<IngressLog.Entry>): Judged | undefined => {
    const last = lastJudged
    if (last === undefined || last.entries.length !== entries.length) return undefined
    for (let i = 0; i < entries.length; i++) if (entries[i]!.payload !== last.entries[i]!.payload) return undefined
    return last
  }

  /**
   * Writes what one judged entry becomes (`first`: the entries whose envelope id is seen first).
   * Built as it runs, inside `forward`'s generator: plain steps, not a generator of its own per entry.
   */
  const judged = (
    entry: IngressLog.Entry,
    verdict: ReturnType<typeof judge>,
    first: ReadonlySet<number>,
    routed: Array<Routed | undefined>,
    i: number,
    rolledBack: Array<(cause: unknown) => void>
  ): Sql<ReadonlyArray<() => void>, RunElsewhere> => {
    if (verdict._tag !== "Accepted")
      return Effect.as(
        deps.reject({
          topic: entry.topic,
          payload: entry.payload,
          size: entry.size,
          kind: verdict.kind,
          reason: verdict.reason,
          ...(verdict.issues === undefined ? {} : { issues: verdict.issues })
        }),
        [pokeRelay]
      )
    const accepted = verdict.envelope
    const topic = Topics.accepted(accepted.type)
    if (verdict.wrapped !== true && !first.has(entry.seq)) {
      deps.logger.log("info", "duplicate initiating event ignored", { id: accepted.id, topic: entry.topic, ...Envelope.logFields(accepted) })
      return Effect.succeed(none)
    }
    const { envelope, payload } = (routed[i] ??= ingressHop(accepted))
    if (deps.router !== undefined) return deps.router.route(topic, envelope, payload, true, undefined, rolledBack)
    return Effect.as(deps.outbox.add(topic, payload), [pokeRelay])
  }
  /** An accepted envelope as forwarded: under its ingress span (begun and ended here, once an event). */
  const ingressHop = (accepted: Envelope.Envelope): Routed => {
    const hop = tracing.begin(`ingress ${accepted.type}`, accepted.traceparent, { "baton.event.type": accepted.type, "baton.event.id": accepted.id, "baton.correlation_id": accepted.correlationId, "baton.causation_id": accepted.causationId, "baton.key": accepted.key })
    const envelope: Envelope.Envelope = { ...accepted, traceparent: hop.traceparent }
    const vouchedBy = Envelope.vouchedBy(accepted)
    if (vouchedBy !== undefined) Envelope.vouch(envelope, vouchedBy)
    hop.end()
    return { envelope, payload: Envelope.encode(envelope) }
  }

  const pokeRelay = () => poke?.()

  /**
   * Whether the log holds nothing unforwarded older than what is appended now: then a batch is
   * forwarded in its own append's transaction (`inline`, single-instance embedded setup). False
   * until the start-up drain found the log empty; false again as soon as a batch is left to the
   * drain, or an inline one or a drain failed; true again once a drain finds the log empty with
   * every batch left to it committed before that read (none can then be overtaken).
   */
  let clean = false
  /** Batches left to the drain: decided, and committed or failed. */
  let left = 0
  let leftSettled = 0

  const drainOnce = async (source: Source) => {
    let forwarded = 0
    for (;;) {
      // The front's file, stopped: what is left stays there for the next start (a drain that read
      // on while the front kept committing held `idle`, and so the stop, as long as the publishes
      // came). Not main's own log: a cluster forwards before the PUBACK (`forwardNow`), and a
      // single instance forwards there inline.
      if (stopped && forwarded > 0 && source.handover) return forwarded
      const quiet = left === leftSettled
      const decided = left
      const entries = await source.unforwarded(source.page)
      if (entries.length === 0) {
        if (source === live && quiet && left === decided && poke !== undefined && inlineEnabled) clean = true
        return forwarded
      }
      // One transaction per batch; deliveries to local consumers (and the relay's poke, when it
      // wrote to the outbox) only after its commit. A request run in it (the router's `inline`)
      // that failed: the batch runs again at once, that request refused (`inline.again`, up to once an entry).
      let again = entries.length
      let deliveries: ReadonlyArray<() => void>
      try {
        deliveries = await deps.store.transaction(
          Effect.flatMap(source.fresh(entries), (fresh) => forward(fresh, source)),
          (error) => again-- > 0 && inline.again(error)
        )
      } finally {
        lastJudged = undefined
      }
      if (source.handover) {
        Crash.point("handover-committed")
        deps.point?.("handover-committed")
      }
      source.committed(entries[entries.length - 1]!.seq)
      for (const deliver of deliveries) deliver()
      forwarded += entries.length
      // A turn of the event loop between pages: accepts (the front's commits, their PUBACKs) go in between.
      if (source.handover) await new Promise<void>((resolve) => setImmediate(resolve))
    }
  }
  // One drain at a time: two would read the same unforwarded entries.
  let chain: Promise<unknown> = Promise.resolve()
  /** Drains begun and not yet settled. */
  let drains = 0
  const drain = (source: Source = live): Promise<number> => {
    drains++
    const once = () => drainOnce(source)
    const run = chain.then(once, once)
    chain = run.then(
      () => void drains--,
      () => {
        drains--
        clean = false
      }
    )
    return run
  }

  const inlineEnabled = deps.inline === true && deps.router !== undefined
  /** The log's `inline` option: forwarding a batch inside its append's transaction while `clean`. */
  const inline: IngressLog.Inline = {
    forwarder: () => {
      if (clean) return forwardInline
      left++
      return undefined
    },
    settled: () => {
      leftSettled++
    },
    // A request its processor failed inline: the processor refuses it the next time (Consumer's `inline`).
    again: (error) => error instanceof RunElsewhere
  }
  const forwardInline = (entries: ReadonlyArray<IngressLog.Entry>): Sql<() => void, RunElsewhere> =>
    Effect.map(forward(entries, undefined), (deliveries) => () => {
      lastJudged = undefined
      try {
        for (const deliver of deliveries) deliver()
      } catch (error) {
        deps.logger.log("error", "ingress delivery failed", { reason: Log.reason(error) })
      }
    })

  const failing = Log.streak(deps.logger, "ingress drain failed, retrying", "ingress drains again")
  const drainSafely = () => {
    scheduled = false
    // The entries stay in the log, drained again shortly: no later publish may come to wake the
    // ingress (in a cluster a failed forward drops its publishers' connection, and a publisher
    // that does not resend left its events committed and unforwarded for good: a lock wait past
    // `lock_timeout` under load, cluster.ingress-retry.int.test.ts). The database out of reach:
    // the store logs the outage once.
    // A failure that recurs is logged once, and again only when its reason changes (issue #15).
    drain().then(
      () => {
        failing.succeeded()
        // The drain read the log to empty, what a failed one left included: a retry due has
        // nothing to do (`idle` would sit through it). Later appends schedule drains of their own.
        retry?.cancel()
        retry = undefined
      },
      (error: unknown) => {
        if (isOutOfOrder(error)) {
          // Forwarding on would skip or repeat events: nothing more is forwarded, the runtime ends.
          broken = true
          deps.logger.log("error", "ingress hand-over out of order (a defect): forwarding stopped", { reason: Log.reason(error) })
          deps.fatal?.(error)
          return
        }
        if (!isUnavailable(error)) failing.failed(error)
        if (stopped || retry !== undefined) return
        retry = Due.after(deps.retryMs ?? 500, () => {
          retry = undefined
          if (!stopped) schedule()
        })
      }
    )
  }

  const schedule = () => {
    // Stopped, the front's file is left for the next start (see `drainOnce`); main's own log is
    // still drained (a cluster's adopted entries, an entry a failed inline forward left).
    if (scheduled || poke === undefined || broken || (stopped && live.handover)) return
    scheduled = true
    setImmediate(drainSafely)
  }

  return {
    /** Commits an initiating event; resolves once it is durable. */
    receive: async (topic: string, payload: Buffer, clientId: string | null): Promise<void> => {
      timeline?.("r")
      appending++
      try {
        let forwarded: boolean
        try {
          forwarded = await live.append(topic, payload, clientId)
        } catch (error) {
          // A drain finds the log empty again (the batch rolled back) before anything is inlined.
          clean = false
          schedule()
          throw error
        }
        Crash.point("ingress-committed")
        deps.point?.("ingress-committed")
        if (!forwarded) schedule()
      } finally {
        // Counted until its forward is scheduled (or was done inline): `idle` sees no gap between.
        if (--appending === 0 && appended !== undefined) {
          appended.resolve()
          appended = undefined
        }
      }
      timeline?.("a")
    },
    /** For `IngressLog.make`'s `inline` option (the log is made before the ingress: set it once both exist). */
    inline,
    /** Forwards what the log holds now (entries adopted from a dead instance). */
    poke: () => schedule(),
    /**
     * Forwards what the log holds now, starting in this turn of the event loop rather than the
     * next (the front thread's `accepted`: its message is a turn of its own, already one per commit).
     * Not once stopped: the front accepts until its thread closes, after the processors stopped,
     * and what it commits then stays in its log above the mark, forwarded at the next start (a
     * drain now would hand it to stopped processors, which reject it).
     */
    pokeNow: () => {
      if (scheduled || poke === undefined || broken || stopped) return
      scheduled = true
      drainSafely()
    },
    /**
     * Forwards at once (the log's `afterCommit` in a cluster); once started. Rejects when
     * forwarding failed, so that the publishers are not acknowledged (see IngressLog).
     */
    forwardNow: async (): Promise<void> => {
      if (poke === undefined) return
      try {
        await drain()
      } catch (error) {
        if (!isUnavailable(error)) deps.logger.log("error", "ingress forward failed, publishers not acknowledged", { reason: Log.reason(error) })
        throw error
      }
    },
    /**
     * Starts forwarding: first what the `before` sources hold, each drained to the end, then what
     * a crash left in the log; `relay` is poked after what wrote to the outbox.
     */
    start: (relay: () => void): Promise<number> => {
      const before = deps.before ?? []
      if (before.length === 0) {
        poke = relay
        // The drain itself, whose rejection the chain handles (a caller may await it later).
        return drain()
      }
      return (async () => {
        let forwarded = 0
        // Before `poke` is set, a publish schedules no drain: none overtakes the older sources.
        for (const { source, drained } of before) {
          const n = await drain(source)
          await drained?.(n)
          forwarded += n
        }
        poke = relay
        if (forwarded > 0) relay()
        return forwarded + (await drain())
      })()
    },
    /**
     * Shutting down: no retry after a failure; with the front's file, no drain is scheduled any
     * more and a running one ends after its page: what is left is forwarded at the next start.
     */
    stop: () => {
      stopped = true
      retry?.cancel()
      retry = undefined
    },
    /** Whether a forward is scheduled, running, or due again after a failure (what `idle` waits for). */
    busy: () => appending > 0 || scheduled || retry !== undefined || drains > 0,
    /**
     * Resolves once no event is being appended to the log and no forward is scheduled, running, or
     * due again after a failure (`stop` cancels that): what the log was given is then forwarded (to
     * the inboxes or the outbox), but for what a failure left until a later start. An event not yet
     * handed to `receive` (on the wire, in a broker's queue) is not waited for.
     */
    idle: async (): Promise<void> => {
      for (;;) {
        if (appending > 0) await (appended ??= Promise.withResolvers()).promise
        else if (retry !== undefined) await retry.done
        else if (scheduled) await new Promise((r) => setImmediate(r))
        else if (drains > 0) await chain
        else return
      }
    }
  }
}

export type Ingress = ReturnType<typeof make>
