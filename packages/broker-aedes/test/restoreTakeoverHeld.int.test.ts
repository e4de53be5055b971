/**
 * A takeover of a persistent session (memory or disk store): a live QoS 1 message published while
 * the new connection restores its subscriptions reaches both the old connection (still registered)
 * and the new one (held, Aedes patch, client.js). If the old connection acknowledges it before the
 * new one's restore stream reads the store, the stored copy is gone when the held message is
 * released: it was delivered and acknowledged, nothing to do. The new connection must stay
 * connected.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { createServer, type AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import mqtt from "mqtt"
import { Aedes } from "aedes"
import { Level } from "level"
import persistenceLevel from "aedes-persistence-level"
import { until } from "./waits.ts"
import { atNextStoreWill } from "./sessions.ts"

const dirs: Array<string> = []
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

const publish = (aedes: Aedes, topic: string, payload: string) =>
  new Promise<void>((resolve, reject) =>
    aedes.publish({ cmd: "publish", topic, payload: Buffer.from(payload), qos: 1, retain: false, dup: false } as never, (err) => (err ? reject(err) : resolve()))
  )

describe("a takeover of a persistent session while a live message is held", () => {
  it.each(["memory", "disk"] as const)("%s sessions store: the new connection stays connected when the old one acknowledged the held message, and gets the next one", async (kind) => {
    const dir = mkdtempSync(join(tmpdir(), "baton-held-ack-"))
    dirs.push(dir)
    const aedes = await Aedes.createBroker(kind === "disk" ? ({ persistence: persistenceLevel(new Level(dir)) } as never) : {})
    const persistence = (aedes as unknown as { persistence: unknown }).persistence
    const server = createServer(aedes.handle)
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
    const url = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`
    const opts = { protocolVersion: 4 as const, reconnectPeriod: 0, clean: false, clientId: "held-ack" }
    const errors: Array<string> = []
    aedes.on("clientError", (_c, err) => errors.push(err.message))
    let acks = 0
    aedes.on("ack", () => acks++)
    const a = await mqtt.connectAsync(url, opts)
    const gotA: Array<string> = []
    a.on("message", (_t, p) => gotA.push(p.toString()))
    let b: mqtt.MqttClient | undefined
    try {
      await a.subscribeAsync("k/#", { qos: 1 })
      // The new connection's storeWill (after restoreSubs, before registerClient closes the old
      // one): a live message now goes to both; the old connection gets and acknowledges it.
      atNextStoreWill(persistence, async () => {
        await publish(aedes, "k/1", "live")
        await until(() => gotA.includes("live") && acks > 0, 5_000)
      })
      b = mqtt.connect(url, opts)
      b.on("error", () => {})
      const gotB: Array<string> = []
      b.on("message", (_t, p) => gotB.push(p.toString()))
      let closed = false
      b.on("close", () => (closed = true))
      await new Promise((r) => b!.once("connect", r))
      expect(gotA).toEqual(["live"])
      await new Promise((r) => setTimeout(r, 300))
      await publish(aedes, "k/1", "next")
      await until(() => gotB.includes("next") || closed, 3_000)
      expect({ closed, errors, gotB }).toEqual({ closed: false, errors: [], gotB: ["next"] })
    } finally {
      a.end(true)
      b?.end(true)
      await new Promise<void>((r) => aedes.close(() => r()))
      await new Promise<void>((r) => server.close(() => r()))
    }
  })
})
