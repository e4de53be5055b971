/**
 * Request-reply across SIGKILL (the ping app on the embedded broker and SQLite, where a request is
 * handled inside the ingress's append transaction when nothing else waits): killed at any kill
 * point on the request's path, with requests in flight, then started again and sent every request
 * again (as a requester retrying). For all such runs: each request handled once (one inbox row,
 * done; at most one reply envelope per request, a republished reply carrying the same id), none
 * lost, and the requests acknowledged before the kill among them.
 */
import { describe, expect, it } from "vitest"
import fc from "fast-check"
import mqtt from "mqtt"
import { Process } from "@baton/testkit"

const { count, eventually, onDataDir, readStore } = Process

const runs = Number(process.env.BATON_CRASH_RUNS ?? 6)
const points = ["ingress-before-commit", "ingress-committed", "handler", "processed-committed", "after-acks"] as const

describe("request-reply across SIGKILL", () => {
  it(
    "killed at any point of a request's path, each request handled once and answered by one reply envelope at most",
    async () => {
      let killed = 0
      await fc.assert(
        fc.asyncProperty(fc.constantFrom(...points), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 4, max: 12 }), async (point, hit, n) => {
          await onDataDir(async ({ dataDir, start }) => {
            const first = await start({ BATON_APP: "ping", ...(point === "after-acks" ? {} : { BATON_CRASH_AT: `${point}:${hit}` }) })
            const ids = Array.from({ length: n }, () => crypto.randomUUID())
            const replies = new Map<string, Set<string>>()
            const connect = async (port: number) => {
              const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, clientId: "rq", clean: true, reconnectPeriod: 0 })
              client.on("message", (_topic, payload) => {
                const reply = JSON.parse(payload.toString()) as { id: string; correlationId: string }
                replies.set(reply.correlationId, (replies.get(reply.correlationId) ?? new Set()).add(reply.id))
              })
              client.on("error", () => undefined)
              await client.subscribeAsync("reply/rq/replies", { qos: 1 })
              return client
            }
            const send = (client: mqtt.MqttClient, id: string, i: number) =>
              client.publishAsync("initiate/ping", JSON.stringify({ id, type: "ping", replyTo: "reply/rq/replies", data: { n: i } }), { qos: 1 }).then(
                () => true,
                () => false
              )
            const client = await connect(first.mqttPort!)
            // One at a time, as a requester waiting for each: the first requests are handled in the ingress's transaction.
            const acked: Array<string> = []
            for (const [i, id] of ids.entries()) {
              const ok = await Promise.race([send(client, id, i), first.exited.then(() => false)])
              if (!ok) break
              acked.push(id)
            }
            // A kill point hit fewer than `hit` times (fewer requests than that) never kills the
            // process: it is killed after the acks then, as at "after-acks" (waiting for its exit hung).
            const exits = await Promise.race([first.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), point === "after-acks" ? 0 : 1000))])
            if (!exits) await first.kill("SIGKILL")
            const exit = await first.exited
            client.end(true)
            if (exit === "SIGKILL") killed++
            const second = await start({ BATON_APP: "ping" })
            const again = await connect(second.mqttPort!)
            for (const [i, id] of ids.entries()) expect(await send(again, id, i), `request ${i} acknowledged after the restart`).toBe(true)
            await eventually(() => readStore(dataDir, (db) => count(db, "SELECT COUNT(*) FROM inbox WHERE processor = 'ping' AND status = 'done'") === ids.length), 20_000, "every request handled")
            // The replies of what was handled after the restart (and republished ones) have arrived.
            await new Promise((r) => setTimeout(r, 200))
            again.end(true)
            expect(await second.kill("SIGTERM")).toBe(0)
            readStore(dataDir, (db) => {
              // What was acknowledged before the kill is in the log (forwarded once).
              for (const id of acked) expect(count(db, "SELECT COUNT(*) FROM ingress_seen WHERE envelope_id = ?", id), `acknowledged request ${id} logged`).toBe(1)
              for (const id of ids) expect(count(db, "SELECT COUNT(*) FROM inbox WHERE processor = 'ping' AND envelope_id = ? AND status = 'done'", id), `request ${id} handled once`).toBe(1)
              expect(count(db, "SELECT COUNT(*) FROM inbox WHERE processor = 'ping'")).toBe(ids.length)
            })
            for (const [id, envelopes] of replies) {
              expect(ids).toContain(id)
              expect(envelopes.size, `one reply envelope for ${id}`).toBe(1)
            }
            // Requests handled after the restart are answered (the requester listens then).
            expect(replies.size).toBeGreaterThan(0)
          })
        }),
        { numRuns: runs, endOnFailure: true }
      )
      expect(killed, "some runs were killed at their kill point").toBeGreaterThan(0)
    },
    300_000
  )
})
