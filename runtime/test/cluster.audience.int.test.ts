/**
 * Two instances clustered on PostgreSQL and Redis know each other's clients' filters (the broker's
 * Audience.ts): an event nobody subscribes to anywhere takes no outbox row, and one a client
 * subscribed to on the other instance reaches it, for every order placed after the SUBACK, while
 * orders keep flowing through the first.
 */
import { randomUUID } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import mqtt from "mqtt"
import { clusterEnv, startCluster, type Cluster } from "./cluster.ts"
import { cards } from "./orders.ts"
import { getJson, sleep } from "./support.ts"

const redisUrl = process.env.BATON_TEST_CLUSTER_REDIS_URL ?? "redis://127.0.0.1:6379/4"

const order = (id: string) =>
  JSON.stringify({ id, type: "place-order", data: { customerId: `caud-${id.slice(0, 8)}`, email: "a@example.com", items: [{ sku: "BOOK-1", qty: 1, price: 3 }], payment: { card: cards.approved } } })

/** Outbox rows the instances wrote so far (their stores' statement counts by text). */
const outboxInserts = async (ports: ReadonlyArray<number>): Promise<number> => {
  let n = 0
  for (const port of ports) {
    const { body } = await getJson(port, "/healthz?statements=1")
    n += (body.statementTexts as Array<{ text: string; count: number }>).filter((t) => t.text.startsWith("INSERT INTO outbox")).reduce((m, t) => m + t.count, 0)
  }
  return n
}

describe("a cluster's instances know each other's subscribers", () => {
  let c: Cluster
  beforeAll(async () => {
    c = await startCluster(2, clusterEnv({ redisUrl }))
    await c.settled()
  })
  afterAll(async () => {
    await c?.stop()
  })

  it("an event subscribed on the other instance reaches its client for every order placed after the SUBACK; the others take no outbox row", async () => {
    const [first, second] = c.instances.map((i) => i.running!) as [NonNullable<Cluster["instances"][0]["running"]>, NonNullable<Cluster["instances"][0]["running"]>]
    const ports = [first.httpPort, second.httpPort]
    // Both instances live in the cluster table a few heartbeats: each has read the filters.
    await sleep(600)
    const publisher = await mqtt.connectAsync(`mqtt://127.0.0.1:${first.mqttPort}`, { protocolVersion: 4, clean: true, reconnectPeriod: 0 })
    const subscriber = await mqtt.connectAsync(`mqtt://127.0.0.1:${second.mqttPort}`, { protocolVersion: 4, clean: true, reconnectPeriod: 0 })
    const created = new Set<string>()
    subscriber.on("message", (_t, payload) => created.add((JSON.parse(payload.toString()) as { correlationId: string }).correlationId))
    const before = await outboxInserts(ports)
    // Orders flow through the first instance while the second's client subscribes.
    const placed: Array<{ readonly id: string; readonly afterSuback: boolean }> = []
    let subacked = false
    const placing = (async () => {
      for (let i = 0; i < 40; i++) {
        const id = randomUUID()
        const afterSuback = subacked
        await publisher.publishAsync("initiate/place-order", order(id), { qos: 1 })
        placed.push({ id, afterSuback })
        await sleep(Math.floor(Math.random() * 15))
      }
    })()
    await sleep(Math.floor(Math.random() * 150))
    await subscriber.subscribeAsync("events/order-created", { qos: 1 })
    subacked = true
    await placing
    const shipped = async () => Number((await c.sql<{ n: string }>("SELECT COUNT(*) AS n FROM shipments"))[0]?.n ?? 0)
    for (const deadline = Date.now() + 60_000; (await shipped()) < placed.length; ) {
      if (Date.now() > deadline) throw new Error(`only ${await shipped()} of ${placed.length} orders shipped`)
      await sleep(100)
    }
    await sleep(500)
    const expected = placed.filter((p) => p.afterSuback).map((p) => p.id)
    expect(expected.length).toBeGreaterThan(0)
    expect(expected.filter((id) => !created.has(id))).toEqual([])
    // Seven public events an order, one subscribed (order-created): at most one row an order.
    expect(await outboxInserts(ports)).toBeLessThanOrEqual(before + placed.length)
    await publisher.endAsync()
    await subscriber.endAsync()
  })
})
