/**
 * A member's heartbeat while its tick is slow (Cluster.ts `tick`, `overdue`), on PostgreSQL with
 * real Cluster.ts members. A tick's step other than the heartbeat may take longer than
 * `deadAfterMs` on a live, healthy instance: its `acquired` hook reads the pending messages of the
 * partitions it gained (the store under load), a claim waits for a lock. The heartbeat must go out
 * meanwhile, or the others take the member for dead, claim its partitions and hand them back:
 * churn for nothing. A tick stuck past `stuckAfterMs` is no longer vouched for: the heartbeat is
 * withheld, so that a member whose tick never ends does not keep its partitions (and those a
 * dead member left it) from the others for ever.
 */
import { afterAll, describe, expect, it } from "vitest"
import { Log } from "@baton/core"
import { freshSchema } from "@baton/testkit/postgres"
import * as Cluster from "../src/Cluster.ts"
import { clusterMember } from "./clusterMember.ts"
import { sleep, until } from "./support.ts"

const partitions = 6
const heartbeatMs = 50
const deadAfterMs = 400
const all = Array.from({ length: partitions }, (_, p) => p)

const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
})

/** A cluster in a fresh schema whose members each have a store and a control pool of their own, as the runtime's do. */
const world = async () => {
  const schema = await freshSchema()
  cleanups.push(schema.drop)
  const member = async (instance: string, hooks: { acquired?: (parts: ReadonlyArray<number>) => Promise<void>; adopt?: (dead: ReadonlyArray<string>) => Promise<void> } = {}, extra: { stuckAfterMs?: number; logger?: Log.Logger } = {}) =>
    (await clusterMember({ url: schema.url, partitions, heartbeatMs, deadAfterMs, cleanups }, instance, hooks, extra)).cluster
  /** The partitions' owners and epochs, and whether each member is live, as `from` sees them. */
  const seen = async (from: Cluster.Cluster) => {
    const v = await from.view()
    return { live: new Map(v.members.map((m) => [m.instance, m.live])), parts: v.partitions.map((p) => `${p.part}:${p.owner}@${p.epoch}`) }
  }
  /** m1, m2 and m3 (their hooks `hooks`), started, once the partitions are spread over them. */
  const trio = async (hooks: { readonly m1?: Parameters<typeof member>[1]; readonly m2?: Parameters<typeof member>[1] } = {}) => {
    const m1 = await member("m1", hooks.m1)
    const m2 = await member("m2", hooks.m2)
    const m3 = await member("m3")
    await m1.start()
    await m2.start()
    await m3.start()
    await until("the partitions spread over m1, m2, m3", () => spread(m1, ["m1", "m2", "m3"]))
    return { m1, m2, m3 }
  }
  return { member, seen, trio }
}

/** The designated owner of each partition among `names`. */
const owners = (names: ReadonlyArray<string>) => Cluster.assign(names, partitions)
/** Whether every partition is its designated owner's among `names`, as `from` sees them. */
const spread = async (from: Cluster.Cluster, names: ReadonlyArray<string>) => (await from.view()).partitions.every((p) => p.owner === owners(names)[p.part])

/** A gate an `acquired` hook waits on (`open` lets it return); `entered` once the hook was called. */
const gate = () => {
  const { promise, resolve } = Promise.withResolvers<void>()
  let entered: number | undefined
  return {
    acquired: async () => void ((entered ??= Date.now()), await promise),
    open: () => resolve(),
    entered: () => entered !== undefined,
    /** When the hook was first entered (`Date.now()`). */
    enteredAt: () => entered
  }
}

/** Watches `from`'s view for `ms`: every read must show `who` live and the partitions as they were at the start. */
const steady = async (seen: (from: Cluster.Cluster) => Promise<{ live: Map<string, boolean>; parts: Array<string> }>, from: Cluster.Cluster, who: string, ms: number) => {
  const before = (await seen(from)).parts
  const dead: Array<number> = []
  const changed: Array<string> = []
  const started = Date.now()
  for (const end = Date.now() + ms; Date.now() < end; await sleep(20)) {
    const now = await seen(from)
    if (now.live.get(who) !== true) dead.push(Date.now() - started)
    if (now.parts.join() !== before.join()) changed.push(now.parts.join())
  }
  expect(dead, `${who} taken for dead (ms into the watch)`).toEqual([])
  expect(changed, "partitions changed hands").toEqual([])
}

