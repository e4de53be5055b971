/**
 * The relay's window (BATON_RELAY_WINDOW) against an Aedes broker: Baton's EmbeddedBroker with its
 * sessions on disk, as the runtime's tests use for an external broker (fixtures/externalBroker.ts).
 * Aedes handles the PUBLISHes of one read of a connection side by side and forwards each once its
 * store steps are done, so a later one can reach a subscriber first, even on the same topic: with
 * several in flight, a key's events were seen out of order. Window 1 keeps the order.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import mqtt from "mqtt"
import { describe, expect, it } from "vitest"
import { EmbeddedBroker } from "@baton/broker-aedes"
import { MqttBroker } from "@baton/broker-mqtt"
import { Log } from "@baton/core"
import { Outbox, Sqlite } from "@baton/store"
import * as Relay from "../src/Relay.ts"

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Per key, how many times a message was seen before an older one of its key (first copies only). */
const overtakes = async (window: number) => {
  const dir = mkdtempSync(join(tmpdir(), "baton-relay-aedes-"))
  const broker = await EmbeddedBroker.start({ host: "127.0.0.1", mqttPort: 0, sessions: { kind: "disk", dir }, ackStored: true })
  const url = `mqtt://127.0.0.1:${broker.mqttPort}`
  const sub = await mqtt.connectAsync(url, { protocolVersion: 4, clientId: "subscriber", clean: false })
  const seen = new Map<string, Array<number>>()
  sub.on("message", (topic, payload) => seen.set(topic, [...(seen.get(topic) ?? []), Number(payload.toString())]))
  await sub.subscribeAsync("w/#", { qos: 1 })
  const store = await Sqlite.open({ path: ":memory:" })
  const outbox = await Outbox.make(store)
  const publisher = await MqttBroker.make({ url, clientPrefix: "relay-aedes.", closeGraceMs: 500 })
  const relay = Relay.make({ outbox, publish: publisher.publish, logger: Log.silent, window, retryMs: 20 })
  const n = 1500
  try {
    await store.transaction(Effect.forEach(Array.from({ length: n }, (_, i) => i), (i) => outbox.add(`w/${i % 3}`, String(i)), { discard: true }))
    relay.poke()
    for (const until = Date.now() + 30_000; Date.now() < until; ) {
      if ([...seen.values()].reduce((a, xs) => a + new Set(xs).size, 0) >= n && (await outbox.size()) === 0) break
      await sleep(20)
    }
    expect([...seen.values()].reduce((a, xs) => a + new Set(xs).size, 0)).toBe(n)
    let count = 0
    for (const xs of seen.values()) {
      const firsts = [...new Set(xs)]
      for (let i = 1; i < firsts.length; i++) if (firsts[i]! < firsts[i - 1]!) count++
    }
    return count
  } finally {
    await relay.close()
    await publisher.close()
    await sub.endAsync()
    await broker.close()
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

describe("the relay's window against Aedes (sessions on disk)", () => {
  it("window 1: a key's events reach a subscriber in order", async () => {
    expect(await overtakes(1)).toBe(0)
  }, 60_000)
  // With a window of 256 the same run saw 119 of 1,500 after a newer one of their key (Aedes 1.2 as
  // patched, load ~3): why the window is an opt-in for brokers that forward in order (layers/Relay.ts),
  // not the default. `overtakes(256)` shows it.
})
