/**
 * `Consumer.chain`: an event a handler announces runs in the handler's own transaction on each
 * local consumer that can run it at once (SQLite alone), recursively. Over the real SQLite store,
 * for any tree of local processors (chains, and fan-outs: several consumers of one topic, or a
 * topic each), messages arriving from outside at any of them while others run, and handlers that
 * fail their first runs (a chained run's failure fails its root's transaction, which runs again
 * with the failed consumer refusing, and its message is then queued and retried as any other):
 * every handler's effect applied once, in order per key on each consumer, each announced event
 * written to the outbox once (all are public), every span's parent the span that announced its event, every
 * message counted handled once, and the same final state as with every delivery queued.
 */
import { afterAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Fiber } from "effect"
import { Log, Trace, type Envelope, type Processor } from "@baton/core"
import { Supervisor } from "@baton/actors"
import { Inbox, Outbox, Postgres, Rejections, Sqlite, type Store } from "@baton/store"
import { freshSchema } from "@baton/testkit/postgres"
import * as Cluster from "../src/Cluster.ts"
import * as Consumer from "../src/Consumer.ts"
import * as Decision from "../src/Decision.ts"
import * as ErrorPath from "../src/ErrorPath.ts"
import type { Tracing } from "../src/Observability.ts"
import * as Router from "../src/Router.ts"
import { settle as settleInbox } from "./settle.ts"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 4) * 5
const keys = ["k1", "k2", "k3"]
const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
})

/**
 * Processor `i` (`p<i>`, i > 0) consumes an event its parent announces: on the parent's shared
 * topic (`shared`: with its siblings that do too, a fan-out) or on a topic of its own. Every
 * processor announces one event on each topic its children consume, and one to the outside.
 */
interface Node {
  readonly parent: number
  readonly shared: boolean
}
const topicOf = (nodes: ReadonlyArray<Node | undefined>, i: number): string => {
  const node = nodes[i]
  return node === undefined ? "events/from-nobody" : node.shared ? `events/of-p${node.parent}` : `events/of-p${node.parent}-to-p${i}`
}
const outsideTopic = (i: number) => `events/out-p${i}`
/** Where messages from outside arrive at processor `i`. */
const inTopic = (i: number) => `events/in-p${i}`
/** An edge beside the tree: `to` consumes what `from` announces on it too. */
const alsoTopic = ([from, to]: readonly [number, number]) => `events/also-p${from}-to-p${to}`
/** The topics processor `i` announces on: its children's, then the outside's (all public: each also written to the outbox). */
const outsOf = (nodes: ReadonlyArray<Node | undefined>, i: number): Array<string> => [...new Set(nodes.flatMap((n, j) => (n?.parent === i ? [topicOf(nodes, j)] : []))), outsideTopic(i)]

/** A message from outside: at processor `at`, of `key`. */
interface Arrival {
  readonly at: number
  readonly key: string
  readonly settle: boolean
  /** A moment to wait before it arrives (PostgreSQL: for it to arrive while the runs before it are in their transactions). */
  readonly pauseMs?: number
}

/**
 * Where a round runs: SQLite alone, or PostgreSQL as one instance runs on it (a cluster of one:
 * its groups side by side on a pool, its inbox fenced by the cluster's guard, every partition its own).
 */
interface Backend {
  readonly name: string
  /** The processors say `ownRows` (PostgreSQL: a group's messages of theirs side by side on its connection). */
  readonly ownRows?: boolean
  readonly open: () => Promise<{ readonly store: Store; readonly inbox: Inbox.Inbox; readonly cluster?: Parameters<typeof Consumer.make>[0]["cluster"] }>
}
const partitions = 4
const sqlite: Backend = {
  name: "SQLite",
  open: async () => {
    const dir = mkdtempSync(join(tmpdir(), "baton-chain-"))
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }))
    const store = await Sqlite.open({ path: join(dir, "baton.db") })
    await store.transaction(store.query("CREATE TABLE effects (n INTEGER PRIMARY KEY, consumer TEXT NOT NULL, via TEXT NOT NULL, source INTEGER NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL, prior INTEGER NOT NULL)").run())
    return { store, inbox: await Inbox.make(store) }
  }
}
const postgres: Backend = {
  name: "PostgreSQL, one instance",
  open: async () => {
    const schema = await freshSchema()
    cleanups.push(schema.drop)
    const store = await Postgres.open({ url: schema.url, poolSize: 8 })
    await store.transaction(store.query("CREATE TABLE effects (n BIGSERIAL PRIMARY KEY, consumer TEXT NOT NULL, via TEXT NOT NULL, source INTEGER NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL, prior INTEGER NOT NULL)").run())
    await store.migrate(Cluster.migrations)
    for (let part = 0; part < partitions; part++) await store.transaction(store.query("INSERT INTO cluster_partitions (part, owner, epoch) VALUES (?, 'me', 1)").run(part))
    const inbox = await Inbox.make(store, { partitions, guard: Cluster.inboxGuard("me") })
    return { store, inbox, cluster: { owns: () => true, holds: () => Effect.succeed(true), chains: true } }
  }
}

