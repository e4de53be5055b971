/**
 * Aedes' dedupe window (patches/aedes@1.2.0.patch, client.js `dedupe`) keeps the counters a client
 * got recently from each broker id. The broker's counter is a JavaScript number that keeps growing
 * (past 2^32 after 4.3 billion messages: half a day at 100k messages a second): a counter must be
 * told apart from one 2^32 lower, and from the window's initial slots. A QoS 1 message overtaken by
 * a QoS 0 one (its emit waits for a store step) must still arrive, whatever its counter.
 */
import { createServer, type AddressInfo } from "node:net"
import { describe, expect, it } from "vitest"
import mqtt from "mqtt"
import { Aedes } from "aedes"

const until = async (done: () => boolean, timeoutMs = 3_000) => {
  const t0 = Date.now()
  while (!done() && Date.now() - t0 < timeoutMs) await new Promise((r) => setTimeout(r, 10))
}

const publish = (aedes: Aedes, topic: string, payload: string, qos: 0 | 1) =>
  new Promise<void>((resolve, reject) =>
    aedes.publish({ cmd: "publish", topic, payload: Buffer.from(payload), qos, retain: false, dup: false } as never, (err) => (err ? reject(err) : resolve()))
  )

describe("Aedes dedupe with broker counters past 2^32", () => {
  it.each([
    // The overtaken QoS 1 message's counter is 2^32: the window's unwritten slot (0) read as seen.
    [2 ** 32 - 1, 0],
    // Its counter is 2^32 + 7 and the client got 7 (2^32 counters earlier) from this broker id.
    [2 ** 32 + 6, 7]
  ])("a QoS 1 message overtaken by a QoS 0 one still arrives (counter before it %d, earlier counter %d)", async (before, earlier) => {
    const aedes = await Aedes.createBroker()
    const server = createServer(aedes.handle)
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
    const port = (server.address() as AddressInfo).port
    const sub = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0, clean: true })
    const got: Array<string> = []
    sub.on("message", (_t, p) => got.push(p.toString()))
    try {
      await sub.subscribeAsync({ "p/#": { qos: 1 } })
      if (earlier > 0) {
        aedes.counter = earlier - 1
        await publish(aedes, "p/1", "early", 0)
        await until(() => got.includes("early"))
      }
      aedes.counter = before
      await Promise.all([publish(aedes, "p/0", "a", 1), publish(aedes, "p/1", "b", 0)])
      await until(() => got.includes("a") && got.includes("b"))
      expect(got.filter((m) => m !== "early").sort()).toEqual(["a", "b"])
    } finally {
      await sub.endAsync()
      await new Promise<void>((r) => aedes.close(() => r()))
      await new Promise<void>((r) => server.close(() => r()))
    }
  })
})
