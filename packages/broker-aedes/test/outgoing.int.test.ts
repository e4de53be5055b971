/**
 * A persistent session's QoS 1 messages on the disk sessions store: for all sequences of
 * publishes, acknowledgements (PUBACK), disconnections, reconnections and broker restarts, what a
 * reconnecting session gets again is exactly what it was sent (or queued) and did not acknowledge.
 * A clean session acknowledging the same message ids beside it changes nothing of that. The
 * broker skips the sessions store's lookup on a PUBACK it knows misses (EmbeddedBroker
 * `skipAbsentAcks`): one that would have found something must still delete it.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it, vi } from "vitest"
import fc from "fast-check"
import { EmbeddedBroker } from "@baton/broker-aedes"
import * as Raw from "./rawClient.ts"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 12)
const dirs: Array<string> = []
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

/** A raw client that acknowledges nothing by itself, to choose which message to acknowledge and when. */
const raw = (port: number, clientId: string, clean: boolean, topic: string) => Raw.connect(port, clientId, [{ topic, qos: 1 }], { clean })

type Step =
  | { readonly kind: "publish" }
  | { readonly kind: "ack"; readonly pick: number; readonly byClean: boolean }
  | { readonly kind: "disconnect" }
  | { readonly kind: "reconnect" }
  | { readonly kind: "restart" }

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 4, arbitrary: fc.constant({ kind: "publish" as const }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("ack" as const), pick: fc.nat(), byClean: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constant({ kind: "disconnect" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "reconnect" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "restart" as const }) }
)

const settle = () => new Promise((r) => setTimeout(r, 120))
const eventually = (check: () => void) => vi.waitFor(check, { timeout: 10_000, interval: 10 })

describe("a persistent session's outgoing QoS 1 messages on disk", () => {
  it("for all publish/ack/disconnect/reconnect/restart sequences: the unacknowledged ones, and only they, are redelivered", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 14 }), async (steps) => {
        const dir = mkdtempSync(join(tmpdir(), "baton-outgoing-"))
        dirs.push(dir)
        const topic = "orders/x"
        let broker = await EmbeddedBroker.start({ host: "127.0.0.1", mqttPort: 0, sessions: { kind: "disk", dir } })
        type Client = Awaited<ReturnType<typeof raw>>
        let session: Client | undefined = await raw(broker.mqttPort, "persistent", false, topic)
        let clean: Client | undefined = await raw(broker.mqttPort, "clean", true, topic)
        // What the session was sent or queued and did not acknowledge, by payload.
        const owed = new Set<string>()
        // What arrived on the current connection and is not acknowledged: payload to message id.
        let inflight = new Map<string, number>()
        let n = 0
        const drop = async () => {
          await session?.close()
          await clean?.close()
          session = clean = undefined
        }
        const reconnect = async () => {
          await drop()
          session = await raw(broker.mqttPort, "persistent", false, topic)
          clean = await raw(broker.mqttPort, "clean", true, topic)
          const s = session
          await eventually(() => expect(new Set(s.got.map((g) => g.payload))).toEqual(owed))
          await settle()
          expect(s.got.map((g) => g.payload).sort()).toEqual([...owed].sort())
          inflight = new Map(s.got.map((g) => [g.payload, g.messageId]))
        }
        try {
          for (const s of steps) {
            if (s.kind === "publish") {
              const payload = `m${n++}`
              await broker.publish(topic, payload, 1)
              owed.add(payload)
              if (session !== undefined) {
                const c = session
                await eventually(() => expect(c.got.some((g) => g.payload === payload)).toBe(true))
                inflight.set(payload, c.got.find((g) => g.payload === payload)!.messageId)
              }
            } else if (s.kind === "ack") {
              if (session === undefined || inflight.size === 0) continue
              const [payload, messageId] = [...inflight][s.pick % inflight.size]!
              // A clean session acknowledging the same message id: the persistent session still owes it.
              if (s.byClean) {
                await clean?.ackId(messageId)
                continue
              }
              await session.ackId(messageId)
              inflight.delete(payload)
              owed.delete(payload)
            } else if (s.kind === "disconnect") await drop()
            else if (s.kind === "reconnect") await reconnect()
            else {
              await drop()
              await broker.close()
              broker = await EmbeddedBroker.start({ host: "127.0.0.1", mqttPort: 0, sessions: { kind: "disk", dir } })
            }
          }
          await reconnect()
        } finally {
          await drop()
          await broker.close()
        }
      }),
      { numRuns: runs }
    )
  }, 300_000)
})
