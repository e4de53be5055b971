/**
 * `BATON_FRONT=log` on a real runtime (docs/front-thread.md, stage 1): initiating events committed
 * in `front/ingress.db` and handed over to baton.db under its mark; an older copy of the front file
 * refused at start; a file left when the mode is switched off forwarded at the next start, then pruned.
 */
import { copyFileSync, existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import mqtt from "mqtt"
import { describe, expect, it } from "vitest"
import { Log, payloadPreviewBytes, type Envelope } from "@baton/core"
import { FrontLog, Sqlite } from "@baton/store"
import { fromEnv, type Config } from "../src/Config.ts"
import * as Runtime from "../src/Runtime.ts"
import { collect, connect } from "./support.ts"

const order = (customerId: string) => JSON.stringify({ customerId, email: "front@example.com", items: [{ sku: "BOOK-2", qty: 1, price: 3 }], payment: { card: "4242424242424242" } })

/** A runtime on `dataDir` (kept between starts: the restarts are the point). */
const startOn = async (dataDir: string, front: Config["front"]) => {
  const logger = Log.memory(process.env.BATON_TEST_LOG === "1" ? Log.console : Log.silent)
  const config: Config = { ...fromEnv({}), mqttPort: 0, wsPort: undefined, httpPort: 0, dataDir, instance: `t${Math.random().toString(36).slice(2, 10)}`, restartDelayMs: 10, front }
  const runtime = await Runtime.start(config, { logger })
  return { runtime, logger, url: `mqtt://127.0.0.1:${runtime.mqttPort}` }
}

const openFront = (dataDir: string) => FrontLog.open({ path: FrontLog.pathIn(dataDir), synchronous: "NORMAL", maxBytes: 1024, previewBytes: payloadPreviewBytes })

const markOf = async (dataDir: string) => {
  const store = await Sqlite.open({ path: join(dataDir, "baton.db"), checkpointIntervalMs: 0 })
  try {
    return (await store.run(store.query("SELECT log_id, seq FROM front_mark").all())).map((r) => ({ logId: String(r.log_id), seq: Number(r.seq) }))
  } finally {
    await store.close()
  }
}

/** Places an order and waits for it to be created downstream. */
const placed = async (url: string, customerId: string) => {
  const client = await connect(url)
  try {
    const events = await collect(client, ["events/#"])
    await client.publishAsync("initiate/place-order", order(customerId), { qos: 1 })
    await events.until((all) => all.some((r) => r.envelope.type === "order-created" && (r.envelope.data as { customerId: string }).customerId === customerId), 10_000, `order-created for ${customerId}`)
  } finally {
    await client.endAsync()
  }
}

describe("BATON_FRONT=log", () => {
  it("logs an initiating event in the front's file and forwards it under main's mark", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "baton-front-"))
    try {
      const a = await startOn(dataDir, "log")
      try {
        await placed(a.url, "front-1")
        await placed(a.url, "front-2")
      } finally {
        await a.runtime.stop()
      }
      expect(existsSync(FrontLog.pathIn(dataDir))).toBe(true)
      const front = await openFront(dataDir)
      const logId = front.logId
      const newest = await front.newest()
      await front.close()
      expect(newest).toBe(2)
      expect(await markOf(dataDir)).toEqual([{ logId, seq: 2 }])
      expect(a.logger.lines.some((l) => l.includes("front log opened"))).toBe(true)
    } finally {
      rmSync(dataDir, { recursive: true, force: true })
    }
  })

  it("answers a request (the router still runs it in the hand-over's transaction)", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "baton-front-"))
    try {
      const a = await startOn(dataDir, "log")
      try {
        const clientId = `front-rr-${crypto.randomUUID().slice(0, 6)}`
        const client = await mqtt.connectAsync(a.url, { protocolVersion: 4, clientId, reconnectPeriod: 0 })
        try {
          await client.subscribeAsync(`reply/${clientId}/#`, { qos: 1 })
          const reply = new Promise<Envelope.Envelope>((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error("no reply within 10 s")), 10_000)
            client.once("message", (_topic, payload) => {
              clearTimeout(timer)
              resolve(JSON.parse(payload.toString()) as Envelope.Envelope)
            })
          })
          const id = crypto.randomUUID()
          await client.publishAsync("initiate/place-order", JSON.stringify({ id, type: "place-order", replyTo: `reply/${clientId}/replies`, data: JSON.parse(order("front-rr")) }), { qos: 1 })
          expect(await reply).toMatchObject({ type: "reply", correlationId: id })
        } finally {
          await client.endAsync()
        }
      } finally {
        await a.runtime.stop()
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true })
    }
  })

  it("refuses to start with an older copy of the front's file (its newest entry below the mark)", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "baton-front-"))
    try {
      const a = await startOn(dataDir, "log")
      // A copy with no entry yet (its newest: 0), the same log id.
      await a.runtime.stop()
      const copy = join(dataDir, "front-copy.db")
      copyFileSync(FrontLog.pathIn(dataDir), copy)
      const b = await startOn(dataDir, "log")
      try {
        await placed(b.url, "front-3")
      } finally {
        await b.runtime.stop()
      }
      for (const suffix of ["-wal", "-shm"]) rmSync(FrontLog.pathIn(dataDir) + suffix, { force: true })
      copyFileSync(copy, FrontLog.pathIn(dataDir))
      await expect(startOn(dataDir, "log")).rejects.toThrow(/older copy of the front log/)
    } finally {
      rmSync(dataDir, { recursive: true, force: true })
    }
  })

  it("switched off with entries left in the front's file: forwards them at start, then prunes the file (its newest row kept)", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "baton-front-"))
    try {
      const a = await startOn(dataDir, "log")
      await a.runtime.stop()
      // Entries committed in the front's file and never handed over (a kill after their PUBACK).
      const front = await openFront(dataDir)
      await Promise.all(["left-1", "left-2", "left-3"].map((c) => front.append("initiate/place-order", Buffer.from(order(c)), null)))
      const logId = front.logId
      await front.close()

      const b = await startOn(dataDir, "off")
      try {
        // Forwarded at start, before the runtime was ready: the orders are in the store, once each
        // (three keys: processed in any order).
        await b.runtime.idle()
        const orders = await b.runtime.store.run(b.runtime.store.query("SELECT customer_id FROM orders ORDER BY seq").all())
        expect(orders.map((o) => String(o.customer_id)).sort()).toEqual(["left-1", "left-2", "left-3"])
        expect(b.logger.lines.some((l) => l.includes("left entries forwarded") && l.includes("entries=3"))).toBe(true)
        // Now logged in main's own log, and forwarded.
        await placed(b.url, "after-1")
      } finally {
        await b.runtime.stop()
      }
      expect(await markOf(dataDir)).toEqual([{ logId, seq: 3 }])
      const reopened = await openFront(dataDir)
      try {
        expect((await reopened.after(0, 10)).map((e) => e.seq)).toEqual([3])
      } finally {
        await reopened.close()
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true })
    }
  })
})
