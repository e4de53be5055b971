/**
 * Review of pubrel: a QoS 2 message whose PUBREL is stored (its PUBCOMP never came: the client
 * left first), restored at the next connection (the PUBREL sent again) and completed then: nothing
 * of it is left in the session (Redis: its PUBREL copy's key and list entry, on both the script's
 * and the Cluster path; every store: nothing sent again at the connection after).
 */
import { afterAll, describe, expect, it } from "vitest"
import mqtt from "mqtt"
import { Redis } from "ioredis"
import persistenceRedis from "aedes-persistence-redis"
import * as TestRedis from "@baton/testkit/redis"
import { aedesBroker, aedesPersistence, aedesPublish, redisUrl } from "./sessions.ts"
import { until } from "./waits.ts"

const cleanup: Array<() => unknown> = []
afterAll(async () => {
  for (const c of cleanup) await c()
})

type Store = { outgoingStream: (client: { id: string }) => AsyncIterable<unknown> }

const opts = (clientId: string) => ({ protocolVersion: 4 as const, reconnectPeriod: 0, clean: false, clientId })

/** Left with n PUBRELs stored: the messages released (PUBREL received), no PUBCOMP sent. */
const leaveReleased = async (url: string, clientId: string, aedes: unknown, n: number, clients: Array<mqtt.MqttClient>) => {
  const c = await mqtt.connectAsync(url, opts(clientId))
  clients.push(c)
  await c.subscribeAsync("k/1", { qos: 2 })
  let released = 0
  c.on("message", () => released++)
  // mqtt.js sends the PUBCOMP once handleMessage calls back: never.
  c.handleMessage = () => {}
  for (let i = 0; i < n; i++) await aedesPublish(aedes as never, `m ${i}`, 2)
  // mqtt.js handles the next packet once handleMessage called back: it released the first only,
  // and sent PUBREC for all n. The session has n PUBRELs stored.
  const store = (aedes as { persistence: Store }).persistence
  const pubrels = async () => {
    let k = 0
    for await (const p of store.outgoingStream({ id: clientId })) if ((p as { cmd: string }).cmd === "pubrel") k++
    return k
  }
  for (let t = 0; t < 100 && (await pubrels()) < n; t++) await new Promise((r) => setTimeout(r, 20))
  expect({ released, pubrels: await pubrels() }).toEqual({ released: 1, pubrels: n })
  c.stream.destroy()
  c.end(true)
}

/** Reconnects: the stored PUBRELs go again, completed; returns what a third connection gets. */
const completeThenAgain = async (url: string, clientId: string, aedes: unknown, n: number, clients: Array<mqtt.MqttClient>) => {
  const two = mqtt.connect(url, opts(clientId))
  clients.push(two)
  let pubcomps = 0
  two.on("packetsend", (p) => {
    if (p.cmd === "pubcomp") pubcomps++
  })
  await new Promise((r) => two.once("connect", r))
  await until(() => pubcomps >= n)
  expect(pubcomps).toBe(n)
  await two.subscribeAsync("k/2", { qos: 0 })
  await two.endAsync()
  const three = mqtt.connect(url, opts(clientId))
  clients.push(three)
  const again: Array<string> = []
  three.on("packetreceive", (p) => {
    // A PUBREL before "after" is a restored one ("after"'s own comes after it).
    if (p.cmd === "publish") again.push(p.payload.toString())
    else if (p.cmd === "pubrel" && !again.includes("after")) again.push("pubrel")
  })
  await new Promise((r) => three.once("connect", r))
  await aedesPublish(aedes as never, "after", 2)
  await until(() => again.includes("after"))
  return again
}

