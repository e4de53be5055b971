/**
 * A message that matches a client's QoS 0 subscription and one at QoS 1 is delivered by the QoS 1
 * one (patches/aedes@1.2.0.patch, subscribe.js). While the QoS 1 one is being unsubscribed
 * (clustered, mqemitter-redis: its listener is gone before Redis confirms the unsubscription and
 * Aedes forgets it), the QoS 0 one must still deliver what it matches.
 */
import { createServer, type AddressInfo } from "node:net"
import { describe, expect, it } from "vitest"
import mqtt from "mqtt"
import { Aedes } from "aedes"
import mqemitterRedis from "mqemitter-redis"
import { until } from "./waits.ts"

describe("Aedes on mqemitter-redis, overlapping QoS 0 and QoS 1 subscriptions", () => {
  it("every message the QoS 0 subscription matches arrives while the QoS 1 one is unsubscribed", async () => {
    const mq = mqemitterRedis({ host: "127.0.0.1", port: 6379, enableReadyCheck: false } as never)
    const aedes = await Aedes.createBroker({ mq } as never)
    const server = createServer(aedes.handle)
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
    const port = (server.address() as AddressInfo).port
    const topic = `maxqos-${process.pid}-${Date.now()}`
    const sub = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0, clean: true })
    const got = new Set<string>()
    sub.on("message", (_t, p) => got.add(p.toString()))
    try {
      await sub.subscribeAsync({ [`${topic}/#`]: { qos: 0 }, [`${topic}/+`]: { qos: 1 } })
      const sent: Array<string> = []
      let stop = false
      const publishing = (async () => {
        for (let i = 0; !stop && i < 5_000; i++) {
          sent.push(`m${i}`)
          await new Promise<void>((resolve, reject) =>
            aedes.publish({ cmd: "publish", topic: `${topic}/0`, payload: Buffer.from(`m${i}`), qos: 1, retain: false, dup: false } as never, (err) => (err ? reject(err) : resolve()))
          )
        }
      })()
      await new Promise((r) => setTimeout(r, 50))
      await sub.unsubscribeAsync(`${topic}/+`)
      await new Promise((r) => setTimeout(r, 50))
      stop = true
      await publishing
      await until(() => sent.every((m) => got.has(m)))
      expect(sent.filter((m) => !got.has(m))).toEqual([])
    } finally {
      await sub.endAsync()
      await new Promise<void>((r) => aedes.close(() => r()))
      await new Promise<void>((r) => server.close(() => r()))
    }
  }, 20_000)
})
