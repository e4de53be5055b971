/**
 * The disk sessions store (aedes-persistence-level 9.2, patched) finds the persistent sessions a
 * message is stored for by their subscriptions' filters (an in-memory trie of the QoS 1/2 ones).
 * Its update on a SUBSCRIBE looked the new filter up as a topic and dropped the client's other
 * filters matching it: a persistent session subscribed to `s/#` at QoS 1, then to `s/a/b` at QoS 0
 * (or `s/a/+`), had no filter left in the store, so none of its messages were stored while it was
 * away, and a live one, whose delivery updates its stored copy, went nowhere ("no such packet").
 * And the trie's load at the broker's start took the QoS 0 filters too, on disk and in Redis
 * (aedes-persistence-redis 12, patched): a QoS 1 message for a session subscribed at QoS 0 only
 * was stored, and went out at QoS 1 at its restore [MQTT-3.8.4-6]. The Redis store never had the
 * first defect (checked here too).
 */
import { afterAll, describe, expect, it } from "vitest"
import mqtt from "mqtt"
import { EmbeddedBroker } from "@baton/broker-aedes"
import { freshSessions } from "./sessions.ts"
import { until } from "./waits.ts"

const cleanup: Array<() => unknown> = []
afterAll(async () => {
  for (const c of cleanup) await c()
})

/** (topic, QoS) of each PUBLISH `c` receives. */
const received = (c: mqtt.MqttClient) => {
  const got: Array<string> = []
  c.on("packetreceive", (p) => {
    const packet = p as { cmd: string; topic?: string; qos?: number }
    if (packet.cmd === "publish") got.push(`${packet.topic} ${packet.qos}`)
  })
  return got
}

const connect = async (url: string, clientId: string) => {
  const c = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, clean: false, clientId })
  const got = received(c)
  await new Promise<void>((resolve, reject) => (c.once("connect", () => resolve()), c.once("error", reject)))
  return { c, got }
}

describe("persistent sessions' filters in the disk and Redis stores", () => {
  it.each([
    ["disk", "s/a/b"],
    ["disk", "s/a/+"],
    ["redis", "s/a/b"],
    ["redis", "s/a/+"]
  ] as const)("%s: a QoS 0 filter (%s) subscribed after an overlapping QoS 1 one leaves it in place: live and stored messages arrive", async (kind, narrow) => {
    const broker = await EmbeddedBroker.start({ host: "127.0.0.1", mqttPort: 0, sessions: freshSessions(kind, cleanup) })
    const url = `mqtt://127.0.0.1:${broker.mqttPort}`
    try {
      const first = await connect(url, "ls-overlap")
      await first.c.subscribeAsync({ "s/#": { qos: 1 }, [narrow]: { qos: 0 } })
      await broker.publish("s/a/b", "live", 1)
      await until(() => first.got.length > 0, 3_000)
      expect(first.got).toEqual(["s/a/b 1"])
      await first.c.endAsync()
      await broker.publish("s/a/b", "stored 1", 1)
      await broker.publish("s/c", "stored 2", 1)
      const second = await connect(url, "ls-overlap")
      await until(() => second.got.length >= 2, 3_000)
      await new Promise((r) => setTimeout(r, 50))
      expect(second.got).toEqual(["s/a/b 1", "s/c 1"])
      await second.c.endAsync()
    } finally {
      await broker.close()
    }
  })

  it.each(["disk", "redis"] as const)("%s: after a restart, a session subscribed at QoS 0 only gets no stored QoS 1 message (none is stored for it)", async (kind) => {
    const sessions = freshSessions(kind, cleanup)
    let broker = await EmbeddedBroker.start({ host: "127.0.0.1", mqttPort: 0, sessions })
    try {
      const first = await connect(`mqtt://127.0.0.1:${broker.mqttPort}`, "ls-qos0")
      await first.c.subscribeAsync({ "z/#": { qos: 0 } })
      await first.c.endAsync()
      await broker.close()
      broker = await EmbeddedBroker.start({ host: "127.0.0.1", mqttPort: 0, sessions })
      await broker.publish("z/1", "while away", 1)
      const second = await connect(`mqtt://127.0.0.1:${broker.mqttPort}`, "ls-qos0")
      await broker.publish("z/2", "live", 1)
      await until(() => second.got.includes("z/2 0"), 3_000)
      await new Promise((r) => setTimeout(r, 50))
      expect(second.got).toEqual(["z/2 0"])
      await second.c.endAsync()
    } finally {
      await broker.close()
    }
  })
})
