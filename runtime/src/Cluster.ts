/**
 * Cluster membership and partition ownership, in the shared PostgreSQL store (`BATON_DATABASE_URL`).
 *
 * Every key belongs to one of a fixed number of partitions (`BATON_CLUSTER_PARTITIONS`). Each
 * instance heartbeats a row in `cluster_members`; an instance whose heartbeat is older than
 * `deadAfterMs` is dead. Which live instance a partition belongs to, by design, is `assign`'s
 * answer (a pure function of the live instances' names); the actual owner is a row in
 * `cluster_partitions`, which changes hands only when its owner releases it (it is no longer its
 * designated owner) or is dead.
 * Only the owner of a key's partition processes its messages, which keeps one processor per key
 * and so the order per key. Every processing transaction re-reads its partition's row (and locks
 * it): an instance that lost a partition without knowing it (paused, cut off) cannot commit for it,
 * and a claim waits for the transactions in flight. The inbox's `done` mark in the same
 * transaction keeps effects once whatever the timing.
 *
 * Hand-over bound: a joining instance gets its partitions within two heartbeats; a dead instance's
 * partitions move within `deadAfterMs` plus one heartbeat, then their pending messages are
 * scheduled on the new owners.
 *
 * What a heartbeat vouches for: that the process lives and reaches the database on the cluster's
 * own connections (`control`), not that each step of its membership work is quick. The heartbeat
 * is a tick's first step (`tick`: heartbeat, members, claims and releases, the hooks), and while a
 * tick runs past its period the timer beats on its own, whatever step is slow: a claim waiting for
 * a partition's row lock (up to `lock_timeout`, 5 s), the `acquired` hook reading a backlog from a
 * store under load, the members read. A live instance whose tick is slow is not taken for dead, so
 * its partitions do not go to another and come back (cluster.heartbeat.int.test.ts; before, a tick
 * stuck in its `acquired` hook past `deadAfterMs` silenced it). Nothing is fenced by the heartbeat:
 * a processing transaction commits for a partition only under the claim's tenure, whoever thinks
 * whom live. What a slow tick holds up is membership work: while it runs, this instance releases
 * nothing to a joiner and claims nothing a dead instance left it. So a tick is vouched for up to
 * `stuckAfterMs` only: past it (a hook that never returns, a connection hung), the heartbeat is
 * withheld (one `cluster tick stuck` line), the others take this instance for dead within
 * `deadAfterMs` and take its partitions, as they would a hung process's; once the tick ends, it
 * heartbeats again, finds the partitions lost and joins anew. (Kafka's consumers split liveness the
 * same way: a heartbeat thread, and `max.poll.interval.ms` for a processing loop that stopped.) A
 * tick past `deadAfterMs` logs `cluster tick slow` once, with the step it is at. The `acquired` hook
 * is not cut short: while it runs its partitions are `acquiring` (a message delivered meanwhile
 * waits behind its key's older ones), and giving up on it would let those run ahead of messages it
 * has not scheduled yet.
 */
import { createHash } from "node:crypto"
import pg from "pg"
import { Log } from "@baton/core"
import { Effect } from "effect"
import { ddl, isUnavailable, type Sql, type Store } from "@baton/store"

export const migrations = [
  {
    name: "cluster/001-membership",
    sql: ddl(
      (t) => `CREATE TABLE cluster_members (
      instance TEXT PRIMARY KEY,
      pid ${t.int} NOT NULL,
      http TEXT NOT NULL,
      mqtt TEXT NOT NULL,
      started_at TEXT NOT NULL,
      heartbeat_ms ${t.int} NOT NULL${t.rowid}
    );
    CREATE TABLE cluster_partitions (part ${t.int} PRIMARY KEY, owner TEXT, epoch ${t.int} NOT NULL, since TEXT${t.rowid})`
    )
  }
]

/** FNV-1a, 32 bits: a stable score for rendezvous hashing. */
const score = (text: string): number => {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0
  return h
}

/**
 * The designated owner of each partition, from the live instances sorted by name: partition 0 to
 * the first (the leader), every other one to the instance that ranks it highest (rendezvous
 * hashing) among those below the even share, `ceil(partitions / live)`. Every instance computes
 * the same answer from the same names; balanced like a round robin, but fewer partitions change
 * hands when an instance joins or dies: over every join and death among two to four instances of
 * the names in Assign.test.ts (12 partitions), 0.4 partitions per death move between survivors
 * against 2.6 with a round robin, and 5.1 per join against 7.3 (counting those the newcomer gets).
 */