describe("a QoS 2 message's PUBREL restored, then completed", () => {
  it.each([false, true])("redis: nothing of it is left in Redis (cluster path: %s)", async (cluster) => {
    const scope = TestRedis.scoped(redisUrl)
    cleanup.push(scope.clean)
    const conn = new Redis(redisUrl, { keyPrefix: scope.prefix })
    const b = await aedesBroker({ persistence: persistenceRedis({ conn, ...(cluster ? { cluster: true } : {}) } as never) })
    try {
      const n = 3
      await leaveReleased(b.url, "pubrel-restored", b.aedes, n, b.clients)
      const raw = new Redis(redisUrl)
      cleanup.push(() => raw.disconnect())
      const list = () => raw.lrange(`${scope.prefix}outgoing:pubrel-restored`, 0, -1)
      expect((await list()).filter((k) => k.startsWith("outgoing:pubrel-restored:")).length).toBe(n)
      const again = await completeThenAgain(b.url, "pubrel-restored", b.aedes, n, b.clients)
      expect(again).toEqual(["after"])
      await new Promise((r) => setTimeout(r, 100))
      const keys = (await TestRedis.keys(redisUrl, scope.prefix)).map((k) => k.slice(scope.prefix.length)).filter((k) => !k.startsWith("client") && k !== "clients")
      // "after" may be completed or not yet: only its own keys may be left.
      const left = (await list()).filter((k) => k.startsWith("outgoing:pubrel-restored:"))
      expect({ left, pubrelCopies: keys.filter((k) => k.startsWith("outgoing:pubrel-restored:")) }).toEqual({ left: [], pubrelCopies: [] })
    } finally {
      await b.close()
    }
  }, 30_000)

  it.each(["memory", "disk"] as const)("%s: none is left nor sent again", async (kind) => {
    const persistence = aedesPersistence(kind, cleanup)
    const b = await aedesBroker(persistence === undefined ? {} : { persistence })
    try {
      const n = 3
      await leaveReleased(b.url, "pubrel-restored", b.aedes, n, b.clients)
      const again = await completeThenAgain(b.url, "pubrel-restored", b.aedes, n, b.clients)
      expect(again).toEqual(["after"])
    } finally {
      await b.close()
    }
  }, 30_000)

  it("redis: two sessions, one completing while the other's PUBREL is stored: each clear removes its own entry only", async () => {
    const scope = TestRedis.scoped(redisUrl)
    cleanup.push(scope.clean)
    const conn = new Redis(redisUrl, { keyPrefix: scope.prefix })
    const b = await aedesBroker({ persistence: persistenceRedis({ conn } as never) })
    try {
      const raw = new Redis(redisUrl)
      cleanup.push(() => raw.disconnect())
      const done = mqtt.connect(b.url, opts("pubrel-done"))
      b.clients.push(done)
      let pubcomps = 0
      done.on("packetsend", (p) => {
        if (p.cmd === "pubcomp") pubcomps++
      })
      await new Promise((r) => done.once("connect", r))
      await done.subscribeAsync("k/1", { qos: 2 })
      // "pubrel-held" subscribes, then its PUBRELs stay stored (leaveReleased publishes for both).
      await leaveReleased(b.url, "pubrel-held", b.aedes, 3, b.clients)
      await until(() => pubcomps >= 3)
      await done.subscribeAsync("k/2", { qos: 0 })
      const list = (id: string) => raw.lrange(`${scope.prefix}outgoing:${id}`, 0, -1)
      const held = await list("pubrel-held")
      expect({ done: await list("pubrel-done"), held: held.length, copies: held.every((k) => k.startsWith("outgoing:pubrel-held:")) }).toEqual({ done: [], held: 3, copies: true })
      // The messages stay (held's count); its restore completes them: then nothing of them is left.
      const again = await completeThenAgain(b.url, "pubrel-held", b.aedes, 3, b.clients)
      expect(again).toEqual(["after"])
      await new Promise((r) => setTimeout(r, 100))
      const keys = (await TestRedis.keys(redisUrl, scope.prefix)).map((k) => k.slice(scope.prefix.length))
      expect({ held: (await list("pubrel-held")).filter((k) => k.startsWith("outgoing:")), copies: keys.filter((k) => k.startsWith("outgoing:pubrel-held:")) }).toEqual({ held: [], copies: [] })
    } finally {
      await b.close()
    }
  }, 30_000)
})
