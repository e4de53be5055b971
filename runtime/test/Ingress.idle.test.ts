/**
 * The ingress's `idle`, which `Runtime.idle` waits for: an initiating event being appended to the
 * log, its forward scheduled or running, or due again after a failure (a trigger of the real
 * SQLite store refusing the forwarded marks, then dropped) is waited for; `stop` cancels a retry
 * due, and `idle` does not sit through it.
 */
import { describe, expect, it } from "vitest"
import { Result } from "effect"
import { Log } from "@baton/core"
import { IngressLog, Outbox, Rejections, Sqlite } from "@baton/store"
import * as ErrorPath from "../src/ErrorPath.ts"
import * as Ingress from "../src/Ingress.ts"

const contracts = Ingress.contractsOf([{ name: "ping", processors: [], initiating: [{ name: "ping", decode: Result.succeed }] }])

const setup = async (retryMs: number) => {
  const store = await Sqlite.open({ path: ":memory:" })
  const outbox = await Outbox.make(store)
  const log = await IngressLog.make(store, { maxBytes: 1024, previewBytes: 16 })
  const logger = Log.memory()
  const ingress = Ingress.make({ contracts, maxPayloadBytes: 1024, store, log, outbox, reject: ErrorPath.make({ outbox, rejections: await Rejections.make(store), logger }), logger, retryMs })
  await ingress.start(() => undefined)
  const exec = (sql: string) => store.run(store.query(sql).run())
  const unforwarded = () => store.run(store.query("SELECT COUNT(*) AS n FROM ingress_log WHERE forwarded_at IS NULL").get()).then((r) => Number(r?.n ?? 0))
  const receive = (n: number) => ingress.receive("initiate/ping", Buffer.from(JSON.stringify({ n })), null)
  return { store, outbox, ingress, exec, unforwarded, receive }
}

describe("Ingress.idle", () => {
  it("waits for events being appended and for their forward", async () => {
    const { store, outbox, ingress, receive } = await setup(500)
    try {
      const received = Promise.all([1, 2, 3].map(receive))
      await ingress.idle()
      expect(ingress.busy()).toBe(false)
      expect(await outbox.size(), "forwarded to the outbox").toBe(3)
      await received
    } finally {
      ingress.stop()
      await store.close()
    }
  })

  it("waits for the forward due again after a failed one", async () => {
    const { store, outbox, ingress, exec, unforwarded, receive } = await setup(50)
    try {
      await exec("CREATE TRIGGER hold BEFORE UPDATE ON ingress_log BEGIN SELECT RAISE(ABORT, 'held by the test'); END")
      await receive(1)
      await new Promise((r) => setTimeout(r, 10))
      expect(await unforwarded(), "its forward failed").toBe(1)
      await exec("DROP TRIGGER hold")
      await ingress.idle()
      expect({ unforwarded: await unforwarded(), outbox: await outbox.size() }).toEqual({ unforwarded: 0, outbox: 1 })
    } finally {
      ingress.stop()
      await store.close()
    }
  })

  it("stop: a retry due is cancelled, idle resolves at once", async () => {
    const { store, ingress, exec, unforwarded, receive } = await setup(60_000)
    try {
      await exec("CREATE TRIGGER hold BEFORE UPDATE ON ingress_log BEGIN SELECT RAISE(ABORT, 'held by the test'); END")
      await receive(1)
      await new Promise((r) => setTimeout(r, 10))
      expect(ingress.busy(), "a retry due").toBe(true)
      const waiting = ingress.idle()
      ingress.stop()
      const started = performance.now()
      await waiting
      // Not the retry's 60 s (a bound with room for a stall of a loaded machine).
      expect(performance.now() - started).toBeLessThan(5_000)
      expect(await unforwarded(), "left for the next start").toBe(1)
    } finally {
      await store.close()
    }
  })

  it("a retry due after a drain that later succeeded is dropped: idle does not sit through it", async () => {
    const { store, outbox, ingress, exec, unforwarded, receive } = await setup(60_000)
    try {
      await exec("CREATE TRIGGER hold BEFORE UPDATE ON ingress_log BEGIN SELECT RAISE(ABORT, 'held by the test'); END")
      await receive(1)
      await new Promise((r) => setTimeout(r, 10))
      expect(ingress.busy(), "a retry due").toBe(true)
      await exec("DROP TRIGGER hold")
      // A later event's forward drains the log to empty, the failed one's entry with it.
      await receive(2)
      const started = performance.now()
      const waited = await Promise.race([ingress.idle().then(() => performance.now() - started), new Promise<number>((r) => setTimeout(() => r(Number.POSITIVE_INFINITY), 1_000))])
      expect(waited, "idle resolved without the retry due in a minute").toBeLessThan(1_000)
      expect({ unforwarded: await unforwarded(), outbox: await outbox.size() }).toEqual({ unforwarded: 0, outbox: 2 })
    } finally {
      ingress.stop()
      await store.close()
    }
  })
})
