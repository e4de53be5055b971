/**
 * The Redis commands a persistent session's restore costs, a stored message (patches/
 * aedes-persistence-redis@12.0.0.patch and aedes@1.2.0.patch): the two reads of the stored
 * messages (the restore's stream and the kept ids') one MGET for 128, the update one SET (32 under
 * way at once), the PUBACK's clear one script. It was 7 a message, each a round trip waiting for
 * the previous one (GET, GET, SET, GET, LREM, DECR, DEL): seconds to minutes for 4,000 messages.
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

describe("a redis session's restore of 500 stored messages", () => {
  it("sends Redis at most 2.1 commands a message (was 7), and delivers them all in order", async () => {
    const scope = TestRedis.scoped(redisUrl)
    cleanup.push(scope.clean)
    const conn = new Redis(redisUrl, { keyPrefix: scope.prefix })
    let commands = 0
    const send = conn.sendCommand.bind(conn)
    conn.sendCommand = ((...args: Parameters<typeof send>) => {
      commands++
      return send(...args)
    }) as typeof conn.sendCommand
    const b = await aedesBroker({ persistence: persistenceRedis({ conn, maxSessionDelivery: 1_000_000 } as never) })
    const n = 500
    try {
      const opts = { protocolVersion: 4 as const, reconnectPeriod: 0, clean: false, clientId: "restore-commands" }
      const first = await mqtt.connectAsync(b.url, opts)
      await first.subscribeAsync("k/#", { qos: 1 })
      await first.endAsync()
      for (let i = 0; i < n; i++) await aedesPublish(b.aedes, String(i), 1)
      commands = 0
      const got: Array<number> = []
      const again = mqtt.connect(b.url, opts)
      b.clients.push(again)
      again.on("message", (_t, p) => got.push(Number(p.toString())))
      await until(() => got.length >= n, 60_000)
      // Every PUBACK's clear done: the session's list, the messages and their counts are gone.
      const stored = async () => (await TestRedis.keys(redisUrl, scope.prefix)).filter((k) => k.startsWith(`${scope.prefix}packet:`) || k.startsWith(`${scope.prefix}outgoing:`)).length
      let left = await stored()
      for (let t = 0; t < 250 && left > 0; t++) {
        await new Promise((r) => setTimeout(r, 20))
        left = await stored()
      }
      expect({ got, left, few: commands <= 2.1 * n }, `${commands} commands for ${n} messages`).toEqual({ got: Array.from({ length: n }, (_, k) => k), left: 0, few: true })
    } finally {
      await b.close()
    }
  }, 90_000)
})