describe("a member's heartbeat while its tick is slow (Cluster.ts) on PostgreSQL", () => {
  it("a member whose first tick's `acquired` hook (in `start`) blocks for 3 x deadAfterMs: one joining meanwhile finds it live and takes none of its partitions", async () => {
    const { member, seen } = await world()
    const held = gate()
    const logger = Log.memory()
    const m2 = await member("m2", { acquired: held.acquired }, { logger })
    // m2 alone: its first tick claims every partition, then its `acquired` hook blocks (and `start` with it).
    const starting = m2.start()
    try {
      await until("m2's acquired hook called", () => held.entered())
      expect(all.every((p) => m2.owns(p))).toBe(true)
      const m1 = await member("m1")
      await m1.start()
      await steady(seen, m1, "m2", 3 * deadAfterMs)
    } finally {
      held.open()
    }
    await starting
    const slow = logger.lines.filter((l) => l.includes("cluster tick slow"))
    expect(slow, "one line, naming the step").toHaveLength(1)
    expect(slow[0]).toContain("step=\"acquired hook\"")
    expect(logger.lines.filter((l) => l.includes("cluster tick stuck"))).toEqual([])
  }, 30_000)

  it("a member whose `acquired` hook blocks for 3 x deadAfterMs in a later tick stays live, and no partition changes hands", async () => {
    const { seen, trio } = await world()
    let held: ReturnType<typeof gate> | undefined
    const { m1, m3 } = await trio({ m2: { acquired: async () => held?.acquired() } })
    const toM2 = all.filter((p) => owners(["m1", "m2", "m3"])[p] === "m3" && owners(["m1", "m2"])[p] === "m2")
    expect(toM2.length, "m3 leaves m2 a partition (the names and partitions chosen so)").toBeGreaterThan(0)
    held = gate()
    // m3 leaves (its partitions released): m2's next tick claims those designated to it, then
    // its `acquired` hook blocks.
    await m3.stop(async () => undefined)
    await until("m2's acquired hook called", () => held!.entered())
    try {
      await until("m1 and m2 own what m3 had", () => spread(m1, ["m1", "m2"]))
      await steady(seen, m1, "m2", 3 * deadAfterMs)
    } finally {
      held.open()
    }
  }, 30_000)

  it("a member whose tick is stuck past stuckAfterMs stops heartbeating (one log line): the others take its partitions", async () => {
    const { member, seen } = await world()
    const stuckAfterMs = 1_000
    const held = gate()
    const logger = Log.memory()
    const m2 = await member("m2", { acquired: held.acquired }, { stuckAfterMs, logger })
    // m2 alone: its first tick claims every partition, then its `acquired` hook blocks for good.
    const starting = m2.start()
    const m1 = await member("m1")
    try {
      await until("m2's acquired hook called", () => held.entered())
      await m1.start()
      // From the moment the hook blocked, not from m1's start (slow on a loaded machine).
      const since = held.enteredAt()!
      await until("m2 dead in m1's view", async () => (await seen(m1)).live.get("m2") === false, 10_000)
      const silentAfter = Date.now() - since
      // Live until the tick is stuck (its heartbeats vouched for it meanwhile), dead within deadAfterMs after.
      expect(silentAfter, "m2 taken for dead (ms after its hook blocked)").toBeGreaterThanOrEqual(stuckAfterMs)
      expect(silentAfter).toBeLessThan(stuckAfterMs + deadAfterMs + 1_000)
      await until("m1 owns every partition", () => all.every((p) => m1.owns(p)))
      expect(logger.lines.filter((l) => l.includes("cluster tick stuck")), "one line").toHaveLength(1)
    } finally {
      held.open()
    }
    await starting
    // Its tick over, m2 heartbeats again and takes its partitions back.
    await until("m2 owns its partitions again", () => Cluster.assign(["m1", "m2"], partitions).every((owner, p) => owner !== "m2" || m2.owns(p)))
  }, 30_000)

  it("a leader whose `adopt` hook blocks while a member joins claims nothing from the joiner when it returns (the members read again, not as they were before the hook)", async () => {
    const { member, trio } = await world()
    let held: ReturnType<typeof gate> | undefined
    const { m1, m3 } = await trio({ m1: { adopt: async () => held?.acquired() } })
    const logger = Log.memory()
    const m4 = await member("m4", {}, { logger })
    // A partition of m3's that m1 would take from it alone with m2, and m4 takes once it joins (the names chosen so).
    const contested = all.filter((p) => owners(["m1", "m2", "m3"])[p] === "m3" && owners(["m1", "m2"])[p] === "m1" && owners(["m1", "m2", "m4"])[p] === "m4")
    expect(contested.length).toBeGreaterThan(0)
    held = gate()
    // m3 crashes: m1, the leader, finds it dead and its `adopt` hook blocks (m1's heartbeat goes on).
    await m3.abandon()
    await until("m1's adopt hook called", () => held!.entered())
    const epochs = async () => new Map((await m4.view()).partitions.map((p) => [p.part, `${p.owner}@${p.epoch}`]))
    let before: Map<number, string>
    try {
      await m4.start()
      await until("m4 owns the contested partitions", () => contested.every((p) => m4.owns(p)))
      await sleep(3 * heartbeatMs)
      before = await epochs()
    } finally {
      held.open()
    }
    // m1's tick goes on from its hook, and a few more ticks after it: the contested partitions stay m4's, under the same claim.
    const seenOwners: Array<string> = []
    for (const end = Date.now() + 10 * heartbeatMs; Date.now() < end; await sleep(10)) {
      const now = await epochs()
      for (const p of contested) if (now.get(p) !== before.get(p)) seenOwners.push(`${p}: ${before.get(p)} -> ${now.get(p)}`)
    }
    expect([...new Set(seenOwners)]).toEqual([])
    expect(contested.every((p) => m4.owns(p) && !m1.owns(p))).toBe(true)
    expect(logger.lines.filter((l) => l.includes("partitions lost")), "m4 taken over while live").toEqual([])
  }, 30_000)

  it("a leader stopped while its `adopt` hook blocks claims nothing once the hook returns: no new tenure of its own partitions or a dead member's, no `acquired` hook during the stop", async () => {
    const { member } = await world()
    const held = gate()
    let blocking = false
    const acquiredDuringStop: Array<number> = []
    let stopping = false
    const m1 = await member("m1", {
      adopt: async () => (blocking ? held.acquired() : undefined),
      acquired: async (parts) => void (stopping && acquiredDuringStop.push(...parts))
    })
    const m2 = await member("m2")
    await m1.start()
    await m2.start()
    await until("the partitions spread over m1, m2", () => spread(m1, ["m1", "m2"]))
    const before = new Map((await m1.view()).partitions.map((p) => [p.part, `${p.owner}@${p.epoch}`]))
    blocking = true
    // m2 crashes: m1, the leader, finds it dead and its tick blocks in the `adopt` hook, before it reads the partitions.
    await m2.abandon()
    await until("m1's adopt hook called", () => held.entered())
    stopping = true
    // m1 stops meanwhile (the stop waits for the tick), then the hook returns and the tick goes on.
    const stopped = m1.stop(async () => undefined)
    await sleep(3 * heartbeatMs)
    held.open()
    await stopped
    const after = new Map((await m2.view()).partitions.map((p) => [p.part, `${p.owner}@${p.epoch}`]))
    // Before, the tick went on to claim every partition anew (m1's own: no longer in its `owned`, which
    // the stop had cleared; m2's: its owner dead) and ran the `acquired` hook during the stop.
    expect(acquiredDuringStop, "partitions acquired during the stop").toEqual([])
    for (const [part, was] of before) {
      const [owner, epoch] = was.split("@")
      // Released at the leave (owner null) under the same epoch, or m2's as it was.
      expect(after.get(part), `partition ${part}, ${was} before`).toBe(owner === "m1" ? `null@${epoch}` : was)
    }
  }, 30_000)

  it("a member stopping whose drain takes 3 x deadAfterMs stays live meanwhile and keeps its partitions, then leaves and releases them", async () => {
    const { member, seen } = await world()
    const m1 = await member("m1")
    const m2 = await member("m2")
    await m1.start()
    await m2.start()
    await until("the partitions spread over m1, m2", () => spread(m1, ["m1", "m2"]))
    await m2.stop(() => steady(seen, m1, "m2", 3 * deadAfterMs))
    await until("m1 owns every partition", () => all.every((p) => m1.owns(p)))
    // Left for good: no heartbeat wrote its row back after the leave.
    await sleep(3 * heartbeatMs)
    expect((await seen(m1)).live.has("m2")).toBe(false)
  }, 30_000)
})
