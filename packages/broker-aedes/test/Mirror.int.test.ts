/**
 * A mirror of the broker's filters (Mirror.ts), fed by its announcements, answers `wanted` and
 * `hasSubscribers` away from the broker: it may say yes for nobody, never no where the broker says
 * yes (docs/front-thread.md 4.3). Once everyone left, it forgets every filter but the persistent
 * sessions' (it agrees with the broker again).
 */
import { afterAll, describe, expect, it, vi } from "vitest"
import fc from "fast-check"
import mqtt from "mqtt"
import { EmbeddedBroker, Mirror } from "@baton/broker-aedes"
import { freshSessions } from "./sessions.ts"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 20)
const cleanup: Array<() => unknown> = []
afterAll(async () => {
  for (const c of cleanup) await c()
})

const topics = ["a", "b", "a/a", "a/b", "b/a", "a/a/b", "reply/a"]
/** Never no where the broker says yes, for every topic. */
const agrees = (broker: EmbeddedBroker.EmbeddedBroker, mirror: Mirror.Mirror, when: string) => {
  for (const t of topics) {
    if (broker.wanted(t) === true) expect(mirror.wanted(t), `wanted ${t} ${when}`).toBe(true)
    if (broker.hasSubscribers(t) === true) expect(mirror.hasSubscribers(t), `hasSubscribers ${t} ${when}`).toBe(true)
  }
}

/** A broker on disk sessions whose announcements feed a mirror, each announcement known at once. */
const mirrored = async (sessions: EmbeddedBroker.Sessions) => {
  let mirror: Mirror.Mirror | undefined
  const broker = await EmbeddedBroker.start({
    host: "127.0.0.1",
    mqttPort: 0,
    sessions,
    filters: { added: (filter, persistent) => mirror!.added(filter, persistent), dropped: (filter) => mirror!.dropped(filter) }
  })
  mirror = Mirror.make(broker.persistentFilters)
  return { broker, mirror }
}

describe("Mirror", () => {
  it("for any run of subscribes, unsubscribes and disconnects of clean and persistent clients: never no where the broker says yes", async () => {
    const level = fc.constantFrom("a", "b")
    const filter = fc.oneof(
      fc.array(fc.oneof(level, fc.constant("+")), { minLength: 1, maxLength: 2 }).chain((ls) => fc.constantFrom(ls.join("/"), `${ls.join("/")}/#`, "#")),
      fc.constant("reply/a")
    )
    // Clients 0 and 1 clean, 2 persistent.
    const op = fc.oneof(
      fc.record({ kind: fc.constant("subscribe" as const), client: fc.nat(2), filter }),
      fc.record({ kind: fc.constant("unsubscribe" as const), client: fc.nat(2), filter }),
      fc.record({ kind: fc.constant("disconnect" as const), client: fc.nat(2) })
    )
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 12 }), async (ops) => {
        const { broker, mirror } = await mirrored(freshSessions("disk", cleanup))
        const clients = new Map<number, mqtt.MqttClient>()
        const connected = async (n: number) => {
          let c = clients.get(n)
          if (c === undefined) {
            c = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.mqttPort}`, { protocolVersion: 4, clientId: `c${n}`, clean: n < 2, reconnectPeriod: 0 })
            clients.set(n, c)
          }
          return c
        }
        try {
          for (const [i, o] of ops.entries()) {
            if (o.kind === "subscribe") await (await connected(o.client)).subscribeAsync(o.filter, { qos: 1 })
            else if (o.kind === "unsubscribe") await (await connected(o.client)).unsubscribeAsync(o.filter)
            else {
              await clients.get(o.client)?.endAsync()
              clients.delete(o.client)
            }
            agrees(broker, mirror, `after step ${i}`)
          }
          for (const c of clients.values()) await c.endAsync()
          // Everyone gone: the broker's matcher emptied, every live filter dropped.
          await vi.waitFor(() => expect(broker.connections()).toBe(0), { timeout: 10_000 })
          await vi.waitFor(() => {
            for (const t of topics) expect(mirror.wanted(t), `wanted ${t} at the end`).toBe(broker.wanted(t))
          }, { timeout: 10_000 })
        } finally {
          await broker.close()
        }
      }),
      { numRuns: runs }
    )
  })

  it("starts from the persistent sessions' filters the broker read from its store", async () => {
    const sessions = freshSessions("disk", cleanup)
    const first = await mirrored(sessions)
    const p = await mqtt.connectAsync(`mqtt://127.0.0.1:${first.broker.mqttPort}`, { protocolVersion: 4, clientId: "p", clean: false, reconnectPeriod: 0 })
    await p.subscribeAsync("a/#", { qos: 1 })
    await p.endAsync()
    await first.broker.close()
    const { broker, mirror } = await mirrored(sessions)
    try {
      expect(broker.wanted("a/b")).toBe(true)
      expect(mirror.wanted("a/b")).toBe(true)
      expect(mirror.wanted("b")).toBe(false)
    } finally {
      await broker.close()
    }
  })
})