const postgresOwnRows: Backend = { ...postgres, name: "PostgreSQL, one instance, processors that say ownRows", ownRows: true }

interface Effects {
  readonly rows: ReadonlyArray<string>
  readonly outbox: ReadonlyArray<string>
}

/**
 * Runs `arrivals` through the tree `nodes` (and the edges `also` beside it; chained, or every
 * delivery queued), its handlers failing their first runs where `fails` says so. What was
 * applied, what went to the outbox, and what was seen on the way.
 */
const play = async (
  nodes: ReadonlyArray<Node | undefined>,
  arrivals: ReadonlyArray<Arrival>,
  fails: (processor: number, source: number, key: string, seq: number) => number,
  chained: boolean,
  round: string,
  also: ReadonlyArray<readonly [number, number]> = [],
  backend: Backend = sqlite
) => {
  const { store, inbox, cluster } = await backend.open()
  const outbox = await Outbox.make(store)
  const reject = ErrorPath.make({ outbox, rejections: await Rejections.make(store), logger: Log.silent })
  const router = Router.make(inbox)
  const system = Supervisor.system()
  const fibers: Array<Fiber.Fiber<unknown, unknown>> = []
  const seen = { outOfOrder: [] as Array<string>, chainedRuns: 0, chainFailures: 0, handled: new Map<string, number>(), failedRuns: new Map<string, number>() }
  /** Spans: by their own span id, the processor, the event and its parent's span id; whether they ended well. */
  const spans = new Map<string, { readonly name: string; readonly event: string; readonly parent: string | undefined; ok?: boolean }>()
  const tracing: Tracing = {
    enabled: true,
    begin: (name, parent, attributes) => {
      const c = Trace.begin(parent)
      const span = { name, event: attributes["baton.event.id"] ?? "", parent: c.parentSpanId }
      spans.set(c.spanId, span)
      return { traceparent: Trace.format(c), traceId: c.traceId, end: (error) => void Object.assign(span, { ok: error === undefined }) }
    }
  }
  const consumers: Array<Consumer.Consumer> = []
  for (const [i] of nodes.entries()) {
    const name = `p${i}`
    const outs = [...outsOf(nodes, i), ...also.filter(([from]) => from === i).map(alsoTopic)]
    const processor: Processor = {
      name,
      consumes: [],
      topics: [topicOf(nodes, i), inTopic(i), ...also.filter(([, to]) => to === i).map(alsoTopic)],
      ...(backend.ownRows === true ? { ownRows: true } : {}),
      handle: (event) =>
        Effect.gen(function* () {
          const { source, seq, via } = event.data as { source: number; seq: number; via: string }
          const before = Number((yield* store.query("SELECT MAX(seq) AS seq FROM effects WHERE consumer = ? AND via = ? AND source = ? AND key = ?").get(name, via, source, event.key))?.seq ?? 0)
          if (before !== seq - 1) seen.outOfOrder.push(`${name} ${via} ${source}/${event.key}: ${seq} after ${before}`)
          // The effects of the key on this consumer so far (any source): one at a time, each sees all before it.
          const prior = Number((yield* store.query("SELECT COUNT(*) AS n FROM effects WHERE consumer = ? AND key = ?").get(name, event.key))?.n)
          // PostgreSQL: a moment for a run beside it (another transaction's, of the same key) to read the same.
          if (store.dialect === "pg") yield* Effect.sleep(3)
          yield* store.query("INSERT INTO effects (consumer, via, source, key, seq, prior) VALUES (?, ?, ?, ?, ?, ?)").run(name, via, source, event.key, seq, prior)
          const id = `${name} ${source}/${event.key}/${seq}`
          const failed = seen.failedRuns.get(id) ?? 0
          if (failed < fails(i, source, event.key, seq)) {
            seen.failedRuns.set(id, failed + 1)
            return yield* Effect.fail(new Error(`${id} fails its run ${failed + 1}`))
          }
          return outs.map((topic) => ({ type: "x", topic, data: { source, seq, via: topic } }))
        })
    }
    const actors = Array.from({ length: 2 }, (_, a) => Supervisor.make(system, `${name}-${round}-${a}`, { maxAttempts: 5, initialDelayMs: 1, maxDelayMs: 5, factor: 2, maxRestarts: 1000, windowMs: 60_000 }))
    fibers.push(...actors.map((a) => Effect.runFork(a.run)))
    const metrics = { handled: (outcome: string) => void seen.handled.set(`${name} ${outcome}`, (seen.handled.get(`${name} ${outcome}`) ?? 0) + 1), retried: () => {}, latency: () => {} }
    const consumer = Consumer.make({ processor, actors, store, inbox, outbox, reject, poke: () => undefined, router, routePublic: true, logger: Log.silent, tracing, metrics, ...(cluster === undefined ? {} : { cluster }) })
    consumers.push(consumer)
    const chain = consumer.chain
    const local: Router.Local = {
      name,
      schedule: consumer.schedule,
      chain:
        chained && chain !== undefined
          ? (event, topic, payload, at) => {
              const run = chain(event, topic, payload, at)
              return run?.pipe(
                Effect.map((ran) => {
                  if (ran !== undefined) seen.chainedRuns++
                  return ran
                }),
                Effect.tapError((error) => Effect.sync(() => void (error instanceof Decision.RunElsewhere && seen.chainFailures++)))
              )
            }
          : undefined
    }
    for (const topic of processor.topics ?? []) router.add(topic, local)
  }
  try {
    const seqs = new Map<string, number>()
    const scheduled: Array<Promise<void>> = []
    const settle = () => settleInbox(store, consumers, { before: () => Promise.all(scheduled.splice(0)) })
    for (const [n, a] of arrivals.entries()) {
      if (a.pauseMs !== undefined) await new Promise((r) => setTimeout(r, a.pauseMs))
      const seq = (seqs.get(`${a.at}/${a.key}`) ?? 0) + 1
      seqs.set(`${a.at}/${a.key}`, seq)
      const event: Envelope.Envelope = { id: `${round}-${n}`, type: "x", correlationId: `c-${n}`, causationId: `c-${n}`, key: a.key, occurredAt: new Date().toISOString(), data: { source: a.at, seq, via: inTopic(a.at) } }
      // As a broker session or the ingress (not inline) hands it over: received pending, then scheduled.
      const deliveries = await store.transaction(router.route(inTopic(a.at), event, JSON.stringify(event)))
      scheduled.push(...deliveries.map((d) => Promise.resolve(d())))
      if (a.settle) await settle()
    }
    await settle()
    const rows = (await store.run(store.query("SELECT consumer, source, key, seq FROM effects ORDER BY consumer, source, key, n").all())).map((r) => `${r.consumer} ${r.source}/${r.key}/${r.seq}`)
    const ordered = (await store.run(store.query("SELECT consumer, via, source, key, seq FROM effects ORDER BY n").all())).map((r) => `${r.consumer} ${r.via} ${r.source}/${r.key}/${r.seq}`)
    const outboxRows = (await store.run(store.query("SELECT topic, payload FROM outbox ORDER BY seq").all())).map((r) => {
      const e = JSON.parse(String(r.payload)) as Envelope.Envelope & { data: { source: number; seq: number } }
      return `${r.topic} ${e.data.source}/${e.key}/${e.data.seq}`
    })
    const inboxRows = await store.run(store.query("SELECT processor, envelope_id, status FROM inbox").all())
    // The span of each message handled (that ended well), by processor and event id, and the event of each span.
    const handledSpans = new Map([...spans.entries()].filter(([, s]) => s.ok === true).map(([id, s]) => [`${s.name} ${s.event}`, id]))
    const spanOf = new Map([...spans.entries()].map(([id, s]) => [id, s]))
    const events = await store.run(store.query("SELECT processor, payload FROM inbox WHERE status = 'done'").all())
    const misparented: Array<string> = []
    for (const r of events) {
      const e = JSON.parse(String(r.payload)) as Envelope.Envelope
      const own = handledSpans.get(`${r.processor} ${e.id}`)
      if (own === undefined) {
        misparented.push(`${r.processor} ${e.id}: no span ended well`)
        continue
      }
      const parent = spanOf.get(own)?.parent
      // An arrival from outside has no parent span; an announced event's is its sender's span (the one that ended well).
      if (e.causationId.startsWith("c-") ? parent !== undefined : parent === undefined || spanOf.get(parent)?.event !== e.causationId || spanOf.get(parent)?.ok !== true)
        misparented.push(`${r.processor} ${e.id}: parent ${parent} of cause ${e.causationId}`)
    }
    const effects: Effects = { rows: rows.sort(), outbox: [...outboxRows].sort() }
    // Two effects of a key on a consumer that each saw the same ones before it: they ran side by side.
    const besides = (await store.run(store.query("SELECT consumer, key, prior FROM effects GROUP BY consumer, key, prior HAVING COUNT(*) > 1").all())).map((r) => `${r.consumer} ${r.key} after ${r.prior}`)
    const rejections = (await store.run(store.query("SELECT kind, body FROM rejections").all())).map((r) => {
      const body = JSON.parse(String(r.body)) as { processor?: string; attempts?: number }
      return `${r.kind} ${body.processor} after ${body.attempts}`
    })
    // Spans exported (ended, well or not) whose parent span was begun here and never ended: orphans in the trace.
    const orphans = [...spans.values()].filter((s) => s.ok !== undefined && s.parent !== undefined && spanOf.has(s.parent) && spanOf.get(s.parent)!.ok === undefined).map((s) => `${s.name} ${s.event}`)
    return { effects, seen, seqs, inboxRows, misparented, rejections, ordered, outboxInOrder: outboxRows, orphans, besides }
  } finally {
    for (const f of fibers) await Effect.runPromise(Fiber.interrupt(f))
    await store.close()
  }
}

