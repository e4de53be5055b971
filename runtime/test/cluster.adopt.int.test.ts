/**
 * The leader's adoption of what a crashed member left to forward (Cluster.ts `tick`, the `adopt`
 * hook; the ingress log's `adopt`), on PostgreSQL with real Cluster.ts members and ingress logs.
 * A member found dead (its heartbeat older than `deadAfterMs`) is not fenced: paused, or with its
 * tick stuck past `stuckAfterMs` (its heartbeat withheld on purpose), it still runs, and what it
 * appends then carries its name. Should it be killed before it heartbeats again, only a later
 * adoption forwards those entries: the leader adopts from a member at once when it finds it dead,
 * then again now and then while the member's row says dead, not on every tick (one crashed member's
 * row cost an idle leader 12 statements a second at the default heartbeat).
 */
import { afterAll, describe, expect, it } from "vitest"
import type { Log } from "@baton/core"
import { IngressLog } from "@baton/store"
import { freshSchema, query } from "@baton/testkit/postgres"
import { clusterMember } from "./clusterMember.ts"
import { sleep, until } from "./support.ts"

const heartbeatMs = 50

const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
})

/** A member with an ingress log of its own, as the runtime's; its `adopt` hook adopts into that log (`at`: when called). */
const member = async (url: string, instance: string, adopted: (dead: ReadonlyArray<string>, entries: number, at: number) => void = () => undefined, logger?: Log.Logger) => {
  let log: IngressLog.IngressLog | undefined
  const { cluster, store } = await clusterMember(
    { url, partitions: 4, heartbeatMs, deadAfterMs: 400, cleanups },
    instance,
    {
      adopt: async (dead) => {
        const at = performance.now()
        adopted(dead, await log!.adopt(dead), at)
      }
    },
    logger === undefined ? {} : { logger }
  )
  log = await IngressLog.make(store, { maxBytes: 1024, previewBytes: 64, instance })
  return { cluster, log }
}

/** m1, the leader (its lines to `logger`), and m2, which crashed with an entry in its log that m1 then adopted. */
const crashed = async (logger?: Log.Logger) => {
  const schema = await freshSchema()
  cleanups.push(schema.drop)
  const owners = async () => (await query<{ topic: string; instance: string }>(schema.url, "SELECT topic, instance FROM ingress_log WHERE forwarded_at IS NULL ORDER BY seq")).map((r) => `${r.topic}:${r.instance}`)
  const adoptions: Array<{ readonly dead: string; readonly entries: number; readonly at: number }> = []
  const m1 = await member(schema.url, "m1", (dead, entries, at) => void adoptions.push({ dead: dead.join(), entries, at }), logger)
  const m2 = await member(schema.url, "m2")
  await m1.cluster.start()
  await m2.cluster.start()
  await until("m1 and m2 live in m1's view", async () => (await m1.cluster.view()).members.filter((m) => m.live).length === 2)
  await m2.log.append("initiate/before", Buffer.from("{}"), null)
  // m2 crashes (its row stays): m1, the leader, finds it dead and adopts its entry.
  await m2.cluster.abandon()
  await until("m1 adopted m2's entry", async () => (await owners()).join() === "initiate/before:m1")
  expect(adoptions.filter((a) => a.entries > 0).map((a) => `${a.dead}:${a.entries}`)).toEqual(["m2:1"])
  return { url: schema.url, m1, m2, owners, adoptions }
}

describe("the leader's adoption of a crashed member's ingress entries (Cluster.ts) on PostgreSQL", () => {
  it("adopts what the member left at once, and later what it appends after it was found dead and adopted", async () => {
    const { m1, m2, owners, adoptions } = await crashed()
    // m2 was not dead but paused: it commits an entry under its own name, and is killed before it heartbeats again.
    const calls = adoptions.length
    await m2.log.append("initiate/after", Buffer.from("{}"), null)
    await until("m1 adopted m2's late entry", async () => (await owners()).join() === "initiate/before:m1,initiate/after:m1", 40 * heartbeatMs)
    expect(adoptions.slice(calls).filter((a) => a.entries > 0).map((a) => `${a.dead}:${a.entries}`)).toEqual(["m2:1"])
    expect((await m1.cluster.view()).members.find((m) => m.instance === "m2")?.live, "m2 dead throughout").toBe(false)
  }, 30_000)

  it("adopts from the dead member again once in ten ticks, not on each (30 heartbeats: at most 4 calls of the hook)", async () => {
    const { adoptions } = await crashed()
    const calls = adoptions.length
    await sleep(30 * heartbeatMs)
    const again = adoptions.length - calls
    expect(again, "adoptions in 30 heartbeats").toBeLessThanOrEqual(4)
    expect(again).toBeGreaterThanOrEqual(1)
  }, 30_000)

  it("adopts from a member found dead anew (back, then crashed again) at once, in the tick that finds it dead", async () => {
    // The ticks in which m1 found m2 dead, by m1's own line (`membership`, just before the adoption).
    const foundDead: Array<number> = []
    const logger: Log.Logger = { log: (_, event, fields) => void (event === "cluster member dead" && fields?.instance === "m2" && foundDead.push(performance.now())) }
    const { url, m1, adoptions } = await crashed(logger)
    // Three times, each crash 3 ticks later in m1's round of ten than the one before (the rounds
    // are alike): a readoption that happens to fall in the tick does not pass for it every time.
    for (let round = 1; round <= 3; round++) {
      const back = await member(url, "m2")
      await back.cluster.start()
      await until("m2 live again in m1's view", async () => (await m1.cluster.view()).members.find((m) => m.instance === "m2")?.live === true)
      await sleep(round * 3 * heartbeatMs)
      await back.cluster.abandon()
      await until("m2 found dead anew", () => foundDead.length === round + 1)
      const deadAt = foundDead.at(-1)!
      await until("m1 adopted from m2 since", () => adoptions.some((a) => a.at >= deadAt), 20 * heartbeatMs)
      const after = adoptions.find((a) => a.at >= deadAt)!.at - deadAt
      expect(after, "ms from the line to the adoption").toBeLessThan(heartbeatMs / 2)
    }
  }, 30_000)
})
