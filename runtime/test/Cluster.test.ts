/**
 * The partition hand-over protocol (Cluster.ts) on this machine's PostgreSQL: several members in
 * this process, each with its own connection, inbox and a keyed consumer that does what the
 * runtime's Consumer does (process its partitions' pending messages in arrival order; skip what
 * was queued in an earlier tenure of its partition; commit an effect with the inbox `done` mark,
 * fenced by `holds`). Members join and die (abandon: no release, in-flight work carries on as a
 * zombie) at random moments while keyed messages stream in.
 * `BATON_PROPERTY_RUNS` sets the number of runs.
 */
import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { Effect } from "effect"
import { Log } from "@baton/core"
import { ddl, Inbox, Postgres, type Store } from "@baton/store"
import { freshSchema, query } from "@baton/testkit/postgres"
import * as Cluster from "../src/Cluster.ts"

const partitions = 6
const keys = ["k1", "k2", "k3", "k4", "k5", "k6", "k7"]
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

interface Member {
  readonly name: string
  readonly store: Store
  readonly cluster: Cluster.Cluster
  alive: boolean
}

const member = async (url: string, name: string, jitter: () => number): Promise<Member> => {
  const store = await Postgres.open({ url })
  await store.migrate([{ name: "test/effects", sql: ddl((t) => `CREATE TABLE effects (n ${t.serialKey}, key TEXT NOT NULL, seq ${t.int} NOT NULL, by_member TEXT NOT NULL)`) }])
  let cluster: Cluster.Cluster | undefined
  const inbox = await Inbox.make(store, { partitions, notify: (part) => cluster?.notify(part) ?? Effect.void })
  const record = store.query("INSERT INTO effects (key, seq, by_member) VALUES (?, ?, ?)")
  // Each queued entry with its partition's tenure when queued (as the runtime's Consumer keeps it):
  // one queued in an earlier tenure (the partition lost and got back meanwhile) is skipped, and
  // does not stand for the entry when the reacquiring read queues it again, in its order.
  const queue: Array<{ readonly entry: Inbox.Entry; readonly tenure: number }> = []
  const queued = new Map<string, number>()
  let running = false
  const self: { alive: boolean } = { alive: true }
  const work = async () => {
    if (running) return
    running = true
    // One at a time, in arrival order: the per-key order of a partition's owner.
    for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
      const { entry: e, tenure } = next
      const part = Inbox.partitionOf(e.key, partitions)
      if (cluster!.tenure(part) !== tenure) {
        if (queued.get(e.envelopeId) === tenure) queued.delete(e.envelopeId)
        continue
      }
      await sleep(jitter()) // the handler's asynchronous part: a hand-over may happen meanwhile
      await store.transaction(
        Effect.gen(function* () {
          if (!(yield* cluster!.holds(part))) return
          if (!(yield* inbox.settle("p", e.envelopeId, "done"))) return
          const { seq } = JSON.parse(e.payload) as { seq: number }
          yield* record.run(e.key, seq, name)
        })
      )
      if (queued.get(e.envelopeId) === tenure) queued.delete(e.envelopeId)
    }
    running = false
  }
  const enqueue = (entries: ReadonlyArray<Inbox.Entry>) => {
    for (const entry of entries) {
      const tenure = cluster!.tenure(Inbox.partitionOf(entry.key, partitions))
      if (queued.get(entry.envelopeId) === tenure) continue
      queued.set(entry.envelopeId, tenure)
      queue.push({ entry, tenure })
    }
    void work()
  }
  const schedule = async (parts: ReadonlyArray<number>) => {
    if (self.alive) enqueue(await inbox.pendingIn("p", parts))
  }
  cluster = await Cluster.make({
    store,
    url,
    instance: name,
    partitions,
    heartbeatMs: 40,
    deadAfterMs: 200,
    address: { http: "-", mqtt: "-" },
    logger: Log.silent,
    acquired: schedule,
    released: () => undefined,
    pending: schedule,
    // A notification hands over what arrived, as in the runtime (the sweep still reads everything).
    arrived: (entries) => {
      if (self.alive) enqueue(entries)
    },
    adopt: () => undefined
  })
  await cluster.start()
  return Object.assign(self, { name, store, cluster })
}

/** A stream of keyed messages with joins and deaths at random points of it. */
const plan = fc.record({
  messages: fc.array(fc.constantFrom(...keys), { minLength: 20, maxLength: 60 }),
  events: fc.array(fc.record({ at: fc.nat({ max: 59 }), kind: fc.constantFrom("join", "die", "die", "join") }), { minLength: 1, maxLength: 4 }),
  seed: fc.integer()
})

describe("partition hand-over (Cluster.ts) on PostgreSQL", () => {
  it("for any stream of keyed messages and any joins and deaths: none lost, none applied twice, none out of order per key", async () => {
    await fc.assert(
      fc.asyncProperty(plan, async ({ messages, events, seed }) => {
        const db = await freshSchema()
        let r = seed
        const jitter = () => ((r = (r * 1103515245 + 12345) & 0x7fffffff) % 4)
        const members: Array<Member> = [await member(db.url, "m1", jitter), await member(db.url, "m2", jitter)]
        try {
          const producer = await Postgres.open({ url: db.url })
          const notify = producer.query("SELECT pg_notify(?, ?)")
          const inbox = await Inbox.make(producer, { partitions, notify: (part) => Effect.asVoid(notify.get(members[0]!.cluster.channel, String(part))) })
          const seqs = new Map<string, number>()
          for (const [i, key] of messages.entries()) {
            for (const e of events.filter((x) => x.at === i)) {
              const live = members.filter((m) => m.alive)
              if (e.kind === "join" || live.length <= 1) members.push(await member(db.url, `m${members.length + 1}`, jitter))
              else {
                const victim = live[Math.abs(seed + i) % live.length]!
                victim.alive = false
                await victim.cluster.abandon()
              }
            }
            const seq = (seqs.get(key) ?? 0) + 1
            seqs.set(key, seq)
            await producer.transaction(inbox.receive("p", { envelopeId: `${key}-${seq}`, topic: "t", key, payload: JSON.stringify({ seq }) }))
            await sleep(3)
          }
          // Every message applied (hand-overs take up to the dead-after time plus a heartbeat).
          const deadline = Date.now() + 15_000
          while (Number((await query<{ n: string }>(db.url, "SELECT COUNT(*) AS n FROM inbox WHERE status = 'pending'"))[0]!.n) > 0) {
            if (Date.now() > deadline) throw new Error("messages still pending after 15 s")
            await sleep(50)
          }
          const applied = await query<{ key: string; seq: string }>(db.url, "SELECT key, seq FROM effects ORDER BY n")
          expect(applied.length).toBe(messages.length)
          for (const key of keys) {
            const order = applied.filter((a) => a.key === key).map((a) => Number(a.seq))
            expect(order, `effects of ${key}: once each, in order`).toEqual(Array.from({ length: seqs.get(key) ?? 0 }, (_, i) => i + 1))
          }
          await producer.close()
        } finally {
          for (const m of members) {
            if (m.alive) await m.cluster.abandon()
            await m.store.close()
          }
          await db.drop()
        }
      }),
      { numRuns: Number(process.env.BATON_PROPERTY_RUNS ?? 8), endOnFailure: true }
    )
  }, 300_000)
})
