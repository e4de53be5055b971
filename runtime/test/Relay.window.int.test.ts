/**
 * The outbox relay on an external broker (`window`: several publishes in flight on the publisher's
 * one connection), against a throwaway Mosquitto of the test's own, through a TCP proxy that counts
 * the publisher's unconfirmed PUBLISHes and can drop the connection right after the client's n-th
 * PUBLISH (what follows it in the window is lost in transit, the PUBACKs on their way back too).
 * The outbox is a real SQLite one (node:sqlite); a subscriber straight on Mosquitto records what
 * the broker delivered, in order.
 */
import { createConnection, createServer, type Server, type Socket } from "node:net"
import fc from "fast-check"
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { MqttBroker } from "@baton/broker-mqtt"
import { Log } from "@baton/core"
import { Outbox, Sqlite } from "@baton/store"
import { Mosquitto, MqttWire } from "@baton/testkit"
import * as Relay from "../src/Relay.ts"

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** A proxy to `target`: the most PUBLISHes a client had unconfirmed at once, and a drop after the n-th. */
const proxy = async (target: number) => {
  let publishes = 0
  let dropAt = Number.POSITIVE_INFINITY
  let down = false
  let maxInFlight = 0
  const sockets = new Set<Socket>()
  const server: Server = createServer((client: Socket) => {
    if (down) return void client.destroy()
    const upstream = createConnection(target, "127.0.0.1")
    sockets.add(client).add(upstream)
    client.setNoDelay(true)
    upstream.setNoDelay(true)
    let inFlight = 0
    const close = () => (client.destroy(), upstream.destroy())
    client.on("error", close).on("close", close)
    upstream.on("error", close).on("close", close)
    const fromBroker = MqttWire.framer((type, _flags, _body, packet) => {
      if (type === 4) inFlight--
      if (!client.destroyed) client.write(packet)
    })
    const fromClient = MqttWire.framer((type, _flags, _body, packet) => {
      if (upstream.destroyed) return
      upstream.write(packet)
      if (type !== 3) return
      maxInFlight = Math.max(maxInFlight, ++inFlight)
      // Dropped right after this one reached the broker: what the window holds after it, and the
      // PUBACKs not back yet, are lost with the connection; no connection until `up`.
      if (++publishes === dropAt) {
        down = true
        close()
      }
    })
    upstream.on("data", fromBroker)
    client.on("data", fromClient)
  })
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  return {
    port: (server.address() as { port: number }).port,
    /** Drops the connection right after the n-th PUBLISH from now. */
    dropAfter: (n: number) => {
      dropAt = publishes + n
    },
    isDown: () => down,
    up: () => {
      down = false
    },
    maxInFlight: () => maxInFlight,
    reset: () => {
      maxInFlight = 0
    },
    close: () => {
      for (const s of sockets) s.destroy()
      return new Promise<void>((r) => server.close(() => r()))
    }
  }
}

