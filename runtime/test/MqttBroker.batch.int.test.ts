/**
 * Group commit on a session of the external broker (`MqttBroker.subscribe`'s `batch`: the
 * runtime's processor and ingress sessions), against a throwaway Mosquitto of the test's own
 * (`Mosquitto.start`: a free port, up to 100 messages in flight per client), through a TCP proxy that reads the session's MQTT
 * packets both ways: which PUBLISH carried which message, and when the client sent each PUBACK.
 * The batch handler commits to a real SQLite database (node:sqlite), one transaction per batch,
 * and takes an id once (a redelivery is not applied twice).
 */
import { mkdtempSync, rmSync } from "node:fs"
import { createConnection, createServer, type Server, type Socket } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { DatabaseSync } from "node:sqlite"
import fc from "fast-check"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { MqttBroker } from "@baton/broker-mqtt"
import type { Broker, Message } from "@baton/core"
import { Mosquitto, MqttWire } from "@baton/testkit"

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** What the proxy saw, in one order with the handler's commits (`events`). */
interface Seen {
  /** PUBLISH packet id (broker to client, QoS 1) -> message id (in its payload), per connection. */
  readonly publishes: Array<Map<number, string>>
  /** Every event in order: a commit of a message, or a PUBACK of one sent by the client. */
  readonly events: Array<{ readonly kind: "commit" | "puback"; readonly id: string }>
}

/** A proxy from a free port to `target` that records the session's publishes and PUBACKs. */
const proxy = async (target: number, seen: Seen): Promise<{ port: number; server: Server }> => {
  const server = createServer((client: Socket) => {
    const byPacketId = new Map<number, string>()
    seen.publishes.push(byPacketId)
    const upstream = createConnection(target, "127.0.0.1")
    client.setNoDelay(true)
    upstream.setNoDelay(true)
    const close = () => (client.destroy(), upstream.destroy())
    client.on("error", close).on("close", close)
    upstream.on("error", close).on("close", close)
    const fromBroker = MqttWire.framer((type, flags, body) => {
      if (type !== 3 || ((flags >> 1) & 3) === 0) return
      const topicLength = body.readUInt16BE(0)
      byPacketId.set(body.readUInt16BE(2 + topicLength), (JSON.parse(body.subarray(4 + topicLength).toString()) as { id: string }).id)
    })
    const fromClient = MqttWire.framer((type, _flags, body) => {
      if (type === 4) seen.events.push({ kind: "puback", id: byPacketId.get(body.readUInt16BE(0)) ?? "?" })
    })
    upstream.on("data", (b: Buffer) => {
      fromBroker(b)
      client.write(b)
    })
    client.on("data", (b: Buffer) => {
      fromClient(b)
      upstream.write(b)
    })
  })
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  return { port: (server.address() as { port: number }).port, server }
}

/** A store of applied messages: one transaction per batch, an id applied once. */
const appliedStore = (path: string) => {
  const db = new DatabaseSync(path)
  db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; CREATE TABLE IF NOT EXISTS applied (id TEXT PRIMARY KEY, key TEXT NOT NULL, n INTEGER NOT NULL)")
  const insert = db.prepare("INSERT INTO applied (id, key, n) VALUES (?, ?, (SELECT COUNT(*) FROM applied)) ON CONFLICT DO NOTHING")
  let transactions = 0
  return {
    db,
    transactions: () => transactions,
    /** Applies the messages in one transaction; gives the ids applied now (not seen before). */
    apply: (messages: ReadonlyArray<Message>): Array<string> => {
      const fresh: Array<string> = []
      db.exec("BEGIN IMMEDIATE")
      for (const m of messages) {
        const { id, key } = JSON.parse(m.payload.toString()) as { id: string; key: string }
        if (insert.run(id, key).changes > 0) fresh.push(id)
      }
      db.exec("COMMIT")
      transactions++
      return fresh
    },
    /** The ids of `key` in the order they were first applied. */
    orderOf: (key: string): Array<string> => (db.prepare("SELECT id FROM applied WHERE key = ? ORDER BY n").all(key) as Array<{ id: string }>).map((r) => r.id),
    count: (): number => Number((db.prepare("SELECT COUNT(*) AS n FROM applied").get() as { n: number }).n)
  }
}

