/**
 * Brokers clustered on Redis that know the cluster's filters (Audience.ts): `wanted` answers there
 * too, so an event nobody subscribes to anywhere is not published. A "no" must open no window the
 * broker alone does not have: a client whose SUBACK came back on one instance gets every matching
 * event another instance decides to publish after that SUBACK, and an offline persistent session's
 * filter counts, also for an instance started after it subscribed.
 */
import { createServer, connect, type AddressInfo, type Socket } from "node:net"
import { afterAll, describe, expect, it, vi } from "vitest"
import fc from "fast-check"
import mqtt from "mqtt"
import { Log } from "@baton/core"
import { Redis } from "ioredis"
import { EmbeddedBroker } from "@baton/broker-aedes"
import * as TestRedis from "@baton/testkit/redis"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 6)
const redisUrl = process.env.BATON_TEST_CLUSTER_REDIS_URL ?? "redis://127.0.0.1:6379/4"
const scopes: Array<ReturnType<typeof TestRedis.scoped>> = []
afterAll(async () => {
  for (const s of scopes) await s.clean()
})

/**
 * `url` reached through a TCP proxy that holds what Redis sends back for `lagMs`: an instance whose
 * reads lag (a busy event loop, a slow network), which learns of a new filter late.
 */
const lagging = async (url: string, lagMs: number) => {
  const target = new URL(url)
  const sockets = new Set<Socket>()
  const server = createServer((client) => {
    const upstream = connect(Number(target.port || 6379), target.hostname)
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on("error", () => s.destroy())
    }
    client.pipe(upstream)
    client.on("close", () => upstream.destroy())
    // Redis's last replies (to a QUIT) still arrive, late, before the connection ends.
    upstream.on("data", (chunk: Buffer) => setTimeout(() => client.writable && client.write(chunk), lagMs))
    upstream.on("close", () => setTimeout(() => client.destroy(), lagMs))
  })
  let port = 0
  const listen = () => new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve))
  await listen()
  port = (server.address() as AddressInfo).port
  const proxied = new URL(url)
  proxied.host = `127.0.0.1:${port}`
  const close = async () => {
    for (const s of sockets) s.destroy()
    if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()))
  }
  /** `cut` drops every connection and refuses new ones until `restore`. */
  return { url: proxied.toString(), close, cut: close, restore: listen }
}

/**
 * Brokers of one cluster under a fresh Redis scope; `live` is the cluster table's answer. The
 * first one reaches Redis with replies held back `lagMs`.
 */
const cluster = async (names: ReadonlyArray<string>, live: () => ReadonlyArray<string> = () => names, lagMs = 0) => {
  const scope = TestRedis.scoped(redisUrl)
  scopes.push(scope)
  const link = await lagging(scope.url, lagMs)
  const start = (instance: string, url = scope.url) =>
    EmbeddedBroker.start({
      host: "127.0.0.1",
      mqttPort: 0,
      logger: Log.silent,
      sessions: { kind: "redis", url, cluster: true },
      members: { instance, live: async () => live() }
    })
  const brokers = await Promise.all(names.map((name, i) => start(name, i === 0 ? link.url : scope.url)))
  return {
    brokers,
    start,
    scope,
    link,
    close: async (more: ReadonlyArray<EmbeddedBroker.EmbeddedBroker> = []) => {
      await Promise.all([...brokers, ...more].map((b) => b.close()))
      await link.close()
    }
  }
}
const url = (b: EmbeddedBroker.EmbeddedBroker) => `mqtt://127.0.0.1:${b.mqttPort}`
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
/** Until every broker knows the cluster's filters (it waits to be live, then reads them). */
const certain = (brokers: ReadonlyArray<EmbeddedBroker.EmbeddedBroker>) =>
  vi.waitFor(() => {
    for (const b of brokers) expect(b.wanted("never/subscribed")).toBe(false)
  }, { timeout: 10_000, interval: 20 })

