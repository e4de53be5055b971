/**
 * The Redis restore stream's read-ahead (patches/aedes-persistence-redis@12.0.0.patch: its
 * messages read 128 a MGET) gives a message as it was when its batch was read: one cleared since
 * (the PUBACK of the connection this one took over; with `cluster`, on another broker, whose close
 * comes later) is still given. Its update (the restore's, before it sends it) must then fail with
 * "no such packet" (the restore skips it, as the memory and disk stores do), not SET its key again:
 * a message resurrected outside the session's list, with no count (its PUBACK's DECR makes it -1),
 * kept in Redis for ever.
 */
import { afterAll, describe, expect, it } from "vitest"
import { Redis } from "ioredis"
import { createRequire } from "node:module"
import * as TestRedis from "@baton/testkit/redis"
import { redisUrl } from "./sessions.ts"

type Stored = { readonly cmd: string; readonly payload: Buffer; readonly [k: string]: unknown }
/** aedes-persistence-redis's store itself (its module ships no types). */
const AsyncRedisPersistence = createRequire(import.meta.url)("aedes-persistence-redis/asyncPersistence.js") as new (opts: { conn: Redis }) => {
  outgoingEnqueueCombi(subs: ReadonlyArray<object>, packet: object): Promise<void>
  outgoingUpdate(client: object, packet: object): Promise<void>
  outgoingClearMessageId(client: object, packet: object): Promise<unknown>
  outgoingStream(client: object): AsyncIterable<Stored>
}

const cleanup: Array<() => unknown> = []
afterAll(async () => {
  for (const c of cleanup) await c()
})

describe("a redis session's stored message cleared after the restore stream read it ahead", () => {
  it("is not stored again by the restore's update", async () => {
    const scope = TestRedis.scoped(redisUrl)
    cleanup.push(scope.clean)
    const conn = new Redis(redisUrl, { keyPrefix: scope.prefix })
    cleanup.push(() => conn.disconnect())
    const p = new AsyncRedisPersistence({ conn })
    const client = { id: "ahead" }
    const sub = { clientId: "ahead", topic: "k", qos: 1 }
    const packets = [0, 1, 2].map((i) => ({ cmd: "publish", topic: "k", payload: Buffer.from(String(i)), qos: 1, retain: false, dup: false, brokerId: "b1", brokerCounter: i + 1 }))
    for (const pk of packets) await p.outgoingEnqueueCombi([sub], pk)
    // The earlier connection sent message 1 with id 7.
    await p.outgoingUpdate(client, { ...packets[1], messageId: 7 })
    const it = p.outgoingStream(client)[Symbol.asyncIterator]()
    const given: Array<string> = []
    const first = await it.next()
    given.push(first.value.payload.toString())
    // That connection's PUBACK of message 1 clears it, after the restore's first read.
    await p.outgoingClearMessageId(client, { messageId: 7 })
    const updated: Array<string> = []
    for (let r = await it.next(), id = 100; !r.done; r = await it.next(), id++) {
      given.push(r.value.payload.toString())
      try {
        await p.outgoingUpdate(client, { ...r.value, messageId: id })
        updated.push(r.value.payload.toString())
      } catch (e) {
        if ((e as Error).message !== "no such packet") throw e
      }
    }
    const keys = (await TestRedis.keys(redisUrl, scope.prefix)).map((k) => k.slice(scope.prefix.length)).filter((k) => k.startsWith("packet:")).sort()
    expect({ updated, keys }, `given ${given.join(",")}`).toEqual({ updated: ["2"], keys: ["packet:b1:1", "packet:b1:1:offlineCount", "packet:b1:3", "packet:b1:3:offlineCount"] })
  }, 30_000)

  it("nor is a PUBREL completed meanwhile (its copy for the session, and its count)", async () => {
    const scope = TestRedis.scoped(redisUrl)
    cleanup.push(scope.clean)
    const conn = new Redis(redisUrl, { keyPrefix: scope.prefix })
    cleanup.push(() => conn.disconnect())
    const p = new AsyncRedisPersistence({ conn })
    const client = { id: "ahead" }
    const sub = { clientId: "ahead", topic: "k", qos: 2 }
    const packets = [0, 1, 2].map((i) => ({ cmd: "publish", topic: "k", payload: Buffer.from(String(i)), qos: 2, retain: false, dup: false, brokerId: "b1", brokerCounter: i + 1 }))
    for (const pk of packets) await p.outgoingEnqueueCombi([sub], pk)
    // The earlier connection sent message 1 with id 7 and got its PUBREC: its PUBREL is stored.
    await p.outgoingUpdate(client, { ...packets[1], messageId: 7 })
    await p.outgoingUpdate(client, { cmd: "pubrel", messageId: 7, brokerId: "b1", brokerCounter: 2 })
    const it = p.outgoingStream(client)[Symbol.asyncIterator]()
    await it.next()
    // That connection's PUBCOMP clears it, after the restore's first read.
    await p.outgoingClearMessageId(client, { messageId: 7 })
    for (let r = await it.next(), id = 100; !r.done; r = await it.next(), id++) {
      const update = r.value.cmd === "pubrel" ? { ...r.value } : { ...r.value, messageId: id }
      await p.outgoingUpdate(client, update).catch((e: Error) => {
        if (e.message !== "no such packet") throw e
      })
    }
    const keys = (await TestRedis.keys(redisUrl, scope.prefix)).map((k) => k.slice(scope.prefix.length)).filter((k) => k.startsWith("packet:") || k.startsWith("outgoing:ahead:")).sort()
    expect(keys).toEqual(["packet:b1:1", "packet:b1:1:offlineCount", "packet:b1:3", "packet:b1:3:offlineCount"])
  }, 30_000)
})
