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

/** Another client takes the id; a client left behind would reconnect and take it back. */
const expectNoClientLeftUnder = async (id: string) => {
  const other = await mqtt.connectAsync(url, { clientId: id, clean: false, protocolVersion: 4, reconnectPeriod: 0 })
  let closed = false
  other.on("close", () => (closed = true))
  await sleep(1_500)
  expect(closed).toBe(false)
  await other.endAsync()
}

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
    await expectNoClientLeftUnder(id)
  }, 20_000)
})

/**
 * A proxy to the broker that passes each connection's first bytes (the CONNECT) and what the
 * broker answers, and holds everything the client sends after it (a SUBSCRIBE never answered).
 */
const holdingAfterConnect = async (target: URL) => {
  const { createServer, connect } = await import("node:net")
  const sockets: Array<import("node:net").Socket> = []
  let held = 0
  const server = createServer((socket) => {
    sockets.push(socket)
    socket.on("error", () => {})
    const upstream = connect(Number(target.port || 1883), target.hostname)
    upstream.on("error", () => socket.destroy())
    sockets.push(upstream)
    upstream.pipe(socket)
    let first = true
    socket.on("data", (chunk: Buffer) => {
      if (first) upstream.write(chunk)
      else held++
      first = false
    })
  })
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  return {
    url: `mqtt://127.0.0.1:${(server.address() as { port: number }).port}`,
    held: () => held,
    close: () => {
      for (const s of sockets) s.destroy()
      server.close()
    }
  }
}

describe("MqttBroker subscribe given up by its signal", () => {
  it("aborted after the CONNACK, while its SUBSCRIBE waits for an answer: fails at once and leaves no client behind under its session id", async () => {
    const proxy = await holdingAfterConnect(new URL(url))
    const id = `test-abort-${Math.random().toString(36).slice(2, 8)}`
    const broker = await MqttBroker.make({ url: proxy.url, clientPrefix: "abort." })
    try {
      const controller = new AbortController()
      const subscribing = broker.subscribe({ clientId: id, unprefixed: true, topics: [`test/abort/${id}`], signal: controller.signal }, async () => undefined)
      const settled = subscribing.then(
        () => "subscribed",
        () => "failed"
      )
      for (let i = 0; i < 100 && proxy.held() === 0; i++) await sleep(20)
      expect(proxy.held()).toBeGreaterThan(0)
      controller.abort()
      expect(await Promise.race([settled, sleep(1_000).then(() => "still waiting")])).toBe("failed")
    } finally {
      proxy.close()
      await broker.close()
    }
    await expectNoClientLeftUnder(id)
  }, 20_000)
})