/** A tree of 1 to 6 processors: each after the first consumes an event of an earlier one. */
const tree = fc.integer({ min: 1, max: 6 }).chain((n) =>
  fc.tuple(...Array.from({ length: n }, (_, i) => (i === 0 ? fc.constant(undefined) : fc.record({ parent: fc.nat(i - 1), shared: fc.boolean() }))))
)

const plan = tree.chain((nodes) =>
  fc.record({
    nodes: fc.constant(nodes as ReadonlyArray<Node | undefined>),
    arrivals: fc.array(fc.record({ at: fc.nat(nodes.length - 1), key: fc.constantFrom(...keys), settle: fc.nat(4).map((n) => n === 0) }), { minLength: 1, maxLength: 30 }),
    /** Which runs fail: a message's first one or two runs on a processor, about one in six. */
    seed: fc.nat()
  })
)

/** The processors under `i` (itself too). */
const under = (nodes: ReadonlyArray<Node | undefined>, i: number): Array<number> => [i, ...nodes.flatMap((n, j) => (n?.parent === i ? under(nodes, j) : []))]

describe.each([sqlite, postgres, postgresOwnRows])("Consumer.chain on $name", (backend) => {
  it("for any tree of local processors (chains, fan-outs), arrivals from outside at any of them meanwhile and handlers failing their first runs: each effect once, in order per key on each consumer, each announced event in the outbox once, each span under its cause's, each message counted once, the same final state as with every delivery queued", async () => {
    let round = 0
    let chainedRuns = 0
    let chainFailures = 0
    await fc.assert(
      fc.asyncProperty(plan, async ({ nodes, arrivals, seed }) => {
        round++
        const fails = (processor: number, source: number, key: string, seq: number) => {
          const h = (seed ^ (processor * 7919) ^ (source * 104729) ^ (key.charCodeAt(1) * 1299709) ^ (seq * 15485863)) >>> 0
          return h % 6 === 0 ? 1 + ((h >>> 3) % 2) : 0
        }
        const chained = await play(nodes, arrivals, fails, true, `${round}c`, [], backend)
        const queued = await play(nodes, arrivals, fails, false, `${round}q`, [], backend)
        expect(chained.seen.outOfOrder, "no message ran before an older one of its key on its consumer").toEqual([])
        expect(queued.seen.outOfOrder, "(queued) no message ran before an older one of its key").toEqual([])
        expect(chained.besides, "no two messages of a key ran side by side on a consumer").toEqual([])
        expect(queued.besides, "(queued) no two messages of a key ran side by side on a consumer").toEqual([])
        // Every arrival at `at` reaches every processor under it once, and each of them announces it outside once.
        const expected: Array<string> = []
        const outside: Array<string> = []
        for (const [at, count] of [...chained.seqs.entries()].map(([k, v]) => [k, v] as const)) {
          const [source, key] = at.split("/") as [string, string]
          for (const p of under(nodes, Number(source)))
            for (let seq = 1; seq <= count; seq++) {
              expected.push(`p${p} ${source}/${key}/${seq}`)
              for (const topic of outsOf(nodes, p)) outside.push(`${topic} ${source}/${key}/${seq}`)
            }
        }
        expect(chained.effects.rows, "each effect applied once").toEqual(expected.sort())
        expect(chained.effects.outbox, "each announced event written to the outbox once").toEqual(outside.sort())
        expect(chained.effects, "the same final state as with every delivery queued").toEqual(queued.effects)
        expect(chained.inboxRows.filter((r) => r.status !== "done"), "every message done").toEqual([])
        expect(chained.misparented, "each span's parent is the span of its cause").toEqual([])
        for (const [i] of nodes.entries())
          expect(chained.seen.handled.get(`p${i} done`) ?? 0, `p${i}: each message counted handled once`).toBe(expected.filter((e) => e.startsWith(`p${i} `)).length)
        chainedRuns += chained.seen.chainedRuns
        chainFailures += chained.seen.chainFailures
        expect(queued.seen.chainedRuns).toBe(0)
      }),
      {
        numRuns: runs,
        endOnFailure: true,
        // Always among the runs (the counts below are not left to chance): p1 under p0; seed 3 fails
        // p1's first run of p0's first k1 event (in p0's transaction) and none of the second's.
        examples: [
          [
            {
              nodes: [undefined, { parent: 0, shared: false }],
              arrivals: [
                { at: 0, key: "k1", settle: true },
                { at: 0, key: "k1", settle: true }
              ],
              seed: 3
            }
          ],
          // Messages from outside at p1 while p0's chain into p1 runs, of one key (PostgreSQL: side by side).
          [
            {
              nodes: [undefined, { parent: 0, shared: false }],
              arrivals: Array.from({ length: 12 }, (_, i) => [
                { at: 0, key: "k1", settle: false },
                { at: 1, key: "k1", settle: true, pauseMs: i % 6 }
              ]).flat(),
              seed: 1
            }
          ]
        ]
      }
    )
    expect(chainedRuns, "some messages ran in their sender's transaction").toBeGreaterThan(0)
    expect(chainFailures, "some failed there, failing their root's transaction").toBeGreaterThan(0)
  }, 240_000)

  it(`runs a chain ${Router.maxDepth} handlers deep in one transaction, and queues the events of the last`, async () => {
    const length = Router.maxDepth + 4
    const nodes = Array.from({ length }, (_, i) => (i === 0 ? undefined : { parent: i - 1, shared: false }))
    const { effects, seen } = await play(nodes, [{ at: 0, key: "k1", settle: true }], () => 0, true, "deep", [], backend)
    expect(effects.rows).toEqual(Array.from({ length }, (_, i) => `p${i} 0/k1/1`).sort())
    // p0 from its queue, then p1..p16 in its transaction; p17 queued, running p18..p19 in its own.
    expect(seen.chainedRuns).toBe(length - 2)
  })

  it("a chained handler that always fails: its root's effects once, and the message queued and failed for good after the attempts it has when queued (its run in the chain not one of them)", async () => {
    const nodes = [undefined, { parent: 0, shared: false }, { parent: 1, shared: false }]
    for (const chained of [true, false]) {
      const { effects, seen, rejections } = await play(nodes, [{ at: 0, key: "k1", settle: true }], (p) => (p === 1 ? Infinity : 0), chained, `always-${chained}`, [], backend)
      expect(effects.rows, "p0's effect once; p1's rolled back, p2 never reached").toEqual(["p0 0/k1/1"])
      expect(rejections, "p1's message failed for good once, after its 5 attempts").toEqual(["processing-failed p1 after 5"])
      expect(seen.failedRuns.get("p1 0/k1/1"), "p1 ran its 5 attempts from its queue, and once before in p0's transaction when chained").toBe(chained ? 6 : 5)
      expect(seen.handled.get("p1 failed")).toBe(1)
      expect(seen.handled.get("p0 done")).toBe(1)
      expect(seen.chainFailures).toBe(chained ? 1 : 0)
    }
  })

  it("a chained run that failed under one that ran and was rolled back with it: the span of the run rolled back ends too (the failed run's span is no orphan in the trace)", async () => {
    // p0 -> p1 -> p2 in p0's transaction; p2 fails its first run: p1's run there is rolled back.
    const nodes = [undefined, { parent: 0, shared: false }, { parent: 1, shared: false }]
    const { orphans, seen, misparented } = await play(nodes, [{ at: 0, key: "k1", settle: true }], (p) => (p === 2 ? 1 : 0), true, "orphan", [], backend)
    expect(seen.chainFailures).toBe(1)
    expect(misparented).toEqual([])
    expect(orphans).toEqual([])
  })

  it("runs a chain breadth first, as the queues would: a consumer gets the root's event before one the root's other consumer announces, and the outbox the root's events before theirs", async () => {
    // p0 announces to p1, then to p2; p1 announces to p2 too (beside the tree).
    const nodes = [undefined, { parent: 0, shared: false }, { parent: 0, shared: false }]
    for (const chained of [true, false]) {
      const { ordered, outboxInOrder, seen } = await play(nodes, [{ at: 0, key: "k1", settle: true }], () => 0, chained, `bfs-${chained}`, [[1, 2]], backend)
      expect(ordered.filter((r) => r.startsWith("p2 ")), "p2: p0's event, then p1's").toEqual(["p2 events/of-p0-to-p2 0/k1/1", "p2 events/also-p1-to-p2 0/k1/1"])
      const announcer = (row: string) => /p(\d+)/.exec(row)![1]
      expect(outboxInOrder.map(announcer).slice(0, 3), "p0's three events first in the outbox").toEqual(["0", "0", "0"])
      expect(seen.chainedRuns).toBe(chained ? 3 : 0)
    }
  })

  it("two transactions chaining into one consumer, of one key, at once: one runs it, the other's is queued behind it (never side by side)", async () => {
    // p0 announces to p1 and p2; p1 announces to p2 too. Arrivals at p0 and p1 together: each's
    // transaction may chain into p2 with the other's open.
    const nodes = [undefined, { parent: 0, shared: false }, { parent: 0, shared: false }]
    const arrivals = Array.from({ length: 10 }, (_, i) => [
      { at: 0, key: "k1", settle: false },
      { at: 1, key: "k1", settle: true, pauseMs: i % 3 }
    ]).flat()
    const { effects, seen, besides } = await play(nodes, arrivals, () => 0, true, "together", [[1, 2]], backend)
    expect(besides, "no two messages of a key ran side by side on a consumer").toEqual([])
    expect(seen.outOfOrder).toEqual([])
    expect(effects.rows.filter((r) => r.startsWith("p2 ")).length, "p2: each of p0's 10 events and each of p1's 20 once").toBe(30)
    expect(seen.chainedRuns).toBeGreaterThan(0)
  })

  it("queues an event to a consumer that has one pending (a run that failed in its chain, queued and retried): it does not overtake it", async () => {
    const nodes = [undefined, { parent: 0, shared: false }]
    const arrivals = Array.from({ length: 6 }, () => ({ at: 0, key: "k1", settle: false }))
    // p1 fails the first order's first three runs: in p0's transaction, then twice from its queue.
    const { effects, seen } = await play(nodes, arrivals, (p, _source, _key, seq) => (p === 1 && seq === 1 ? 3 : 0), true, "overtake", [], backend)
    expect(seen.outOfOrder).toEqual([])
    expect(effects.rows).toEqual(Array.from({ length: 6 }, (_, i) => [`p0 0/k1/${i + 1}`, `p1 0/k1/${i + 1}`]).flat().sort())
    expect(seen.chainFailures).toBe(1)
  })
})

