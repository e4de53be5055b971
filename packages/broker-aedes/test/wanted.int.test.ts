/**
 * `wanted(topic)`: whether anyone would get a message on `topic` now. The runtime writes no outbox
 * row for an event nobody wants, so a "no" must never leave a subscriber without a message it
 * would have got: a connected client, or a persistent session offline (the broker queues for it),
 * also across a restart on the disk sessions store.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it, vi } from "vitest"
import fc from "fast-check"
import mqtt from "mqtt"
import { EmbeddedBroker } from "@baton/broker-aedes"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 4)
const dirs: Array<string> = []
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})
const sessionsDir = () => {
  const d = mkdtempSync(join(tmpdir(), "baton-wanted-"))
  dirs.push(d)
  return d
}
const start = (dir: string) => EmbeddedBroker.start({ host: "127.0.0.1", mqttPort: 0, sessions: { kind: "disk", dir } })
const url = (b: EmbeddedBroker.EmbeddedBroker) => `mqtt://127.0.0.1:${b.mqttPort}`

/** Connects, collecting the topics of what arrives (queued messages are flushed right after CONNACK). */
const client = async (b: EmbeddedBroker.EmbeddedBroker, clientId: string, clean: boolean) => {
  const got: Array<string> = []
  const c = mqtt.connect(url(b), { protocolVersion: 4, clientId, clean, reconnectPeriod: 0, manualConnect: true })
  c.on("message", (topic) => got.push(topic))
  c.connect()
  await new Promise<void>((resolve, reject) => {
    c.once("connect", () => resolve())
    c.once("error", reject)
  })
  return { c, got }
}

const settle = () => new Promise((r) => setTimeout(r, 150))
/** Until the broker has handled what a client did (a disconnect, a flush after CONNACK): on a loaded machine, past any fixed wait. */
const eventually = (check: () => void) => vi.waitFor(check, { timeout: 10_000, interval: 20 })