export const assign = (live: ReadonlyArray<string>, partitions: number): ReadonlyArray<string> => {
  if (live.length === 0) return []
  const share = Math.ceil(partitions / live.length)
  const load = new Map(live.map((m) => [m, 0]))
  const owners: Array<string> = []
  for (let part = 0; part < partitions; part++) {
    const ranked = part === 0 ? [live[0]!] : [...live].sort((a, b) => score(`${part}:${b}`) - score(`${part}:${a}`) || (a < b ? -1 : 1))
    const owner = ranked.find((m) => load.get(m)! < share)!
    owners.push(owner)
    load.set(owner, load.get(owner)! + 1)
  }
  return owners
}

export interface Options {
  readonly store: Store
  /** The store (a small pool of its own) for heartbeats, claims and views; `store` when absent. */
  readonly control?: Store
  readonly url: string
  readonly instance: string
  readonly partitions: number
  readonly heartbeatMs: number
  readonly deadAfterMs: number
  /**
   * How long the heartbeat goes out while a tick has not ended (see the module's doc comment); past
   * it the heartbeat is withheld until the tick ends. Default: ten times `deadAfterMs`, at least
   * 30 s (more than `lock_timeout`, 5 s, that a claim may wait, and a backlog's read under load).
   */
  readonly stuckAfterMs?: number
  readonly logger: Log.Logger
}

/** Where this instance is reached, and what it does as partitions move: given at `make` or at `start`. */
export interface Hooks {
  readonly address: { readonly http: string; readonly mqtt: string }
  /** Partitions this instance now owns: schedule their pending work. */
  readonly acquired: (parts: ReadonlyArray<number>) => void | Promise<void>
  /** Partitions this instance handed over (another instance joined). */
  readonly released: (parts: ReadonlyArray<number>) => void
  /** Partitions with new pending messages (a notification from another instance, or the periodic sweep). */
  readonly pending: (parts: ReadonlyArray<number>) => void
  /**
   * When given, a notification hands over the messages that arrived instead of calling `pending`:
   * the owned partitions' pending messages written by transactions that had not ended at the
   * previous such read (`arrivedSql`), in arrival order, each once. The periodic sweep does the same,
   * and every tenth time calls `pending` with every owned partition.
   */
  readonly arrived?: (entries: ReadonlyArray<Arrived>) => void
  /** Instances found dead: the leader adopts what they left to send (at once, then once in ten ticks while dead: `tick`). */
  readonly adopt: (dead: ReadonlyArray<string>) => void | Promise<void>
}

/** A pending inbox message that another instance's transaction wrote into a partition this instance owns. */
export interface Arrived {
  readonly processor: string
  readonly envelopeId: string
  readonly topic: string
  readonly key: string
  readonly payload: string
}

/**
 * The owned partitions' pending inbox messages, with the oldest transaction still running when the
 * statement's snapshot was taken (`horizon`, a 64-bit transaction id) on a row of its own (the
 * other columns null), so that the answer has one even with no message. With a horizon from the
 * previous read (its low 32 bits, as the rows' `xmin` carries them): only rows written by a
 * transaction at or after it (modulo 2^32), i.e. not yet ended when that read's snapshot was taken;
 * every older one had ended, so that read saw it (or it was not written). A wake then reads what
 * arrived since, not again every message in flight (41 rows an order with two instances, each a
 * payload to send, parse and drop as already scheduled). A row updated meanwhile counts as new
 * (read twice: harmless). The sweep reads everything: rows older than 2^31 transactions, or
 * written while a partition changed hands, are found there.
 */
export const arrivedSql = (since: boolean): string =>
  "SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS horizon, NULL AS processor, NULL AS envelope_id, NULL AS topic, NULL AS key, NULL AS payload, NULL::bigint AS rowid, NULL::bigint AS xid " +
  "UNION ALL (SELECT NULL, processor, envelope_id, topic, key, payload, rowid, xmin::text::bigint FROM inbox WHERE status = 'pending' AND part = ANY(?::int[])" +
  (since ? " AND (xmin::text::bigint - ? + 4294967296) % 4294967296 < 2147483648" : "") +
  ")"

export interface Member {
  readonly instance: string
  readonly pid: number
  readonly http: string
  readonly mqtt: string
  readonly startedAt: string
  readonly heartbeatAgeMs: number
  readonly live: boolean
}

