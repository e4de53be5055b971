/**
 * `runtime.idle()` means idle: orders of the reference app published over MQTT to the embedded
 * broker (an ephemeral port) on SQLite, each acknowledged (committed to the ingress log); once
 * `idle()` resolves, the outbox holds nothing and no inbox row is pending, at once, without waiting
 * for a timer (SQLite's deferred delete of sent entries ran before it resolved). On an external
 * broker (Mosquitto), an order the ingress logged and failed to forward (a trigger of the real
 * store refusing the forwarded mark, then dropped) is forwarded before `idle()` resolves: it waits
 * for the ingress's retry.
 */
import { describe, expect, it } from "vitest"
import { Mosquitto } from "@baton/testkit"
import { collect, connect, sleep, startRuntime } from "./support.ts"

/** The Mosquitto that runs on this machine (and in CI); override with BATON_TEST_MOSQUITTO_URL. */
const mosquitto = process.env.BATON_TEST_MOSQUITTO_URL ?? "mqtt://127.0.0.1:1883"

const order = (i: number) => JSON.stringify({ customerId: `idle-${i % 7}`, email: "i@example.com", items: [{ sku: `BOOK-${(i % 5) + 1}`, qty: 1, price: 9.5 }], payment: { card: "4242424242424242" } })

describe("runtime.idle()", () => {
  it("resolves with the outbox empty and no inbox row pending (embedded broker, SQLite)", async () => {
    const h = await startRuntime()
    const client = await connect(h.url)
    // A subscriber to the events: without one, nothing is written to the outbox for the wire (audience).
    const events = await collect(client, ["events/#"])
    const store = h.runtime.store
    const count = (sql: string) => store.run(store.query(sql).get()).then((r) => Number(r?.n ?? 0))
    try {
      for (let round = 0; round < 5; round++) {
        await Promise.all(Array.from({ length: 40 }, (_, i) => client.publishAsync("initiate/place-order", order(round * 40 + i), { qos: 1 })))
        await h.runtime.idle()
        const left = { outbox: await count("SELECT COUNT(*) AS n FROM outbox"), pending: await count("SELECT COUNT(*) AS n FROM inbox WHERE status = 'pending'") }
        expect(left, `after round ${round}`).toEqual({ outbox: 0, pending: 0 })
      }
      expect(await count("SELECT COUNT(*) AS n FROM inbox WHERE status = 'done'"), "the orders ran").toBeGreaterThan(200)
      expect(events.received.length, "their events went out").toBeGreaterThan(200)
    } finally {
      await client.endAsync()
      await h.stop()
    }
  })

  it("waits for the ingress's forward due again after a failure (external broker)", async () => {
    const release = await Mosquitto.acquire()
    try {
      const h = await startRuntime({ brokerUrl: mosquitto })
      const client = await connect(mosquitto)
      const store = h.runtime.store
      const exec = (sql: string) => store.run(store.query(sql).run())
      const count = (sql: string) => store.run(store.query(sql).get()).then((r) => Number(r?.n ?? 0))
      try {
        await exec("CREATE TRIGGER hold BEFORE UPDATE ON ingress_log BEGIN SELECT RAISE(ABORT, 'held by the test'); END")
        await client.publishAsync("initiate/place-order", order(0), { qos: 1 })
        // Logged by the ingress session, its forward failed: due again in 500 ms.
        for (let t = 0; (await count("SELECT COUNT(*) AS n FROM ingress_log")) === 0; t++) {
          if (t > 400) throw new Error("the order never reached the ingress log")
          await sleep(5)
        }
        await sleep(50)
        expect(await count("SELECT COUNT(*) AS n FROM ingress_log WHERE forwarded_at IS NULL"), "held").toBe(1)
        await exec("DROP TRIGGER hold")
        await h.runtime.idle()
        expect(await count("SELECT COUNT(*) AS n FROM ingress_log WHERE forwarded_at IS NULL"), "forwarded once idle").toBe(0)
      } finally {
        await client.endAsync()
        await h.stop()
      }
    } finally {
      release()
    }
  })
})