/**
 * Consumer `c` alone (failing on the events `failing` names), chained into roots run by hand: each
 * root's run is what a consumer's `handleIn` makes of a handler that announces `event` on `c`'s
 * topic, in a transaction of its own or in a group commit with others (`store.group`, as `apply`).
 */
const lone = async (round: string, failing: (event: Envelope.Envelope) => boolean, committed?: Processor["committed"]) => {
  const dir = mkdtempSync(join(tmpdir(), "baton-chain-"))
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }))
  const store = await Sqlite.open({ path: join(dir, "baton.db") })
  const inbox = await Inbox.make(store)
  const outbox = await Outbox.make(store)
  const reject = ErrorPath.make({ outbox, rejections: await Rejections.make(store), logger: Log.silent })
  const router = Router.make(inbox)
  const system = Supervisor.system()
  const runs: Array<string> = []
  const processor: Processor = {
    name: "c",
    consumes: [],
    topics: ["events/to-c"],
    handle: (event) => (runs.push(event.id), failing(event) ? Effect.fail(new Error(`c fails ${event.id}`)) : Effect.succeed([])),
    ...(committed === undefined ? {} : { committed })
  }
  const actors = [Supervisor.make(system, `c-${round}`, { maxAttempts: 5, initialDelayMs: 1, maxDelayMs: 5, factor: 2, maxRestarts: 1000, windowMs: 60_000 })]
  const fibers = actors.map((a) => Effect.runFork(a.run))
  cleanups.unshift(async () => {
    for (const f of fibers) await Effect.runPromise(Fiber.interrupt(f))
    await store.close()
  })
  const consumer = Consumer.make({ processor, actors, store, inbox, outbox, reject, poke: () => undefined, router, routePublic: true, logger: Log.silent })
  router.add("events/to-c", { name: "c", schedule: consumer.schedule, chain: consumer.chain })
  const eventOf = (id: string): Envelope.Envelope => ({ id, type: "x", correlationId: id, causationId: id, key: "k1", occurredAt: new Date().toISOString(), data: {} })
  /** The transaction of root `root`, whose handler announced `event` to `c`: the deliveries after its commit. */
  const root = (rootId: string, ...events: ReadonlyArray<Envelope.Envelope>) =>
    // Built when it runs, as `apply`'s (a group may run it again, in a savepoint).
    Effect.suspend(() => {
      const chain = Router.chainOf(rootId)
      const announced = Effect.forEach(events, (event) => router.route("events/to-c", event, JSON.stringify(event), false, { chain, depth: 0 }))
      return Effect.flatMap(announced, (d) => Router.drain(chain, d.flat()))
    })
  const status = async (id: string) => (await store.run(inbox.status("c", id))) ?? "absent"
  return { store, consumer, runs, eventOf, root, status, router }
}

