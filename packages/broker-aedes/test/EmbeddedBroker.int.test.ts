/**
 * Two embedded brokers clustered on this machine's Redis (mqemitter-redis), reaching it through a
 * TCP proxy that the test can cut: Redis going away and coming back must not end the process, and
 * the brokers must be one broker again afterwards.
 */
import { createServer, connect, type AddressInfo, type Server, type Socket } from "node:net"
import { afterAll, describe, expect, it } from "vitest"
import mqtt from "mqtt"
import { Log } from "@baton/core"
import { EmbeddedBroker } from "@baton/broker-aedes"
import * as TestRedis from "@baton/testkit/redis"

const redis = new URL(process.env.BATON_TEST_REDIS_URL ?? "redis://127.0.0.1:6379/3")

/** A TCP proxy to Redis: `cut` drops every connection and refuses new ones until `restore`. */
const proxy = async (prefix: string) => {
  const sockets = new Set<Socket>()
  const track = (s: Socket) => {
    sockets.add(s)
    s.on("close", () => sockets.delete(s))
    s.on("error", () => s.destroy())
  }
  const server: Server = createServer((client) => {
    const upstream = connect(Number(redis.port || 6379), redis.hostname)
    track(client)
    track(upstream)
    client.pipe(upstream).pipe(client)
    client.on("close", () => upstream.destroy())
    upstream.on("close", () => client.destroy())
  })
  const listen = () => new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve))
  let port = 0
  await listen()
  port = (server.address() as AddressInfo).port
  return {
    url: `redis://127.0.0.1:${port}${redis.pathname}?prefix=${prefix}`,
    cut: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      for (const s of sockets) s.destroy()
      await closed
    },
    restore: listen,
    close: async () => {
      for (const s of sockets) s.destroy()
      if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}

const until = async (what: string, check: () => boolean, timeoutMs = 15_000) => {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

describe("embedded brokers clustered on Redis", () => {
  const cleanup: Array<() => Promise<unknown>> = []
  afterAll(async () => {
    for (const c of cleanup.reverse()) await c()
  })

  it("a Redis outage is logged, not fatal, and the brokers relay to each other again once it is back", async () => {
    // The sessions' keys under a prefix of this test's, deleted after it.
    const keys = TestRedis.scoped(redis.toString())
    cleanup.push(keys.clean)
    const link = await proxy(keys.prefix)
    cleanup.push(link.close)
    const logs = [Log.memory(), Log.memory()]
    const [a, b] = await Promise.all(
      logs.map((logger) => EmbeddedBroker.start({ host: "127.0.0.1", mqttPort: 0, logger, sessions: { kind: "redis", url: link.url, cluster: true } }))
    )
    cleanup.push(() => a!.close(), () => b!.close())
    const topic = `embedded-test/${crypto.randomUUID()}`
    const received: Array<string> = []
    const subscriber = await mqtt.connectAsync(`mqtt://127.0.0.1:${b!.mqttPort}`, { protocolVersion: 4, reconnectPeriod: 0 })
    cleanup.push(() => subscriber.endAsync())
    subscriber.on("message", (_t, payload) => received.push(payload.toString()))
    await subscriber.subscribeAsync(topic, { qos: 1 })
    const publisher = await mqtt.connectAsync(`mqtt://127.0.0.1:${a!.mqttPort}`, { protocolVersion: 4, reconnectPeriod: 0 })
    cleanup.push(() => publisher.endAsync())

    // One broker across the two: published on a, received through b.
    await until("the first message, through Redis", () => {
      if (received.length === 0) void publisher.publishAsync(topic, "before", { qos: 1 })
      return received.includes("before")
    })

    await link.cut()
    const logged = (what: RegExp) => logs.every((l) => l.lines.some((x) => what.test(x)))
    await until("both brokers logging the lost connections", () => logged(/redis connection lost \(clustered broker\)/) && logged(/redis connection lost \(sessions\)/))
    await new Promise((r) => setTimeout(r, 500))
    await link.restore()
    await until("both brokers logging the connections back", () => logged(/redis connection back \(clustered broker\)/) && logged(/redis connection back \(sessions\)/))

    // Still one broker: a message published on a after the outage reaches b's subscriber.
    let sent = 0
    await until("a message published after the outage, through Redis", () => {
      void publisher.publishAsync(topic, `after-${sent++}`, { qos: 1 })
      return received.some((m) => m.startsWith("after-"))
    })
    // The loss is one line per outage, not one per reconnection attempt.
    for (const l of logs) for (const what of ["clustered broker", "sessions"]) expect(l.lines.filter((x) => x.includes(`redis connection lost (${what})`))).toHaveLength(1)
  }, 60_000)

  it("clusters under another prefix or database of the same Redis do not receive each other's messages", async () => {
    // Redis's PUBLISH ignores the database: only the channels' scope keeps the clusters apart.
    const other = new URL(redis)
    other.pathname = `/${(Number(redis.pathname.slice(1) || 0) + 1) % 16}`
    const first = TestRedis.scoped(redis.toString())
    const second = TestRedis.scoped(redis.toString())
    const third = TestRedis.scoped(other.toString())
    // The first scope's prefix in another database: a fourth cluster.
    const fourth = new URL(third.url)
    fourth.searchParams.set("prefix", first.prefix)
    cleanup.push(first.clean, second.clean, third.clean, () => TestRedis.scoped(fourth.toString()).clean())
    const urls = [first.url, first.url, second.url, third.url, fourth.toString()]
    const brokers = await Promise.all(urls.map((url) => EmbeddedBroker.start({ host: "127.0.0.1", mqttPort: 0, logger: Log.memory(), sessions: { kind: "redis", url, cluster: true } })))
    cleanup.push(...brokers.map((b) => () => b.close()))
    const topic = `embedded-test/${crypto.randomUUID()}`
    const received = brokers.map(() => [] as Array<string>)
    const clients = await Promise.all(brokers.map((b) => mqtt.connectAsync(`mqtt://127.0.0.1:${b.mqttPort}`, { protocolVersion: 4, reconnectPeriod: 0 })))
    cleanup.push(...clients.map((c) => () => c.endAsync()))
    await Promise.all(clients.map((c, i) => (c.on("message", (_t, payload) => received[i]!.push(payload.toString())), c.subscribeAsync(topic, { qos: 1 }))))
    // Each of brokers 1-4 publishes until its own subscriber has it back through Redis (broker 1's
    // also through broker 0, its cluster's other node).
    const from = (i: number) => `from-${i}`
    await until("every cluster's own messages, through Redis", () => {
      const missing = [1, 2, 3, 4].filter((i) => !received[i]!.includes(from(i)) || (i === 1 && !received[0]!.includes(from(1))))
      for (const i of missing) void clients[i]!.publishAsync(topic, from(i), { qos: 1 })
      return missing.length === 0
    })
    await new Promise((r) => setTimeout(r, 300))
    const senders = (i: number) => [...new Set(received[i])].sort()
    expect(senders(0)).toEqual([from(1)])
    expect(senders(1)).toEqual([from(1)])
    expect(senders(2)).toEqual([from(2)])
    expect(senders(3)).toEqual([from(3)])
    expect(senders(4)).toEqual([from(4)])
  }, 60_000)
})