describe("EmbeddedBroker.wanted", () => {
  it("is true for a connected subscriber's topics and an offline persistent session's, also after a restart, and false otherwise", async () => {
    const dir = sessionsDir()
    let broker = await start(dir)
    try {
      expect(broker.wanted("events/a")).toBe(false)
      const live = await client(broker, "live", true)
      await live.c.subscribeAsync("events/+", { qos: 1 })
      expect(broker.wanted("events/a")).toBe(true)
      await live.c.endAsync()
      await eventually(() => expect(broker.wanted("events/a")).toBe(false))

      const watcher = await client(broker, "watcher", false)
      await watcher.c.subscribeAsync("events/shipped/#", { qos: 1 })
      await watcher.c.endAsync()
      await settle()
      expect(broker.wanted("events/shipped")).toBe(true)
      expect(broker.wanted("events/shipped/x")).toBe(true)
      expect(broker.wanted("events/a")).toBe(false)

      await broker.close()
      broker = await start(dir)
      // Known from the sessions store before the session reconnects.
      expect(broker.wanted("events/shipped/x")).toBe(true)
      expect(broker.wanted("events/a")).toBe(false)
      await broker.publish("events/shipped/x", "{}", 1)
      const back = await client(broker, "watcher", false)
      await eventually(() => expect(back.got).not.toEqual([]))
      await settle()
      expect(back.got).toEqual(["events/shipped/x"])
      await back.c.endAsync()
    } finally {
      await broker.close()
    }
  })

  it("for any subscribers (clean or persistent, connected or gone) and topics: a topic it calls unwanted reaches nobody", async () => {
    const level = fc.constantFrom("a", "b", "c")
    const filter = fc.array(fc.oneof(level, fc.constant("+")), { minLength: 1, maxLength: 3 }).chain((ls) => fc.constantFrom(ls.join("/"), `${ls.join("/")}/#`, "#"))
    const topic = fc.array(level, { minLength: 1, maxLength: 3 }).map((ls) => ls.join("/"))
    const subscriber = fc.record({ filter, persistent: fc.boolean(), staysConnected: fc.boolean() })
    await fc.assert(
      fc.asyncProperty(fc.array(subscriber, { minLength: 0, maxLength: 4 }), fc.uniqueArray(topic, { minLength: 1, maxLength: 6 }), async (subscribers, topics) => {
        const broker = await start(sessionsDir())
        try {
          const clients = await Promise.all(subscribers.map((s, i) => client(broker, `s${i}`, !s.persistent)))
          await Promise.all(clients.map(({ c }, i) => c.subscribeAsync(subscribers[i]!.filter, { qos: 1 })))
          for (const [i, { c }] of clients.entries()) if (!subscribers[i]!.staysConnected) await c.endAsync()
          await settle()
          const verdicts = new Map(topics.map((t) => [t, broker.wanted(t)]))
          for (const t of topics) await broker.publish(t, "{}", 1)
          // Offline persistent sessions come back for what was queued for them.
          const back = await Promise.all(subscribers.map((s, i) => (s.persistent && !s.staysConnected ? client(broker, `s${i}`, false) : undefined)))
          await settle()
          const received = new Set([...clients.map((x, i) => (subscribers[i]!.staysConnected ? x.got : [])), ...back.map((x) => x?.got ?? [])].flat())
          for (const t of topics) if (received.has(t)) expect(verdicts.get(t), `${t} was delivered`).toBe(true)
          for (const x of [...clients.filter((_, i) => subscribers[i]!.staysConnected), ...back]) await x?.c.endAsync()
        } finally {
          await broker.close()
        }
      }),
      { numRuns: runs }
    )
  })

  it("for any run of subscribes, unsubscribes and disconnects, asked between each: wanted is whether a live filter matches, never a stale answer", async () => {
    const level = fc.constantFrom("a", "b")
    const filter = fc.array(fc.oneof(level, fc.constant("+")), { minLength: 1, maxLength: 2 }).chain((ls) => fc.constantFrom(ls.join("/"), `${ls.join("/")}/#`, "#"))
    const topics = ["a", "b", "a/a", "a/b", "b/a", "b/b", "a/a/b"].map((t) => `events/${t}`)
    const op = fc.oneof(
      fc.record({ kind: fc.constant("subscribe" as const), client: fc.nat(2), filter }),
      fc.record({ kind: fc.constant("unsubscribe" as const), client: fc.nat(2), filter }),
      fc.record({ kind: fc.constant("disconnect" as const), client: fc.nat(2) })
    )
    const matches = (f: string, t: string): boolean => {
      const fs = f.split("/")
      const ts = t.split("/")
      for (let i = 0; i < fs.length; i++) {
        if (fs[i] === "#") return true
        if (i >= ts.length || (fs[i] !== "+" && fs[i] !== ts[i])) return false
      }
      return fs.length === ts.length
    }
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 8 }), async (ops) => {
        const broker = await start(sessionsDir())
        const clients = new Map<number, Awaited<ReturnType<typeof client>>>()
        // The model: each connected (clean) client's filters.
        const filters = new Map<number, Set<string>>()
        const check = async () => {
          const live = [...filters.values()].flatMap((fs) => [...fs])
          await eventually(() => {
            for (const t of topics) expect(broker.wanted(t), t).toBe(live.some((f) => matches(`events/${f}`, t)))
          })
        }
        try {
          await check()
          for (const o of ops) {
            if (o.kind === "disconnect") {
              await clients.get(o.client)?.c.endAsync()
              clients.delete(o.client)
              filters.delete(o.client)
            } else {
              let c = clients.get(o.client)
              if (c === undefined) {
                c = await client(broker, `c${o.client}`, true)
                clients.set(o.client, c)
                filters.set(o.client, new Set())
              }
              if (o.kind === "subscribe") {
                await c.c.subscribeAsync(`events/${o.filter}`, { qos: 1 })
                filters.get(o.client)!.add(o.filter)
              } else {
                await c.c.unsubscribeAsync(`events/${o.filter}`)
                filters.get(o.client)!.delete(o.filter)
              }
            }
            await check()
          }
        } finally {
          for (const c of clients.values()) await c.c.endAsync()
          await broker.close()
        }
      }),
      { numRuns: Math.max(runs, 12) }
    )
  })
})