describe("MqttBroker: messages that arrive together, one transaction (group commit)", () => {
  let dir: string
  let mosquitto: Mosquitto.Private
  const brokers: Array<Broker> = []
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "baton-batch-"))
    mosquitto = await Mosquitto.start({ inflight: 100 })
  }, 20_000)
  afterAll(async () => {
    await Promise.all(brokers.splice(0).map((b) => b.close()))
    await mosquitto?.stop()
    rmSync(dir, { recursive: true, force: true })
  })
  const open = async (url: string, prefix: string) => {
    const broker = await MqttBroker.make({ url, clientPrefix: `${prefix}.`, closeGraceMs: 500 })
    brokers.push(broker)
    return broker
  }
  let sessions = 0
  /** Kills that happened (`failAfter` reached). */
  let kills = 0

  /**
   * A session through the proxy, whose handlers apply to `store` and record each commit. `failAfter`:
   * the batch handler throws right after its n-th commit (the kill point between a batch's commit
   * and its PUBACKs: the connection is dropped, nothing of it is acknowledged).
   */
  const session = async (store: ReturnType<typeof appliedStore>, seen: Seen, topic: string, failAfter?: number) => {
    const via = await proxy(mosquitto.port, seen)
    const broker = await open(`mqtt://127.0.0.1:${via.port}`, `s${++sessions}`)
    let batches = 0
    const commit = (messages: ReadonlyArray<Message>) => {
      store.apply(messages)
      for (const m of messages) seen.events.push({ kind: "commit", id: (JSON.parse(m.payload.toString()) as { id: string }).id })
    }
    await broker.subscribe(
      { clientId: `batch-${process.pid}-${sessions}`, topics: [topic] },
      async (m) => commit([m]),
      async (messages) => {
        await sleep(0)
        commit(messages)
        if (++batches === failAfter) {
          kills++
          throw new Error("killed after the commit, before the PUBACKs")
        }
      }
    )
    return { broker, proxy: via.server }
  }

  /** Publishes `messages` (id, key) at QoS 1 together; resolves once the broker acknowledged them all. */
  const publishAll = async (topic: string, messages: ReadonlyArray<{ id: string; key: string }>) => {
    const publisher = await open(`mqtt://127.0.0.1:${mosquitto.port}`, `p${++sessions}`)
    await Promise.all(messages.map((m) => publisher.publish(topic, JSON.stringify(m), 1)))
  }

  const until = async (done: () => boolean, ms: number) => {
    for (const started = Date.now(); !done() && Date.now() - started < ms; ) await sleep(20)
  }

  /** Every message's PUBACK after its commit; each acknowledged message committed. */
  const expectAckedAfterCommit = (seen: Seen) => {
    const committedAt = new Map<string, number>()
    seen.events.forEach((e, i) => e.kind === "commit" && !committedAt.has(e.id) && committedAt.set(e.id, i))
    seen.events.forEach((e, i) => {
      if (e.kind !== "puback") return
      expect(e.id).not.toBe("?")
      expect(committedAt.get(e.id), `PUBACK of ${e.id} before its commit`).toBeLessThan(i)
    })
  }

  it("a burst of N messages published together is committed in fewer than N transactions, each PUBACK after its message's commit", async () => {
    const n = 200
    const topic = `test/batch/${process.pid}/burst`
    const store = appliedStore(join(dir, "burst.db"))
    const seen: Seen = { publishes: [], events: [] }
    const s = await session(store, seen, topic)
    await publishAll(
      topic,
      Array.from({ length: n }, (_, i) => ({ id: `m${i}`, key: `k${i % 3}` }))
    )
    await until(() => seen.events.filter((e) => e.kind === "puback").length >= n, 10_000)
    expect(store.count()).toBe(n)
    expect(seen.events.filter((e) => e.kind === "puback").length).toBe(n)
    console.log(`${n} messages in ${store.transactions()} transactions`)
    expect(store.transactions()).toBeLessThan(n)
    expectAckedAfterCommit(seen)
    for (let k = 0; k < 3; k++) expect(store.orderOf(`k${k}`)).toEqual(Array.from({ length: n }, (_, i) => i).filter((i) => i % 3 === k).map((i) => `m${i}`))
    s.proxy.close()
  }, 30_000)

  it("property: with a kill between a batch's commit and its PUBACKs, nothing acknowledged is lost, nothing applied twice, order per key holds", async () => {
    let run = 0
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 80 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 3 }),
        async (size, keys, killAt) => {
          run++
          const topic = `test/batch/${process.pid}/prop/${run}`
          const store = appliedStore(join(dir, `prop-${run}.db`))
          const seen: Seen = { publishes: [], events: [] }
          const s = await session(store, seen, topic, killAt)
          const messages = Array.from({ length: size }, (_, i) => ({ id: `r${run}-${i}`, key: `k${i % keys}` }))
          await publishAll(topic, messages)
          await until(() => store.count() === size && seen.events.filter((e) => e.kind === "puback").length >= size, 10_000)
          // Every message applied once (a redelivery is taken once), all acknowledged, none before its commit.
          expect(store.count()).toBe(size)
          expect(new Set(seen.events.filter((e) => e.kind === "puback").map((e) => e.id))).toEqual(new Set(messages.map((m) => m.id)))
          expectAckedAfterCommit(seen)
          for (let k = 0; k < keys; k++) expect(store.orderOf(`k${k}`)).toEqual(messages.filter((m) => m.key === `k${k}`).map((m) => m.id))
          await s.broker.close()
          s.proxy.close()
          store.db.close()
        }
      ),
      { numRuns: Number(process.env.BATON_PROPERTY_RUNS ?? 12) }
    )
    // The kill point was reached in runs (a burst may be fewer batches than the kill point).
    console.log(`${kills} kills in ${run} runs`)
    expect(kills).toBeGreaterThan(0)
  }, 120_000)
})
