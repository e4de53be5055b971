/**
 * The external-broker client against this machine's Mosquitto (BATON_TEST_MOSQUITTO_URL): one
 * session id taken over by another process must stay with it, never taken back and forth.
 */
import mqtt from "mqtt"
import { afterEach, describe, expect, it } from "vitest"
import type { Broker, Message } from "@baton/core"
import * as MqttBroker from "../src/MqttBroker.ts"

const url = process.env.BATON_TEST_MOSQUITTO_URL ?? "mqtt://127.0.0.1:1883"
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe("MqttBroker on Mosquitto", () => {
  const opened: Array<Broker> = []
  const open = async (prefix: string) => {
    const broker = await MqttBroker.make({ url, clientPrefix: `${prefix}.` })
    opened.push(broker)
    return broker
  }
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((b) => b.close()))
  })

  it("an exclusive session taken over by another process stays with it: the former holder lets go instead of reconnecting", async () => {
    const id = `test-exclusive-${Math.random().toString(36).slice(2, 8)}`
    const topic = `test/exclusive/${id}`
    let holder = "a"
    const got = { a: [] as Array<string>, b: [] as Array<string> }
    const handler = (who: "a" | "b") => async (m: Message) => void got[who].push(m.payload.toString())
    const a = await open("a")
    const b = await open("b")
    await a.subscribe({ clientId: id, unprefixed: true, topics: [topic], exclusive: () => holder === "a" }, handler("a"))
    holder = "b"
    await b.subscribe({ clientId: id, unprefixed: true, topics: [topic], exclusive: () => holder === "b" }, handler("b"))
    // Longer than a few reconnect periods (500 ms): a client that reconnects would have taken it back by now.
    await sleep(2_000)
    const publisher = await open("publisher")
    for (let i = 0; i < 20; i++) await publisher.publish(topic, String(i), 1)
    for (let i = 0; i < 100 && got.b.length < 20; i++) await sleep(50)
    expect(got.b).toEqual(Array.from({ length: 20 }, (_, i) => String(i)))
    expect(got.a).toEqual([])
  }, 20_000)

  it("a subscription that fails leaves no client behind under its session id", async () => {
    const id = `test-orphan-${Math.random().toString(36).slice(2, 8)}`
    const broker = await open("orphan")
    await expect(broker.subscribe({ clientId: id, unprefixed: true, topics: ["bad/#/filter"] }, async () => undefined)).rejects.toThrow()
    // Another client takes the id; a client left behind would reconnect and take it back.
    const other = await mqtt.connectAsync(url, { clientId: id, clean: false, protocolVersion: 4, reconnectPeriod: 0 })
    let closed = false
    other.on("close", () => (closed = true))
    await sleep(1_500)
    expect(closed).toBe(false)
    await other.endAsync()
  }, 20_000)
})