export interface Cluster {
  readonly instance: string
  readonly partitions: number
  /** The notification channel (`channelOf` the schema of the cluster's tables). */
  readonly channel: string
  readonly owns: (part: number) => boolean
  /**
   * This instance's tenure of the partition: the epoch of its claim of it (`cluster_partitions.epoch`,
   * bumped by every claim), so it changes each time it claims or takes the partition (again);
   * -1 while a claim is on its way (no epoch is). Work scheduled in an earlier tenure is stale: the
   * partition was, or may have been, another's meanwhile, which skipped some of its messages here
   * (not owned, fenced), and `acquired` schedules the pending ones again in their order; run, a
   * stale later one of a key would go before an older one skipped then (Consumer's `submit` skips
   * it when its turn comes; one whose turn had begun fails the inbox's guard given its tenure,
   * `inboxGuard`'s `fence`).
   */
  readonly tenure: (part: number) => number
  /**
   * Whether the partition is owned and its `acquired` hook has not returned yet: its older pending
   * messages (written while it was another's) are not all scheduled, so a message of it delivered
   * here meanwhile must not run at once, ahead of its key's older ones (Consumer's `schedule`
   * leaves it in the inbox, read back in arrival order; cluster.acquired-arrival.int.test.ts).
   */
  readonly acquiring: (part: number) => boolean
  /**
   * Inside a transaction: whether this instance owns the partition now. It takes a share lock on
   * the partition's row until the commit, so that no other instance can claim the partition while
   * this transaction may still commit for it (fencing), while this instance's own transactions for
   * the partition still run side by side.
   */
  readonly holds: (part: number) => Sql<boolean>
  /** Inside a transaction: wakes the owner of a partition that has a new pending message. */
  readonly notify: (part: number) => Sql<void>
  readonly view: () => Promise<{ readonly members: ReadonlyArray<Member>; readonly partitions: ReadonlyArray<{ readonly part: number; readonly owner: string | null; readonly epoch: number; readonly since: string | null }> }>
  /** Joins the cluster; `hooks` replace those given to `make` (a runtime knows its address only once it listens). */
  readonly start: (hooks?: Hooks) => Promise<void>
  /**
   * Stops taking work, runs `drain` (in-flight work still commits: the partitions are still ours
   * in the store, the heartbeat going on meanwhile up to `stuckAfterMs`), then releases every
   * partition and leaves, so the others take over at once.
   */
  readonly stop: (drain: () => Promise<void>) => Promise<void>
  /** What a crash looks like to the others: stops heartbeating and owning, releases nothing (tests). */
  readonly abandon: () => Promise<void>
}

/**
 * The notification channel of the cluster whose tables are in `schema`. PostgreSQL's channels are
 * per database, not per schema: clusters in different schemas of one database must not wake each
 * other. A name past PostgreSQL's 63-byte identifier limit is hashed (SHA-256, 160 bits).
 */
export const channelOf = (schema: string): string => {
  const plain = `baton_inbox_${schema}`
  return Buffer.byteLength(plain) <= 63 ? plain : `baton_inbox_${createHash("sha256").update(schema).digest("hex").slice(0, 40)}`
}

/** `LISTEN` on `channel`, quoted: the name is taken as it is (no case folding), as `pg_notify` takes it. */
export const listenSql = (channel: string): string => `LISTEN "${channel.replaceAll('"', '""')}"`

/**
 * The inbox's fencing guard (`Inbox.make({ guard })`): the entry's partition is still `instance`'s,
 * with a share lock on the partition's row until the commit, as `holds` takes; checked in the
 * statement that marks the entry done, so fencing costs no statement of its own. Given the tenure
 * a message was scheduled in (`fence`: the epoch of the claim, see `tenure`), still under that
 * claim: a message whose run began before the partition was lost and claimed back, its done mark
 * after, no longer commits ahead of its key's older messages that were skipped meanwhile and are
 * scheduled again by the new claim (cluster.handover-order.int.test.ts: effects 2, 1 fenced on
 * the owner alone). Without one (a message received and run in one transaction: nothing stale),
 * the owner alone (`COALESCE` of a null).
 */
export const inboxGuard = (instance: string) => ({
  condition:
    "EXISTS (SELECT 1 FROM cluster_partitions WHERE cluster_partitions.part = inbox.part AND cluster_partitions.owner = ? AND cluster_partitions.epoch = COALESCE(?, cluster_partitions.epoch) FOR SHARE)",
  params: [instance, null],
  fence: (tenure: number) => [instance, tenure]
})

/** One sweep in this many reads every pending message of the owned partitions; the others, what arrived. */
const fullSweepEvery = 10
/** A leader adopts again from the members it found dead before once in this many of its ticks (see `tick`). */
const readoptEvery = 10