describe("Consumer.chain, roots run by hand: refusals, committed steps", () => {
  it("a root whose chain failed, run again in a group commit with a message that fails after it: the refusal spent by the run rolled back with the group still holds for its run in a savepoint (the root does not fail again)", async () => {
    const { store, runs, eventOf, root, status } = await lone("group", (e) => e.id === "e1")
    const e1 = eventOf("e1")
    await expect(store.group(root("r1", e1)), "c fails e1 in r1's transaction").rejects.toBeInstanceOf(Decision.RunElsewhere)
    expect(runs).toEqual(["e1"])
    // r1 again (refused by c), then a message that fails after it in the same group: the group's
    // optimistic run rolls back, and r1 runs again in a savepoint.
    const [again, other] = await Promise.allSettled([store.group(root("r1", e1)), store.group(Effect.fail(new Error("another message fails")))])
    expect(other.status).toBe("rejected")
    expect(again.status, "r1 commits, its event to c queued").toBe("fulfilled")
    expect(runs, "c ran e1 once, in r1's first transaction").toEqual(["e1"])
    expect(await status("e1")).not.toBe("absent")
  })

  it("for any roots with events to a consumer that fails some, run again until they commit in group commits with messages that fail, in any order: each root fails at most once (its refusal holds for each run of it after), and each commits", async () => {
    let round = 0
    let optimisticRollbacks = 0
    const roots = fc.array(fc.array(fc.boolean(), { minLength: 1, maxLength: 2 }), { minLength: 1, maxLength: 5 })
    await fc.assert(
      fc.asyncProperty(roots, fc.nat(3), fc.array(fc.nat(), { minLength: 8, maxLength: 8 }), async (events, others, orders) => {
        round++
        // Root i announces one event to c per entry of events[i], which c fails when true.
        const { store, consumer, eventOf, root } = await lone(`prop-${round}`, (e) => e.data !== null && (e.data as { fails?: boolean }).fails === true)
        const eventsOf = events.map((fails, i) => fails.map((f, j) => ({ ...eventOf(`r${i}-e${j}`), data: { fails: f } })))
        const failures = new Map<number, number>()
        let left = events.map((_, i) => i)
        for (let pass = 0; left.length > 0; pass++) {
          expect(pass, "every root commits, each run again after it failed").toBeLessThan(8)
          // The roots left and the failing messages, in an order of this pass's.
          const items = [...left.map((i) => ({ root: i })), ...Array.from({ length: others }, () => ({ root: undefined }))]
          const ordered = items.map((item, n) => ({ item, at: (orders[pass]! * (n + 1) * 2654435761) % 1000 })).sort((a, b) => a.at - b.at)
          if (ordered.some((o, n) => o.item.root === undefined && ordered.slice(0, n).some((e) => e.item.root !== undefined))) optimisticRollbacks++
          const settled = await Promise.allSettled(ordered.map(({ item }) => (item.root === undefined ? store.group(Effect.fail(new Error("another message fails"))) : store.group(root(`r${item.root}`, ...eventsOf[item.root]!)))))
          const failedNow: Array<number> = []
          for (const [n, { item }] of ordered.entries()) {
            if (item.root === undefined) continue
            const outcome = settled[n]!
            if (outcome.status === "fulfilled") for (const d of outcome.value) d()
            else {
              expect(outcome.reason).toBeInstanceOf(Decision.RunElsewhere)
              failures.set(item.root, (failures.get(item.root) ?? 0) + 1)
              failedNow.push(item.root)
            }
          }
          left = failedNow
          // c runs what was queued (failing for good what always fails), as between the roots' runs.
          await consumer.idle()
        }
        expect([...failures.values()].filter((n) => n > 1), "no root failed twice").toEqual([])
      }),
      { numRuns: runs, endOnFailure: true, examples: [[[[true]], 1, [0, 0, 0, 0, 0, 0, 0, 0]]] }
    )
    expect(optimisticRollbacks, "some groups had a message failing after a root").toBeGreaterThan(0)
  }, 120_000)

  it("a domain mediator's command whose call failed, asked again in a group commit with a message that fails after it: still refused in the savepoint's run (its sender does not fail again)", async () => {
    const { store, consumer, runs, eventOf } = await lone("call", (e) => e.id === "m1")
    const m1 = { ...eventOf("m1"), replyTo: "baton/mediator/test" }
    // The sender's transaction: the call, built when it runs (undefined: refused, the sender queues it).
    const sender = () => Effect.suspend(() => consumer.call!(m1, "events/to-c", JSON.stringify(m1)) ?? Effect.succeed<Consumer.Called | "queued">("queued"))
    await expect(store.group(sender()), "c fails m1 in its sender's transaction").rejects.toBeInstanceOf(Decision.RunElsewhere)
    const [again] = await Promise.allSettled([store.group(sender()), store.group(Effect.fail(new Error("another message fails")))])
    expect(again, "refused: the sender queues m1").toEqual({ status: "fulfilled", value: "queued" })
    expect(runs, "c ran m1 once, in its sender's first transaction").toEqual(["m1"])
  })

  it("a consumer with a `committed` step: those of one key's messages run one after another, as from its queue (not side by side after their root's commit)", async () => {
    const steps: Array<string> = []
    const { store, consumer, eventOf, root } = await lone("committed", () => false, async (event) => {
      steps.push(`${event.id} begins`)
      await new Promise((r) => setTimeout(r, event.id === "e1" ? 20 : 1))
      steps.push(`${event.id} ends`)
    })
    for (const d of await store.transaction(root("r1", eventOf("e1"), eventOf("e2")))) d()
    await consumer.idle()
    expect(steps).toEqual(["e1 begins", "e1 ends", "e2 begins", "e2 ends"])
  })

  it("past 10,000 refusals, the oldest is forgotten, not the latest: a root refused just before is refused still", async () => {
    const { store, runs, eventOf, root } = await lone("many", () => true)
    const failed = async (i: number) => expect(store.transaction(root(`r${i}`, eventOf(`e${i}`)))).rejects.toBeInstanceOf(Decision.RunElsewhere)
    for (let i = 0; i <= 10_000; i++) await failed(i)
    // r0's refusal forgotten: run (and failing) again; r9999's (refused before the 10,001st) and r10000's hold: their events queued.
    await failed(0)
    await expect(store.transaction(root("r9999", eventOf("e9999")))).resolves.toBeDefined()
    await expect(store.transaction(root("r10000", eventOf("e10000")))).resolves.toBeDefined()
    expect(runs.length).toBe(10_002)
  }, 60_000)

  it("an event run in a chain and then delivered again (from outside, or in another root's chain): not run again", async () => {
    const { store, consumer, runs, eventOf, root, status, router } = await lone("redelivered", () => false)
    const e1 = eventOf("e1")
    for (const d of await store.transaction(root("r1", e1))) d()
    expect(await status("e1")).toBe("done")
    for (const d of await store.transaction(router.route("events/to-c", e1, JSON.stringify(e1)))) d()
    for (const d of await store.transaction(root("r2", e1))) d()
    await consumer.idle()
    expect(runs).toEqual(["e1"])
  })

  it("a root's refusal is not spent by another root of the same id (a fan-out's other consumer of the root's event): the root's run again does not fail again", async () => {
    // The root's event is consumed by p and q: each handles it as the root of its own chain, of the same id.
    const { store, consumer, runs, eventOf, root, status } = await lone("fan-out", (e) => e.id === "e1")
    await expect(store.transaction(root("r1", eventOf("e1"))), "p's chain: c fails e1").rejects.toBeInstanceOf(Decision.RunElsewhere)
    // q's chain, rooted at the same event, before p's run again: its event e2 queued or run by c.
    const deliveries = await store.transaction(root("r1", eventOf("e2")))
    for (const d of deliveries) d()
    await consumer.idle()
    expect(await status("e2")).toBe("done")
    // p's transaction again: c refuses it, e1 queued.
    await expect(store.transaction(root("r1", eventOf("e1"))), "p's run again commits").resolves.toBeDefined()
    expect(runs.filter((id) => id === "e1"), "c ran e1 once in a root's transaction").toEqual(["e1"])
  })
})
