import { describe, expect, it } from "vitest"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import mqtt from "mqtt"
import { Process } from "@baton/testkit"
import * as TestRedis from "@baton/testkit/redis"

/** An outside client's persistent session: subscribed, then offline while events are queued for it. */
const offlineSubscriber = async (url: string, clientId: string) => {
  const client = await mqtt.connectAsync(url, { protocolVersion: 4, clientId, clean: false, reconnectPeriod: 0 })
  await client.subscribeAsync("events/order-shipped", { qos: 1 })
  await client.endAsync()
}

/** Reconnects the session and collects what the broker kept for it. */
const drainSession = async (url: string, clientId: string, expected: number) => {
  const ids = new Set<string>()
  const client = mqtt.connect(url, { protocolVersion: 4, clientId, clean: false, reconnectPeriod: 0, manualConnect: true })
  // Attach the handler before connecting: queued messages are flushed right after CONNACK.
  client.on("message", (_topic, payload) => ids.add((JSON.parse(payload.toString()) as { correlationId: string }).correlationId))
  client.connect()
  const until = Date.now() + 15_000
  while (ids.size < expected && Date.now() < until) await new Promise((r) => setTimeout(r, 50))
  await client.endAsync()
  return ids
}

const sessionsSurvive = (env: Record<string, string>, clean?: () => Promise<unknown>) => async () => {
  const dataDir = mkdtempSync(join(tmpdir(), "baton-sessions-"))
  const clientId = `watcher-${Math.random().toString(36).slice(2, 8)}`
  let first: Process.Running | undefined
  let second: Process.Running | undefined
  try {
    first = await Process.startProcess(dataDir, env)
    const url1 = `mqtt://127.0.0.1:${first.mqttPort}`
    await offlineSubscriber(url1, clientId)
    const publisher = await mqtt.connectAsync(url1, { protocolVersion: 4, reconnectPeriod: 0 })
    const ids = Array.from({ length: 20 }, () => crypto.randomUUID())
    for (const [n, id] of ids.entries())
      await publisher.publishAsync(
        "initiate/place-order",
        JSON.stringify({ id, type: "place-order", data: { customerId: `s-${n}`, email: "s@example.com", items: [{ sku: "BOOK-1", qty: 1, price: 1 }], payment: { card: "4242424242424242" } } }),
        { qos: 1 }
      )
    await publisher.endAsync()
    // Every order-shipped was published (the relay emptied the outbox), while the watcher was offline.
    await Process.eventually(() => Process.readStore(dataDir, (db) => Process.count(db, "SELECT COUNT(*) FROM shipments") === 20 && Process.count(db, "SELECT COUNT(*) FROM outbox") === 0), 15_000, "20 shipments published")
    expect(await first.kill("SIGKILL")).toBe("SIGKILL")

    second = await Process.startProcess(dataDir, env)
    const received = await drainSession(`mqtt://127.0.0.1:${second.mqttPort}`, clientId, ids.length)
    expect([...received].sort()).toEqual([...ids].sort())
  } finally {
    await first?.kill("SIGKILL")
    await second?.kill("SIGKILL")
    rmSync(dataDir, { recursive: true, force: true })
    await clean?.()
  }
}

describe("persistent sessions of outside clients across SIGKILL", () => {
  // The sessions' keys under a prefix of this test's, deleted after it.
  const redis = TestRedis.scoped(process.env.BATON_TEST_REDIS_URL ?? "redis://127.0.0.1:6379/3")
  it("keep their queued QoS 1 messages on disk", sessionsSurvive({}), 60_000)
  it("keep their queued QoS 1 messages in Redis", sessionsSurvive({ BATON_REDIS_URL: redis.url }, redis.clean), 60_000)
})
