/**
 * `BATON_FRONT=thread` under review (docs/front-thread.md, stage 2): cases found by reading the
 * front's code, each one a real runtime on ephemeral ports with real MQTT clients and real SQLite.
 */
import { join } from "node:path"
import { DatabaseSync } from "node:sqlite"
import { describe, expect, it } from "vitest"
import { cards } from "./orders.ts"
import { connect, sleep, startRuntime, until } from "./support.ts"

const placeOrder = (id: string, customerId: string) =>
  JSON.stringify({ id, type: "place-order", data: { customerId, email: "review@example.com", items: [{ sku: "BOOK-2", qty: 1, price: 3 }], payment: { card: cards.approved } } })

describe("BATON_FRONT=thread, reviewed", () => {
  // The backlog's room is given back when main forwards below half; appends that failed (the
  // front's file locked past its busy timeout, by a backup or an operator's sqlite3) free their
  // places too. Were only main's `forwarded` to wake the waiting, an accept held while the failing
  // ones were in flight would wait for a `forwarded` that never comes (nothing new commits), and
  // every initiating event after it with it: no PUBACK ever again.
  it("appends that failed while others waited for room free the backlog: the next publisher is acknowledged", async () => {
    const h = await startRuntime({ front: "thread", frontBacklog: 2 })
    try {
      const lock = new DatabaseSync(join(h.config.dataDir, "front", "ingress.db"))
      lock.exec("PRAGMA busy_timeout = 1000; BEGIN IMMEDIATE")
      const first = await connect(h.url)
      first.on("error", () => undefined)
      // Three at once on one connection: two take the backlog's places (their append waits on the
      // lock, then fails), the third waits for room.
      for (let i = 0; i < 3; i++) void first.publishAsync("initiate/place-order", placeOrder(crypto.randomUUID(), `locked-${i}`), { qos: 1 }).catch(() => undefined)
      await sleep(5_600)
      lock.exec("COMMIT")
      lock.close()
      first.end(true)
      const next = await connect(h.url)
      try {
        const id = crypto.randomUUID()
        const acked = await Promise.race([next.publishAsync("initiate/place-order", placeOrder(id, "after-lock"), { qos: 1 }).then(() => "acked"), sleep(4_000).then(() => "no PUBACK within 4 s")])
        expect(acked).toBe("acked")
        await until("its order created", async () => (await h.runtime.store.run(h.runtime.store.query("SELECT count(*) AS n FROM orders WHERE customer_id = 'after-lock'").all()))[0]!.n === 1)
      } finally {
        next.end(true)
      }
    } finally {
      await h.stop()
    }
  }, 30_000)
})