describe("Relay on an external broker: a window of publishes in flight", () => {
  let mosquitto: Mosquitto.Private
  let via: Awaited<ReturnType<typeof proxy>>
  let subscriber: MqttBroker.MqttBroker
  /** Per run: the ids the subscriber received, in order (a redelivery or a resend repeats one). */
  const received = new Map<string, Array<{ readonly key: number; readonly i: number }>>()
  beforeAll(async () => {
    mosquitto = await Mosquitto.start({ inflight: 100 })
    via = await proxy(mosquitto.port)
    subscriber = await MqttBroker.make({ url: mosquitto.url, clientPrefix: `relay-window-${process.pid}.`, closeGraceMs: 500 })
    await subscriber.subscribe({ clientId: "subscriber", topics: ["relay-window/#"] }, async (m) => {
      const { run, key, i } = JSON.parse(m.payload.toString()) as { run: string; key: number; i: number }
      received.get(run)?.push({ key, i })
    })
  }, 20_000)
  afterAll(async () => {
    await subscriber?.close()
    await via?.close()
    await mosquitto?.stop()
  })

  let runs = 0
  /** A relay (window as on an external broker) on `outbox`, publishing through the proxy. */
  const open = async (outbox: Outbox.Outbox) => {
    const broker = await MqttBroker.make({ url: `mqtt://127.0.0.1:${via.port}`, clientPrefix: `relay-window-${process.pid}-${++runs}.`, closeGraceMs: 500 })
    const relay = Relay.make({ outbox, publish: broker.publish, logger: Log.silent, window: 256, retryMs: 20 })
    return { broker, relay }
  }

  /**
   * Commits `keys.length` entries (entry i of key keys[i], on the key's topic) in `transactions`
   * transactions; the relay drains them while the proxy drops the connection after `dropAfter`
   * PUBLISHes. `stop`: the runtime shuts down while the broker is out of reach (what was not
   * confirmed fails and stays in the outbox), and a new relay on a new connection drains the rest.
   */
  const scenario = async (keys: ReadonlyArray<number>, transactions: number, dropAfter: number | undefined, stop: boolean) => {
    const run = `r${runs + 1}`
    const seen: Array<{ readonly key: number; readonly i: number }> = []
    received.set(run, seen)
    const store = await Sqlite.open({ path: ":memory:" })
    const outbox = await Outbox.make(store)
    let { broker, relay } = await open(outbox)
    try {
      const per = Math.ceil(keys.length / transactions)
      for (let from = 0; from < keys.length; from += per)
        await store.transaction(
          Effect.forEach(keys.slice(from, from + per), (key, j) => outbox.add(`relay-window/${run}/${key}`, JSON.stringify({ run, key, i: from + j })), { discard: true })
        )
      via.reset()
      if (dropAfter !== undefined) via.dropAfter(dropAfter)
      relay.poke()
      if (dropAfter !== undefined) {
        for (const until = Date.now() + 5_000; !via.isDown() && Date.now() < until; ) await sleep(1)
        expect(via.isDown()).toBe(true)
        if (stop) {
          relay.stopping()
          broker.stopping()
          await relay.close()
          await broker.close()
          via.up()
          ;({ broker, relay } = await open(outbox))
          relay.poke()
        } else {
          await sleep(20)
          via.up()
        }
      }
      const ids = new Set(keys.map((_, i) => i))
      for (const until = Date.now() + 10_000; Date.now() < until; ) {
        if ((await outbox.size()) === 0 && new Set(seen.map((s) => s.i)).size === ids.size) break
        await sleep(10)
      }
      await relay.close()
      // Nothing lost, nothing left.
      expect(await outbox.size()).toBe(0)
      expect(new Set(seen.map((s) => s.i))).toEqual(ids)
      // Per key, first seen in the order committed (a duplicate may follow, never an overtake).
      for (const key of new Set(keys)) {
        const firsts = [...new Set(seen.filter((s) => s.key === key).map((s) => s.i))]
        expect(firsts).toEqual([...firsts].sort((a, b) => a - b))
      }
    } finally {
      via.up()
      await broker.close()
      await store.close()
      received.delete(run)
    }
  }

  it("keeps many publishes in flight at once on the publisher's connection", async () => {
    await scenario(
      Array.from({ length: 200 }, (_, i) => i % 3),
      1,
      undefined,
      false
    )
    expect(via.maxInFlight()).toBeGreaterThan(10)
  }, 30_000)

  it("for any entries, and a connection dropped mid-window (then back, or a shutdown and a new start), loses nothing and keeps per-key order", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 2, maxLength: 60 }),
        fc.integer({ min: 1, max: 3 }),
        fc.nat(),
        fc.boolean(),
        async (keys, transactions, drop, stop) => {
          await scenario(keys, transactions, 1 + (drop % keys.length), stop)
        }
      ),
      { numRuns: 20 }
    )
  }, 240_000)
})