describe("clustered brokers that know the cluster's filters", () => {
  it("for any subscribe delay and filter: every event decided after the SUBACK on another instance arrives", async () => {
    const filterOf = fc.constantFrom("orders/+/shipped", "orders/#", "orders/o1/shipped", "+/o1/shipped")
    await fc.assert(
      fc.asyncProperty(filterOf, fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 1, max: 2 }), fc.integer({ min: 0, max: 30 }), async (filter, delayMs, gapMs, subscriberAt, lagMs) => {
        const { brokers, close } = await cluster(["a", "b", "c"], undefined, lagMs)
        try {
          await certain(brokers)
          const publisher = brokers[0]!
          const client = await mqtt.connectAsync(url(brokers[subscriberAt]!), { protocolVersion: 4, clean: true, reconnectPeriod: 0 })
          const got = new Set<number>()
          client.on("message", (_t, payload) => got.add(Number(payload.toString())))
          // Every other message the publisher decides as the runtime does (no outbox row, nothing
          // published, when unwanted); the others a client of the publisher's sends, which the
          // broker does not hand to Redis when unwanted.
          const sender = await mqtt.connectAsync(url(publisher), { protocolVersion: 4, clean: true, reconnectPeriod: 0 })
          const decided: Array<{ readonly n: number; readonly at: number; readonly wanted: boolean | undefined }> = []
          let stop = false
          const published: Array<Promise<unknown>> = []
          const publishing = (async () => {
            for (let n = 0; !stop; n++) {
              if (n % 2 === 0) {
                const wanted = publisher.wanted("orders/o1/shipped")
                decided.push({ n, at: performance.now(), wanted })
                if (wanted !== false) published.push(publisher.publish("orders/o1/shipped", String(n), 1))
              } else {
                decided.push({ n, at: performance.now(), wanted: true })
                published.push(sender.publishAsync("orders/o1/shipped", String(n), { qos: 1 }))
              }
              await sleep(gapMs)
            }
          })()
          await sleep(delayMs)
          await client.subscribeAsync(filter, { qos: 1 })
          const subacked = performance.now()
          await sleep(30 + lagMs)
          stop = true
          await publishing
          await Promise.all(published)
          const after = decided.filter((d) => d.at > subacked)
          expect(after.length).toBeGreaterThan(0)
          for (const d of after) expect(d.wanted, `event ${d.n}, decided ${(d.at - subacked).toFixed(1)} ms after the SUBACK`).toBe(true)
          await vi.waitFor(() => expect(after.filter((d) => !got.has(d.n)).map((d) => d.n)).toEqual([]), { timeout: 5_000, interval: 20 })
          await client.endAsync()
          await sender.endAsync()
        } finally {
          await close()
        }
      }),
      { numRuns: runs }
    )
  })

  it("counts an offline persistent session's filter, on an instance started after it too, and says no for nobody else", async () => {
    const live = new Set(["a", "b"])
    const { brokers, start, close } = await cluster(["a", "b"], () => [...live])
    let late: EmbeddedBroker.EmbeddedBroker | undefined
    try {
      await certain(brokers)
      const [a, b] = brokers as [EmbeddedBroker.EmbeddedBroker, EmbeddedBroker.EmbeddedBroker]
      const watcher = await mqtt.connectAsync(url(b), { protocolVersion: 4, clientId: "watcher", clean: false, reconnectPeriod: 0 })
      await watcher.subscribeAsync("events/shipped", { qos: 1 })
      await watcher.endAsync()
      expect(a.wanted("events/shipped")).toBe(true)
      expect(a.wanted("events/created")).toBe(false)
      await a.publish("events/shipped", "1", 1)

      // Started later: it does not know until it is live in the cluster table, then it does.
      late = await start("c")
      await sleep(300)
      expect(late.wanted("events/shipped")).toBeUndefined()
      live.add("c")
      await certain([late])
      expect(late.wanted("events/shipped")).toBe(true)
      expect(late.wanted("events/created")).toBe(false)
      await late.publish("events/shipped", "2", 1)

      const back = await mqtt.connectAsync(url(a), { protocolVersion: 4, clientId: "watcher", clean: false, reconnectPeriod: 0 })
      const got: Array<string> = []
      back.on("message", (_t, payload) => got.push(payload.toString()))
      await vi.waitFor(() => expect(got.sort()).toEqual(["1", "2"]), { timeout: 5_000, interval: 20 })
      await back.endAsync()
    } finally {
      await close(late === undefined ? [] : [late])
    }
  })

  it("while a live instance runs no registry (an earlier version, in a rolling upgrade) waits for it in no SUBACK and does not know; once it is gone, knows the persistent sessions subscribed through it", async () => {
    const live = new Set(["a", "b", "old"])
    const { brokers, scope, close } = await cluster(["a", "b"], () => [...live])
    // An instance of the earlier version: clustered on the same Redis, without the registry.
    const old = await EmbeddedBroker.start({ host: "127.0.0.1", mqttPort: 0, logger: Log.silent, sessions: { kind: "redis", url: scope.url, cluster: true } })
    try {
      // Its persistent session's filter is never announced: until it is gone nobody here may say no.
      const device = await mqtt.connectAsync(url(old), { protocolVersion: 4, clientId: "device", clean: false, reconnectPeriod: 0 })
      await device.subscribeAsync("events/device", { qos: 1 })
      await device.endAsync()
      const client = await mqtt.connectAsync(url(brokers[1]!), { protocolVersion: 4, clean: true, reconnectPeriod: 0 })
      const started = performance.now()
      await client.subscribeAsync("events/x", { qos: 1 })
      expect(performance.now() - started, "no SUBACK waits for it").toBeLessThan(5_000)
      await sleep(1_500)
      for (const b of brokers) expect(b.wanted("events/device"), "unknown while it is live: every event goes out").toBeUndefined()
      live.delete("old")
      await vi.waitFor(() => {
        for (const b of brokers) expect(b.wanted("events/device"), "the offline session's filter, read once it is gone").toBe(true)
      }, { timeout: 10_000, interval: 50 })
      expect(brokers[0]!.wanted("events/x")).toBe(true)
      expect(brokers[0]!.wanted("never/subscribed")).toBe(false)
      await client.endAsync()
    } finally {
      await close([old])
    }
  })

  it("holds a SUBACK back while a registered live instance has not acknowledged the filter, until it is dead; a reply filter waits for nobody", async () => {
    const live = new Set(["a", "b"])
    const { brokers, scope, close } = await cluster(["a", "b"], () => [...live])
    const redis = new Redis(scope.url.replace(/\?.*$/, ""), { keyPrefix: scope.prefix })
    try {
      await certain(brokers)
      // An instance that registered, then stopped reading (paused, cut off from Redis), still live.
      await redis.hset("baton:audience:brokers", "stuck", String(Date.now()))
      live.add("stuck")
      const client = await mqtt.connectAsync(url(brokers[1]!), { protocolVersion: 4, clean: true, reconnectPeriod: 0 })
      const asked = performance.now()
      expect((await client.subscribeAsync("reply/me/1", { qos: 1 }))[0]?.qos).toBe(1)
      expect(performance.now() - asked).toBeLessThan(5_000) // not the 15 s after which a held one is refused
      let subacked = false
      const subscribing = client.subscribeAsync("events/held", { qos: 1 }).then(() => (subacked = true))
      await sleep(600)
      expect(subacked).toBe(false)
      live.delete("stuck") // found dead in the cluster table
      await subscribing
      expect(brokers[0]!.wanted("events/held")).toBe(true)
      await client.endAsync()
    } finally {
      redis.disconnect()
      await close()
    }
  })

  it("an instance cut off from Redis does not know meanwhile, and a new filter's SUBACK waits until it is back and knows it", async () => {
    const { brokers, link, close } = await cluster(["a", "b"])
    try {
      await certain(brokers)
      const [a, b] = brokers as [EmbeddedBroker.EmbeddedBroker, EmbeddedBroker.EmbeddedBroker]
      await link.cut()
      await vi.waitFor(() => expect(a.wanted("events/cut")).toBeUndefined(), { timeout: 10_000, interval: 20 })
      const client = await mqtt.connectAsync(url(b), { protocolVersion: 4, clean: true, reconnectPeriod: 0 })
      let subacked = false
      const subscribing = client.subscribeAsync("events/cut", { qos: 1 }).then(() => (subacked = true))
      await sleep(500)
      expect(subacked).toBe(false)
      await link.restore()
      await subscribing
      await certain([a])
      expect(a.wanted("events/cut")).toBe(true)
      await client.endAsync()
    } finally {
      await close()
    }
  })
})
