/**
 * A persistent session's QoS 2 message completed (PUBREC, PUBREL, PUBCOMP) on the Redis sessions
 * store (patches/aedes-persistence-redis@12.0.0.patch): its PUBREL's copy replaces the message in
 * the session's list (`outgoing:<client>:<broker>:<counter>` for `packet:<broker>:<counter>`), so
 * the PUBCOMP's clear must remove that entry. It removed the message's only: one stale entry a
 * completed message stayed in the list, for as long as the session did not reconnect (a session
 * connected for a day at 100 messages a second: 8.6 million), each PUBACK's and PUBREL's LREM
 * scanning them all, and a restore reading them first, up to maxSessionDelivery of them: the
 * messages stored behind them did not go out.
 */
import { afterAll, describe, expect, it } from "vitest"
import mqtt from "mqtt"
import { Redis } from "ioredis"
import persistenceRedis from "aedes-persistence-redis"
import * as TestRedis from "@baton/testkit/redis"
import { aedesBroker, aedesPublish, redisUrl } from "./sessions.ts"
import { until } from "./waits.ts"

const cleanup: Array<() => unknown> = []
afterAll(async () => {
  for (const c of cleanup) await c()
})

/** Aedes on a fresh Redis scope; `cluster`: the store's Redis Cluster path (one key a command), on this one Redis. */
const broker = async (cluster: boolean, maxSessionDelivery = 1_000_000) => {
  const scope = TestRedis.scoped(redisUrl)
  cleanup.push(scope.clean)
  const conn = new Redis(redisUrl, { keyPrefix: scope.prefix })
  const b = await aedesBroker({ persistence: persistenceRedis({ conn, maxSessionDelivery, ...(cluster ? { cluster: true } : {}) } as never) })
  /** The scope's keys (unprefixed) and the session's list. */
  const stored = async (clientId: string) => {
    const raw = new Redis(redisUrl)
    try {
      const list = await raw.lrange(`${scope.prefix}outgoing:${clientId}`, 0, -1)
      return { keys: (await TestRedis.keys(redisUrl, scope.prefix)).map((k) => k.slice(scope.prefix.length)).sort(), list }
    } finally {
      raw.disconnect()
    }
  }
  return { ...b, stored }
}

/** A persistent session's connection, subscribed at QoS 2 (no wildcard: the cluster path's retained read scans the cluster's nodes); what it got, its PUBCOMPs sent. */
const connect = async (url: string, clientId: string, clients: Array<mqtt.MqttClient>) => {
  const c = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, clean: false, clientId })
  clients.push(c)
  const got: Array<string> = []
  let pubcomps = 0
  c.on("message", (_t, p) => got.push(p.toString()))
  c.on("packetsend", (p) => {
    if (p.cmd === "pubcomp") pubcomps++
  })
  await new Promise((r) => c.once("connect", r))
  await c.subscribeAsync("k/1", { qos: 2 })
  return { c, got, pubcomps: () => pubcomps }
}

describe("a persistent session's completed QoS 2 messages on the redis sessions store", () => {
  it.each([false, true])("leave nothing of theirs in Redis, live or restored (cluster path: %s)", async (cluster) => {
    const b = await broker(cluster)
    try {
      const n = 20
      // Live: published while the session is connected.
      const one = await connect(b.url, "pubrel-clear", b.clients)
      for (let i = 0; i < n; i++) await aedesPublish(b.aedes, `live ${i}`, 2)
      await until(() => one.pubcomps() >= n)
      await one.c.endAsync()
      // Restored: stored while it is away, sent at its reconnect.
      for (let i = 0; i < n; i++) await aedesPublish(b.aedes, `kept ${i}`, 2)
      const two = await connect(b.url, "pubrel-clear", b.clients)
      await until(() => two.pubcomps() >= n)
      // Every PUBCOMP's clear done: the session's subscription and the clients' set only.
      const done = { keys: ["client:pubrel-clear", "clients"], list: [] }
      let left = await b.stored("pubrel-clear")
      for (let t = 0; t < 100 && left.list.length + left.keys.length > 2; t++) {
        await new Promise((r) => setTimeout(r, 20))
        left = await b.stored("pubrel-clear")
      }
      expect({ got: [...one.got, ...two.got], left }).toEqual({ got: [...Array.from({ length: n }, (_, i) => `live ${i}`), ...Array.from({ length: n }, (_, i) => `kept ${i}`)], left: done })
    } finally {
      await b.close()
    }
  }, 30_000)

  it.each([false, true])("a restore after completed ones sends the messages stored meanwhile (maxSessionDelivery 5; cluster path: %s)", async (cluster) => {
    const b = await broker(cluster, 5)
    try {
      const one = await connect(b.url, "pubrel-window", b.clients)
      for (let i = 0; i < 10; i++) await aedesPublish(b.aedes, `live ${i}`, 2)
      await until(() => one.pubcomps() >= 10)
      await new Promise((r) => setTimeout(r, 100))
      await one.c.endAsync()
      await aedesPublish(b.aedes, "kept", 2)
      const two = await connect(b.url, "pubrel-window", b.clients)
      await until(() => two.got.length >= 1, 2_000)
      expect(two.got).toEqual(["kept"])
    } finally {
      await b.close()
    }
  }, 30_000)
})
