/**
 * A cluster (of one, on PostgreSQL) forwards an initiating event right after its ingress commit,
 * before the PUBACK; when that forward fails (a lock wait past `lock_timeout` under load, say)
 * the publisher's connection is dropped and the entry stays in the ingress log, unforwarded. A
 * publisher that does not resend (the benchmark's load generator: no reconnect) left it there for
 * good: one drain was scheduled at once, and when it failed too nothing drained the log again
 * until another publish or a restart (red before: 0 of 3 shipped, 3 unforwarded, 20 s after).
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import mqtt from "mqtt"
import pg from "pg"
import { describe, expect, it } from "vitest"
import { Process } from "@baton/testkit"
import { freshSchema, query } from "@baton/testkit/postgres"
import { sleep } from "./support.ts"

const order = (run: string, i: number) =>
  JSON.stringify({ id: `${run}-${i}`, type: "place-order", data: { customerId: `${run}-c${i}`, email: "p@example.com", items: [{ sku: "BOOK-1", qty: 1, price: 9.5 }], payment: { card: "4242424242424242" } } })

describe("an initiating event whose forward failed after its ingress commit", () => {
  it("is forwarded by the runtime itself, with no later publish to wake the ingress", async () => {
    const schema = await freshSchema()
    const dir = mkdtempSync(join(tmpdir(), "baton-ingress-retry-"))
    const running = await Process.startProcess(dir, { BATON_DATABASE_URL: schema.url, BATON_INSTANCE: "solo" })
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${running.mqttPort}`, { protocolVersion: 4, reconnectPeriod: 0 })
    let closed = false
    client.on("close", () => (closed = true))
    const locker = new pg.Client({ connectionString: schema.url })
    await locker.connect()
    try {
      // The forward's first statement records the envelope ids seen: held back past the lock timeout (5 s).
      await locker.query("BEGIN")
      await locker.query("LOCK TABLE ingress_seen IN SHARE MODE")
      for (let i = 0; i < 3; i++) void client.publishAsync("initiate/place-order", order("held", i), { qos: 1 }).catch(() => undefined)
      const deadline = Date.now() + 15_000
      while (!closed && Date.now() < deadline) await sleep(50)
      // Held past the retry that the failure scheduled at once (its lock wait times out too).
      await sleep(7_000)
      await locker.query("ROLLBACK")
      expect(closed, running.output()).toBe(true)
      // Logged, committed, not forwarded; the publisher gone (it does not come back): nothing else publishes.
      const shipped = async () => Number((await query<{ n: string }>(schema.url, "SELECT count(*) AS n FROM shipments s JOIN orders o ON o.id = s.order_id WHERE o.customer_id LIKE 'held-%'"))[0]!.n)
      const until = Date.now() + 20_000
      while ((await shipped()) < 3 && Date.now() < until) await sleep(200)
      const left = await query(schema.url, "SELECT count(*)::int AS n FROM ingress_log WHERE forwarded_at IS NULL")
      expect({ shipped: await shipped(), unforwarded: left[0]!.n }, running.output()).toEqual({ shipped: 3, unforwarded: 0 })
    } finally {
      await locker.end().catch(() => undefined)
      await client.endAsync(true).catch(() => undefined)
      await running.kill("SIGTERM")
      rmSync(dir, { recursive: true, force: true })
      await schema.drop()
    }
  }, 90_000)
})