export const make = async (settings: Options & Partial<Hooks>): Promise<Cluster> => {
  const { store, instance, logger } = settings
  const unset = () => {
    throw new Error("the cluster's hooks are given to make or to start")
  }
  let options: Options & Hooks = { address: { http: "-", mqtt: "-" }, acquired: unset, released: unset, pending: unset, adopt: unset, ...settings }
  // Heartbeats and claims on connections of their own: a pool busy with (or waiting on) message
  // transactions must not silence an instance's heartbeat, or the others would take it for dead.
  const control = options.control ?? store
  if (store.kind !== "postgres") throw new Error("a cluster keeps its stores in PostgreSQL: set BATON_DATABASE_URL")
  await store.migrate(migrations)
  const nowMs = store.query("SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint AS now")
  const seed = store.query("INSERT INTO cluster_partitions (part, owner, epoch) VALUES (?, NULL, 0) ON CONFLICT DO NOTHING")
  const countParts = store.query("SELECT COUNT(*) AS n FROM cluster_partitions")
  const beat = store.query(
    "INSERT INTO cluster_members (instance, pid, http, mqtt, started_at, heartbeat_ms) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (instance) DO UPDATE SET pid = excluded.pid, http = excluded.http, mqtt = excluded.mqtt, started_at = excluded.started_at, heartbeat_ms = excluded.heartbeat_ms"
  )
  const members = store.query("SELECT instance, pid, http, mqtt, started_at, heartbeat_ms FROM cluster_members ORDER BY instance")
  const leave = store.query("DELETE FROM cluster_members WHERE instance = ?")
  const parts = store.query("SELECT part, owner, epoch, since FROM cluster_partitions ORDER BY part")
  const claim = store.query("UPDATE cluster_partitions SET owner = ?, epoch = epoch + 1, since = ? WHERE part = ? AND owner IS NOT DISTINCT FROM ? RETURNING epoch")
  const release = store.query("UPDATE cluster_partitions SET owner = NULL, since = ? WHERE part = ? AND owner = ?")
  const ownerOf = store.query("SELECT owner FROM cluster_partitions WHERE part = ? FOR SHARE")
  const notifyStmt = store.query("SELECT pg_notify(?, ?)")
  const arrivedAll = store.query(arrivedSql(false))
  const arrivedSince = store.query(arrivedSql(true))
  const schema = await store.run(Effect.map(store.query("SELECT current_schema() AS s").get(), (r) => r?.s))
  if (typeof schema !== "string") throw new Error("the cluster's PostgreSQL connection has no schema: check the search_path of BATON_DATABASE_URL")
  const channel = channelOf(schema)

  const existing = await control.run(Effect.map(countParts.get(), (r) => Number(r?.n ?? 0)))
  if (existing !== 0 && existing !== options.partitions)
    throw new Error(`the cluster has ${existing} partitions but BATON_CLUSTER_PARTITIONS is ${options.partitions}: every instance must use the same number`)
  await control.transaction(Effect.forEach(Array.from({ length: options.partitions }, (_, p) => p), (p) => seed.run(p), { discard: true }))

  const owned = new Set<number>()
  /** Partitions gained whose `acquired` hook has not returned yet (see `acquiring`). */
  const acquiring = new Set<number>()
  const tenures = new Map<number, number>()
  let live: ReadonlyArray<string> = []
  let known = new Map<string, boolean>()
  const startedAt = new Date().toISOString()
  let timer: NodeJS.Timeout | undefined
  let sweep: NodeJS.Timeout | undefined
  let listener: pg.Client | undefined
  let stopped = false

  const readMembers = async (): Promise<ReadonlyArray<Member>> => {
    const [now, rows] = await control.run(Effect.all([Effect.map(nowMs.get(), (r) => Number(r?.now)), members.all()]))
    return rows.map((r) => {
      const age = now - Number(r.heartbeat_ms)
      return {
        instance: String(r.instance),
        pid: Number(r.pid),
        http: String(r.http),
        mqtt: String(r.mqtt),
        startedAt: String(r.started_at),
        heartbeatAgeMs: age,
        live: age < options.deadAfterMs
      }
    })
  }

  /**
   * A partition now owned: notifications for it are taken from here on, so the next read of what
   * arrived reads all pending messages (`horizon` reset here, not once the tick's other claims are
   * done). Its older messages were written while it was another's (no read of this instance saw
   * them) and are scheduled by `acquired` only after those claims, one of which may wait for the
   * dead owner's transaction in flight: a read with the horizon of before would hand over just a
   * message that arrived meanwhile, ahead of its key's older ones (applied first: order per key
   * broken; cluster.handover-order.int.test.ts).
   */
  const gain = (part: number, epoch: number) => {
    owned.add(part)
    acquiring.add(part)
    tenures.set(part, epoch)
    horizon = undefined
    handed.clear()
    resets++
  }

  /**
   * This instance's heartbeat, one at a time (a call while one is out waits for it). The tick's
   * first step; and, while a tick runs past its period, the timer's too (`overdue`): the heartbeat
   * must not wait with it, or the others take this instance for dead (cluster.chain.int.test.ts: a
   * member hung with a chained run open, the survivor's claim waiting on its lock and its heartbeat
   * 1.9 s old at 400 ms `deadAfterMs`; cluster.heartbeat.int.test.ts: a slow `acquired` hook).
   */
  let beating: Promise<void> | undefined
  const heartbeat = (): Promise<void> =>
    (beating ??= (async () => {
      const now = await control.run(Effect.map(nowMs.get(), (r) => Number(r?.now)))
      await control.run(beat.run(instance, process.pid, options.address.http, options.address.mqtt, startedAt, now))
    })().finally(() => (beating = undefined)))

  /** The step the running tick is at, for the logs. */
  let step = "heartbeat"
  /** Reads the members: `live` from them, and a line for each change. */
  const membership = async () => {
    step = "members read"
    const all = await readMembers()
    live = all.filter((m) => m.live || m.instance === instance).map((m) => m.instance)
    // Membership changes, one line each.
    const next = new Map(all.map((m) => [m.instance, m.live || m.instance === instance] as const))
    for (const [name, alive] of next) {
      const before = known.get(name)
      if (before === alive) continue
      if (alive) logger.log("info", "cluster member joined", { instance: name, live: live.length })
      else if (before !== undefined) logger.log("warn", "cluster member dead", { instance: name, "silent-ms": all.find((m) => m.instance === name)?.heartbeatAgeMs, live: live.length })
    }
    for (const name of known.keys()) if (!next.has(name)) logger.log("info", "cluster member left", { instance: name, live: live.length })
    known = next
    return all
  }
  /** The dead members this instance adopted from since it leads, and its ticks as the leader. */
  const adopted = new Set<string>()
  let leaderTicks = 0
  const tick = async () => {
    if (stopped) return
    step = "heartbeat"
    await heartbeat()
    const all = await membership()
    // The leader (first live instance by name) takes over what dead instances left to send: from a
    // member at once when it is found dead, then once in `readoptEvery` ticks while its row says
    // dead. On every tick, as before, one crashed member's row cost an idle leader 12 of its 34
    // statements a second at the default 500 ms heartbeat, for as long as the row stayed. Not only
    // once either: a member found dead is not fenced (paused, or its tick stuck past `stuckAfterMs`
    // with its heartbeat withheld, it still appends under its name), and if it is killed before it
    // heartbeats again, only a later adoption forwards what it appended meanwhile
    // (cluster.adopt.int.test.ts). A member live again, or gone, is forgotten: found dead anew, it
    // is adopted from at once.
    if (live[0] === instance) {
      const gone = all.filter((m) => !m.live && m.instance !== instance).map((m) => m.instance)
      for (const name of adopted) if (!gone.includes(name)) adopted.delete(name)
      const due = leaderTicks++ % readoptEvery === 0 ? gone : gone.filter((name) => !adopted.has(name))
      if (due.length > 0) {
        step = "adopt hook"
        await options.adopt(due)
        for (const name of due) adopted.add(name)
      }
    } else {
      adopted.clear()
      leaderTicks = 0
    }

    const acquired: Array<number> = []
    const released: Array<number> = []
    const lost: Array<number> = []
    const at = new Date().toISOString()
    let designatedOwners = assign(live, options.partitions)
    // A statement failing part way (the database cut off for a moment: a hand-over is when that
    // happens) leaves the partitions gained before it owned under their tenure, which the next
    // heartbeat finds unchanged: their hooks run still, then the failure (cluster.acquired.int.test.ts:
    // without, partition 0 gained before a failing claim never had `acquired`, so its workflows'
    // timeouts were not re-armed nor its ingress session taken).
    let failure: { readonly error: unknown } | undefined
    /** Claims the partition from `owner` (as it stands in the row read): a new tenure when it is claimed. */
    const claimOf = async (part: number, owner: string | null) => {
      step = `claim of partition ${part}`
      const claimed = await control.run(claim.get(instance, at, part, owner))
      if (claimed === undefined) return
      gain(part, Number(claimed.epoch))
      acquired.push(part)
    }
    try {
      step = "partitions read"
      const rows = await control.run(parts.all())
      // A partition to be taken from an owner not live in the members read: the members again,
      // read after the partitions. An owner that heartbeated since that read (it joined, or came
      // back, and claimed the partition from a dead one) is live in this one, as a member
      // heartbeats before it claims; else its partition is claimed from it and handed back, two
      // tenures for nothing (cluster.heartbeat.int.test.ts: m1's `adopt` hook slow, the timer
      // heartbeating meanwhile, while m4 joins: 4 claimed from m4). One read a take-over.
      const fromOwner = (row: (typeof rows)[number]) =>
        row.owner !== null && String(row.owner) !== instance && !live.includes(String(row.owner)) && designatedOwners[Number(row.part)] === instance
      if (rows.some(fromOwner)) {
        await membership()
        designatedOwners = assign(live, options.partitions)
        step = "partitions read"
      }
      for (const row of rows) {
        // Stopping (`stop` cleared `owned` and releases what it held once this tick is over): claim
        // nothing more. Before, a tick that was past its heartbeat when the stop came claimed every
        // partition anew (its own no longer in `owned`, a dead member's) and ran the `acquired` hook
        // during the stop (cluster.heartbeat.int.test.ts).
        if (stopped) break
        const part = Number(row.part)
        const owner = row.owner === null ? null : String(row.owner)
        const epoch = Number(row.epoch)
        const designated = designatedOwners[part]
        if (owner === instance && designated !== instance) {
          // Another instance joined: hand this partition over.
          owned.delete(part)
          step = `release of partition ${part}`
          await control.run(release.run(at, part, instance))
          released.push(part)
        } else if (owner === instance) {
          // Let go of here under this very epoch (its release failed) and ours again: claimed anew,
          // for a new tenure (its messages were skipped meanwhile, not owned; a later one still
          // queued from before must fail its fence: cluster.acquired.int.test.ts). Else still ours
          // from before a restart; or under a claim this instance did not make (another epoch: a
          // tenure of its own, its work from before stale).
          if (!owned.has(part) && tenures.get(part) === epoch) await claimOf(part, instance)
          else if (!owned.has(part) || tenures.get(part) !== epoch) {
            gain(part, epoch)
            acquired.push(part)
          }
        } else if (designated === instance && (owner === null || !live.includes(owner))) {
          // A new tenure from before the claim's commit (see `tenure`): a stale message must not run
          // between it and `gain` (the partition still in `owned` when another released it); one
          // scheduled meanwhile fails the inbox's guard (no epoch is -1).
          tenures.set(part, -1)
          await claimOf(part, owner)
        } else if (owned.delete(part)) lost.push(part) // taken over: we were thought dead
      }
    } catch (error) {
      failure = { error }
    }
    if (lost.length > 0) {
      logger.log("warn", "partitions lost", { partitions: lost.join(","), owned: owned.size })
      options.released(lost)
    }
    if (released.length > 0) {
      logger.log("info", "partitions released", { partitions: released.join(","), owned: owned.size })
      options.released(released)
    }
    if (acquired.length > 0 && stopped) for (const part of acquired) acquiring.delete(part)
    else if (acquired.length > 0) {
      logger.log("info", "partitions acquired", { partitions: acquired.join(","), owned: owned.size })
      step = "acquired hook"
      try {
        await options.acquired(acquired)
      } finally {
        for (const part of acquired) acquiring.delete(part)
      }
    }
    if (failure !== undefined) throw failure.error
  }

  // One tick at a time: a slow one (the store under load) makes the next wait, not overlap.
  let ticking: Promise<void> | undefined
  /** When the running tick began, and what of it was logged (`slow`, `stuck`). */
  let tickSince = 0
  let told: "slow" | "stuck" | undefined
  const stuckAfterMs = options.stuckAfterMs ?? Math.max(30_000, 10 * options.deadAfterMs)
  /** The timer's turn while a tick runs past its period: beat for it, up to `stuckAfterMs`. */
  const overdue = () => {
    const running = performance.now() - tickSince
    if (running >= stuckAfterMs) {
      if (told !== "stuck") logger.log("error", "cluster tick stuck: heartbeat withheld", { step, "running-ms": Math.round(running), "stuck-after-ms": stuckAfterMs })
      told = "stuck"
      return
    }
    if (running >= options.deadAfterMs && told === undefined) {
      told = "slow"
      logger.log("warn", "cluster tick slow", { step, "running-ms": Math.round(running) })
    }
    // A failure here is the next tick's to log (the store logs an outage once).
    heartbeat().catch(() => undefined)
  }
  const safeTick = () => {
    if (ticking !== undefined) return ticking
    tickSince = performance.now()
    told = undefined
    ticking = tick()
      // The database out of reach: the store logs the outage once; the next tick tries again.
      .catch((error: unknown) => void (isUnavailable(error) || logger.log("error", "cluster heartbeat failed", { reason: Log.reason(error) })))
      .finally(() => (ticking = undefined))
    return ticking
  }

  /**
   * `arrivedSql`'s horizon after the last read of every owned partition (a 64-bit transaction
   * id); undefined before the first, and again as soon as a partition is owned (`gain`: the next
   * read takes all its pending messages). `resets` counts them, so that a read begun before one does not
   * set the horizon after it.
   */
  let horizon: number | undefined
  let resets = 0
  /**
   * Rows handed over since the last reset that a read may return again (their transaction had not
   * ended at the horizon: another transaction held it back), by rowid, with their `xmin`: each is
   * handed over once, not again once it may be done (run twice, it failed its transaction as no
   * longer pending, a tenth of the transactions with three instances). The sweep reads everything.
   */
  const handed = new Map<number, number>()
  const maxHanded = 20_000
  /** Whether 32-bit transaction id `x` is at or after `h` (modulo 2^32), as `arrivedSql` compares them. */
  const atOrAfter = (x: number, h: number) => (x - (h % 2 ** 32) + 2 ** 32) % 2 ** 32 < 2 ** 31
  /** A read of what arrived is running; `more`: a notification came meanwhile (read once more after it). */
  let reading = false
  let more = false
  const readArrived = async (arrived: NonNullable<Hooks["arrived"]>) => {
    if (reading) return void (more = true)
    reading = true
    try {
      do {
        more = false
        const parts = [...owned]
        if (parts.length === 0) break
        const since = horizon
        const reset = resets
        const rows = await store.run(since === undefined ? arrivedAll.all(parts) : arrivedSince.all(parts, since % 2 ** 32))
        // Partitions acquired meanwhile: read again, all of them.
        if (reset !== resets) {
          more = true
          continue
        }
        const next = Number(rows.find((r) => r.horizon !== null)?.horizon)
        if (horizon === undefined || next > horizon) horizon = next
        const fresh = rows.filter((r) => r.processor !== null && !handed.has(Number(r.rowid))).sort((a, b) => Number(a.rowid) - Number(b.rowid))
        for (const r of fresh) handed.set(Number(r.rowid), Number(r.xid))
        for (const [rowid, xid] of handed) if (!atOrAfter(xid, horizon)) handed.delete(rowid)
        // A transaction held open for long (anyone's, in the database) holds the horizon back and
        // the map would grow meanwhile: past a bound, a row may be handed over twice instead.
        if (handed.size > maxHanded) handed.clear()
        if (fresh.length > 0) arrived(fresh.map((r) => ({ processor: String(r.processor), envelopeId: String(r.envelope_id), topic: String(r.topic), key: String(r.key), payload: String(r.payload) })))
      } while (more && !stopped)
    } catch (error) {
      // The sweep finds what this read would have: the database out of reach is logged by the store.
      if (!isUnavailable(error)) logger.log("error", "arrived messages not read", { reason: Log.reason(error) })
    } finally {
      reading = false
    }
  }

  let dirty = new Set<number>()
  let flushing: NodeJS.Timeout | undefined
  const wake = (part: number) => {
    if (!owned.has(part)) return
    dirty.add(part)
    flushing ??= setTimeout(() => {
      flushing = undefined
      const ps = [...dirty]
      dirty = new Set()
      if (options.arrived === undefined) options.pending(ps)
      else void readArrived(options.arrived)
    }, 2)
  }

  /**
   * The LISTEN connection. When it is lost (the server restarted, the connection was cut) a new
   * one is opened, retrying quietly until the server is back (the store logs the outage once);
   * then the owned partitions are swept for what was notified meanwhile.
   */
  let relisten: NodeJS.Timeout | undefined
  const listen = async () => {
    const client = new pg.Client({ connectionString: options.url })
    let lost = false
    const onLost = () => {
      if (lost) return
      lost = true
      if (listener === client) listener = undefined
      void client.end().catch(() => undefined)
      if (stopped) return
      const since = Date.now()
      const retry = (attempt: number) => {
        relisten = setTimeout(() => {
          relisten = undefined
          if (stopped) return
          listen().then(
            () => {
              logger.log("info", "cluster notifications resumed", { "lost-ms": Date.now() - since, attempts: attempt })
              if (owned.size > 0) options.pending([...owned])
            },
            () => retry(attempt + 1)
          )
        }, Math.min(2_000, 50 * 2 ** Math.min(attempt, 6)))
      }
      retry(1)
    }
    client.on("error", onLost)
    client.on("end", onLost)
    client.on("notification", (n) => wake(Number(n.payload)))
    try {
      await client.connect()
      await client.query(listenSql(channel))
    } catch (error) {
      lost = true
      client.removeAllListeners("end")
      client.removeAllListeners("error")
      client.on("error", () => undefined)
      void client.end().catch(() => undefined)
      throw error
    }
    if (stopped) return void client.end().catch(() => undefined)
    listener = client
  }

  return {
    instance,
    partitions: options.partitions,
    channel,
    owns: (part) => owned.has(part),
    tenure: (part) => tenures.get(part) ?? 0,
    acquiring: (part) => acquiring.has(part),
    holds: (part) => Effect.map(ownerOf.get(part), (r) => r?.owner === instance),
    notify: (part) => (owned.has(part) ? Effect.void : Effect.asVoid(notifyStmt.write(channel, String(part)))),
    view: async () => ({
      members: await readMembers(),
      partitions: (await control.run(parts.all())).map((r) => ({ part: Number(r.part), owner: r.owner === null ? null : String(r.owner), epoch: Number(r.epoch), since: r.since === null ? null : String(r.since) }))
    }),
    start: async (hooks) => {
      if (hooks !== undefined) options = { ...options, ...hooks }
      // A member of the same name still heartbeating is this instance before a crash (it falls
      // silent within deadAfterMs) or another process misconfigured with the same name.
      const sameName = async () => (await readMembers()).find((m) => m.instance === instance && m.live)
      const deadline = Date.now() + 2 * options.deadAfterMs
      for (let m = await sameName(); m !== undefined; m = await sameName()) {
        if (Date.now() > deadline)
          throw new Error(`another instance named ${instance} is alive (pid ${m.pid}, http ${m.http}): give each instance its own BATON_INSTANCE`)
        logger.log("info", "waiting for this instance's previous heartbeat to expire", { instance, "silent-ms": m.heartbeatAgeMs })
        await new Promise((r) => setTimeout(r, options.heartbeatMs))
      }
      await listen()
      // The timer before the first tick: a first tick that gains partitions runs their `acquired`
      // hook, which may outlast `deadAfterMs` (a backlog to read).
      timer = setInterval(() => {
        if (!stopped && ticking !== undefined) overdue()
        void safeTick()
      }, options.heartbeatMs)
      await safeTick()
      // Notifications are a wake-up, not a guarantee: sweep the owned partitions now and then. With
      // `arrived`, most sweeps read what arrived (a third of the rows an order read with three
      // instances was the sweep's, nearly all in flight); every `fullSweepEvery`-th one reads
      // everything pending (a message handed over once that its consumer did not keep). Alone
      // (no other live instance writes into its partitions), an instance sweeps as before: what
      // arrived since the last read is then its own messages in flight, each read again (not
      // parsed when running, and while the processor's backlog is being read one read at the end
      // of the backlog's pass, not one a sweep: Consumer's `recover`) and a few run twice to fail as no longer pending (one instance on PostgreSQL, `ab.ts pg
      // 1500 6`: 30.8 -> 29.8 statements and 4.6 -> 4.0 writes an order with the sweep as before).
      let sweeps = 0
      sweep = setInterval(() => {
        if (owned.size === 0) return
        if (options.arrived !== undefined && live.length > 1 && ++sweeps % fullSweepEvery !== 0) void readArrived(options.arrived)
        else options.pending([...owned])
      }, Math.max(1000, options.heartbeatMs * 2))
      logger.log("info", "cluster joined", { instance, partitions: options.partitions, owned: [...owned].join(","), live: live.join(",") })
    },
    abandon: async () => {
      stopped = true
      await ticking
      clearInterval(timer)
      clearInterval(sweep)
      clearTimeout(flushing)
      owned.clear()
      clearTimeout(relisten)
      await listener?.end().catch(() => undefined)
    },
    stop: async (drain) => {
      stopped = true
      clearInterval(timer)
      // The heartbeat goes on until this instance leaves, up to `stuckAfterMs`: the tick running
      // and `drain` may outlast `deadAfterMs`, and the others would take the partitions while the
      // work in flight still commits for them (it fails its guard and runs again on the new owner;
      // cluster.heartbeat.int.test.ts: before, a drain of 3 x `deadAfterMs` had them taken).
      // (A monotonic clock, as the tick's: a wall-clock step must not withhold it early.)
      const since = performance.now()
      let withheld = false
      timer = setInterval(() => {
        if (performance.now() - since < stuckAfterMs) return void heartbeat().catch(() => undefined)
        if (!withheld) logger.log("error", "cluster stop stuck: heartbeat withheld", { "running-ms": Math.round(performance.now() - since), "stuck-after-ms": stuckAfterMs })
        withheld = true
      }, options.heartbeatMs)
      clearInterval(sweep)
      clearTimeout(flushing)
      const held = [...owned]
      owned.clear()
      clearTimeout(relisten)
      await listener?.end().catch(() => undefined)
      try {
        await ticking
        // A claim the running tick had sent before the stop and that committed after the clear
        // above: released at the leave too, not left to the others' take-over of a member gone.
        for (const part of owned) if (!held.includes(part)) held.push(part)
        owned.clear()
        await drain()
      } finally {
        // No heartbeat after the leave (it would write the member's row back).
        clearInterval(timer)
        await beating?.catch(() => undefined)
      }
      const at = new Date().toISOString()
      try {
        await control.transaction(
          Effect.andThen(
            Effect.forEach(held, (part) => release.run(at, part, instance), { discard: true }),
            leave.run(instance)
          )
        )
        logger.log("info", "cluster left", { instance, released: held.join(",") })
      } catch (error) {
        logger.log("warn", "cluster leave failed", { reason: Log.reason(error) })
      }
    }
  }
}
