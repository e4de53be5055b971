/**
 * The cluster's notification channel (Cluster.ts) on this machine's PostgreSQL. Channels are per
 * database, not per schema: two clusters in two schemas of one database each listen on a channel
 * of their own, so a notification of one wakes its own instances and not the other's. One of the
 * two schemas has a long mixed-case name (its channel is hashed and must be quoted).
 */
import { describe, expect, it } from "vitest"
import fc from "fast-check"
import pg from "pg"
import { Log } from "@baton/core"
import { Postgres, type Store } from "@baton/store"
import { freshSchema, query, serverUrl } from "@baton/testkit/postgres"
import * as Cluster from "../src/Cluster.ts"

const partitions = 4
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** A schema named `name` (any identifier), dropped by `drop`. */
const namedSchema = async (name: string) => {
  const quoted = `"${name.replaceAll('"', '""')}"`
  await query(serverUrl, `CREATE SCHEMA ${quoted}`)
  const sep = serverUrl.includes("?") ? "&" : "?"
  return { url: `${serverUrl}${sep}options=${encodeURIComponent(`-c search_path=${quoted}`)}`, drop: async () => void (await query(serverUrl, `DROP SCHEMA ${quoted} CASCADE`)) }
}

/** A cluster in one schema: a started member that records the partitions it is woken for, and a sender that owns none. */
const cluster = async (url: string) => {
  const store = await Postgres.open({ url, poolSize: 2 })
  const woken: Array<number> = []
  const make = (instance: string) =>
    Cluster.make({
      store,
      url,
      instance,
      partitions,
      // No heartbeat nor sweep during the test: only a notification wakes the member.
      heartbeatMs: 60_000,
      deadAfterMs: 180_000,
      address: { http: "-", mqtt: "-" },
      logger: Log.silent,
      acquired: () => undefined,
      released: () => undefined,
      pending: (parts) => void woken.push(...parts),
      adopt: () => undefined
    })
  const member = await make("member")
  await member.start()
  const sender = await make("sender")
  return { store, member, woken, notify: (part: number) => store.transaction(sender.notify(part)) }
}

const settle = async (woken: ReadonlyArray<number>, n: number) => {
  const deadline = Date.now() + 5_000
  while (woken.length < n && Date.now() < deadline) await sleep(10)
  await sleep(300) // what else would arrive
}

describe("the cluster's notification channel (Cluster.ts) on PostgreSQL", () => {
  it("two clusters in two schemas of one database: a notification wakes its own cluster's member, not the other's", async () => {
    const a = await freshSchema()
    const b = await namedSchema(`Baton_T_${Math.random().toString(36).slice(2, 10)}_${"Long".repeat(12)}`)
    const stores: Array<Store> = []
    const members: Array<Cluster.Cluster> = []
    try {
      const x = await cluster(a.url)
      stores.push(x.store)
      members.push(x.member)
      const y = await cluster(b.url)
      stores.push(y.store)
      members.push(y.member)
      expect(x.member.channel).not.toBe(y.member.channel)
      expect(Buffer.byteLength(y.member.channel)).toBeLessThanOrEqual(63)
      expect([x.member.owns(1), y.member.owns(2)]).toEqual([true, true])

      await x.notify(1)
      await settle(x.woken, 1)
      expect(x.woken, "a's member woken by a's notification").toEqual([1])
      expect(y.woken, "b's member not woken by a's notification").toEqual([])

      await y.notify(2)
      await settle(y.woken, 1)
      expect(y.woken, "b's member woken by b's notification").toEqual([2])
      expect(x.woken, "a's member not woken by b's notification").toEqual([1])
    } finally {
      for (const m of members) await m.abandon()
      for (const s of stores) await s.close()
      await a.drop()
      await b.drop()
    }
  })

  it("for any schema name: the channel fits PostgreSQL's 63 bytes, distinct names get distinct channels, and LISTEN hears pg_notify on it", async () => {
    const listener = new pg.Client({ connectionString: serverUrl })
    const sender = new pg.Client({ connectionString: serverUrl })
    await Promise.all([listener.connect(), sender.connect()])
    const heard: Array<{ channel: string; payload: string | undefined }> = []
    listener.on("notification", (n) => void heard.push({ channel: n.channel, payload: n.payload }))
    // Schema names: any text PostgreSQL takes as an identifier (no NUL, at most 63 bytes).
    const name = fc.string({ unit: "grapheme", minLength: 1, maxLength: 40 }).map((s) => s.replaceAll("\u0000", "")).filter((s) => s.length > 0 && Buffer.byteLength(s) <= 63)
    try {
      await fc.assert(
        fc.asyncProperty(name, name, async (s, t) => {
          const channel = Cluster.channelOf(s)
          expect(Buffer.byteLength(channel)).toBeLessThanOrEqual(63)
          if (s !== t) expect(Cluster.channelOf(t)).not.toBe(channel)
          heard.length = 0
          await listener.query(Cluster.listenSql(channel))
          await sender.query("SELECT pg_notify($1, $2)", [channel, "p"])
          const deadline = Date.now() + 2_000
          while (heard.length === 0 && Date.now() < deadline) await sleep(2)
          await listener.query("UNLISTEN *")
          expect(heard).toEqual([{ channel, payload: "p" }])
        }),
        { numRuns: Number(process.env.BATON_PROPERTY_RUNS ?? 100) }
      )
    } finally {
      await Promise.all([listener.end(), sender.end()])
    }
  })
})
