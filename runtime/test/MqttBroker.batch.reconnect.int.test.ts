/**
 * `MqttBroker.subscribe`'s `batch` across a reconnect: a batch can hold messages received on the
 * connection that was lost (taken in while the previous batch ran) and, after them, the broker's
 * redeliveries on the new connection. When such a batch fails, none of it is acknowledged: the
 * connection it came on must be dropped too, or the broker (MQTT 3.1.1: redelivery only on a
 * reconnect) holds them unacknowledged while later messages of the session are handed over past
 * them (order per key broken, the messages stuck in flight until some later reconnect).
 * And closing the subscription (shutting down) while a batch is in progress: the messages waiting
 * for the next batch are not handed over after `close` resolved (the runtime then finishes what is
 * in flight and closes its store). Against a throwaway Mosquitto through a TCP proxy whose
 * connections the test cuts.
 */
import { createConnection, createServer, type Server, type Socket } from "node:net"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { MqttBroker } from "@baton/broker-mqtt"
import type { Broker, Message } from "@baton/core"
import { Mosquitto, MqttWire } from "@baton/testkit"

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const until = async (done: () => boolean, ms: number) => {
  for (const started = Date.now(); !done() && Date.now() - started < ms; ) await sleep(10)
}

/** A proxy to `target`: its connections (to cut them), and how many PUBLISH packets each carried to the client. */
const proxy = async (target: number) => {
  const connections: Array<{ readonly client: Socket; publishes: number }> = []
  const server: Server = createServer((client: Socket) => {
    const c = { client, publishes: 0 }
    connections.push(c)
    const upstream = createConnection(target, "127.0.0.1")
    const close = () => (client.destroy(), upstream.destroy())
    client.on("error", close).on("close", close)
    upstream.on("error", close).on("close", close)
    const fromBroker = MqttWire.framer((type) => {
      if (type === 3) c.publishes++
    })
    upstream.on("data", (b: Buffer) => {
      fromBroker(b)
      client.write(b)
    })
    client.on("data", (b: Buffer) => upstream.write(b))
  })
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  return { port: (server.address() as { port: number }).port, server, connections }
}

describe("MqttBroker batch: a failed batch that spans a reconnect, closing during a batch", () => {
  let mosquitto: Mosquitto.Private
  const brokers: Array<Broker> = []
  beforeAll(async () => {
    mosquitto = await Mosquitto.start()
  }, 20_000)
  afterAll(async () => {
    await Promise.all(brokers.splice(0).map((b) => b.close()))
    await mosquitto?.stop()
  })

  it("the messages of the new connection in a failed batch come again before later ones", async () => {
    const topic = `test/batch-reconnect/${process.pid}`
    const via = await proxy(mosquitto.port)
    const subscriber = await MqttBroker.make({ url: `mqtt://127.0.0.1:${via.port}`, clientPrefix: "rev.", closeGraceMs: 500 })
    const publisher = await MqttBroker.make({ url: mosquitto.url, clientPrefix: "revp.", closeGraceMs: 500 })
    brokers.push(subscriber, publisher)
    const calls: Array<Array<string>> = []
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    const idOf = (m: Message) => m.payload.toString()
    await subscriber.subscribe(
      { clientId: `batch-reconnect-${process.pid}`, topics: [topic] },
      async () => {
        throw new Error("not used: the batch handler takes them")
      },
      async (messages) => {
        calls.push(messages.map(idOf))
        if (calls.length === 1) await gate
        // The second batch fails (the database out of reach for a moment, say): nothing of it acknowledged.
        if (calls.length === 2) throw new Error("batch failed")
      }
    )
    // The session's connection (the broker's own publisher connected through the proxy first).
    const first = via.connections.length - 1
    await publisher.publish(topic, "m1", 1)
    await until(() => calls.length === 1, 5_000)
    expect(calls[0]).toEqual(["m1"])
    // m2 arrives on the first connection while the first batch runs: it waits for the next batch.
    await publisher.publish(topic, "m2", 1)
    await until(() => via.connections[first]!.publishes === 2, 5_000)
    await sleep(50)
    // The connection is lost; the client reconnects (500 ms) and Mosquitto sends m1 and m2 again on the new one.
    via.connections[first]!.client.destroy()
    await until(() => via.connections.length === first + 2 && via.connections[first + 1]!.publishes === 2, 5_000)
    expect(via.connections[first + 1]!.publishes).toBe(2)
    await sleep(50)
    // The first batch ends; the second (m2 of the old connection, m1 and m2 of the new one) fails.
    release()
    await until(() => calls.length === 2, 5_000)
    expect(calls[1]).toEqual(["m2", "m1", "m2"])
    await publisher.publish(topic, "m3", 1)
    await until(() => calls.slice(2).flat().includes("m3"), 5_000)
    // m1 and m2 (not acknowledged) are handed over again, before m3.
    const after = calls.slice(2).flat()
    expect(after.slice(0, 3)).toEqual(["m1", "m2", "m3"])
    via.server.close()
  }, 30_000)

  it("once the subscription is closed, nothing more is handed over (the batch in progress finishes first)", async () => {
    const topic = `test/batch-close/${process.pid}`
    const via = await proxy(mosquitto.port)
    const subscriber = await MqttBroker.make({ url: `mqtt://127.0.0.1:${via.port}`, clientPrefix: "revc.", closeGraceMs: 2_000 })
    const publisher = await MqttBroker.make({ url: mosquitto.url, clientPrefix: "revcp.", closeGraceMs: 500 })
    brokers.push(subscriber, publisher)
    const calls: Array<{ readonly ids: Array<string>; readonly afterClose: boolean }> = []
    let closed = false
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    const subscription = await subscriber.subscribe(
      { clientId: `batch-close-${process.pid}`, topics: [topic] },
      async () => {
        throw new Error("not used: the batch handler takes them")
      },
      async (messages) => {
        calls.push({ ids: messages.map((m) => m.payload.toString()), afterClose: closed })
        if (calls.length === 1) await gate
      }
    )
    const first = via.connections.length - 1
    await publisher.publish(topic, "m1", 1)
    await until(() => calls.length === 1, 5_000)
    // m2 arrives while the first batch runs: it waits for the next batch.
    await publisher.publish(topic, "m2", 1)
    await until(() => via.connections[first]!.publishes === 2, 5_000)
    await sleep(50)
    // Shutting down: the session is closed while the first batch is in progress.
    const closing = subscription.close().then(() => (closed = true))
    await sleep(100)
    release()
    await closing
    await sleep(500)
    expect(calls.filter((c) => c.afterClose)).toEqual([])
    via.server.close()
  }, 30_000)
})
