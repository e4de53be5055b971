/**
 * The router on a real inbox (SQLite in memory): whatever the number of local consumers of a topic
 * (none, one: routed without `forEach`; several: one statement), an announced event is written to
 * the inbox of each consumer once and, after the commit, scheduled once on each consumer it was
 * new to; routed again (a redelivery), it is scheduled nowhere.
 */
import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { Effect } from "effect"
import { Envelope } from "@baton/core"
import { Inbox, Sqlite } from "@baton/store"
import * as Router from "../src/Router.ts"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 50)

describe("Router", () => {
  it("writes an event to each local consumer's inbox once and schedules it once on each it was new to, for all consumer sets and redeliveries", async () => {
    const store = await Sqlite.open({ path: ":memory:" })
    const inbox = await Inbox.make(store)
    const names = fc.constantFrom("a", "b", "c")
    // Per topic, its consumers' names in the order they were added (a name added twice is one consumer added twice).
    const scenario = fc.record({
      consumers: fc.array(names, { maxLength: 4 }),
      events: fc.array(fc.record({ key: fc.constantFrom("k1", "k2"), again: fc.boolean() }), { minLength: 1, maxLength: 5 })
    })
    let topicNo = 0
    try {
      await fc.assert(
        fc.asyncProperty(scenario, async ({ consumers, events }) => {
          const topic = `events/routed-${topicNo++}`
          const router = Router.make(inbox)
          const scheduled: Array<[string, string]> = []
          for (const name of consumers) router.add(topic, { name: `${name}-${topic}`, schedule: (event) => void scheduled.push([name, event.id]) })
          const expected: Array<[string, string]> = []
          for (const { key, again } of events) {
            const event: Envelope.Envelope = { ...Envelope.initiate("routed", { key }, { key }), type: "routed" }
            const payload = Envelope.encode(event)
            for (const run of again ? [1, 2] : [1]) {
              const deliveries = await store.transaction(router.route(topic, event, payload))
              for (const deliver of deliveries) deliver()
              if (run === 1) for (const name of new Set(consumers)) expected.push([name, event.id])
            }
            const rows = await store.run(store.query("SELECT processor FROM inbox WHERE envelope_id = ? ORDER BY processor").all(event.id))
            expect(rows.map((r) => String(r.processor))).toEqual([...new Set(consumers)].sort().map((n) => `${n}-${topic}`))
          }
          expect(scheduled.sort()).toEqual(expected.sort())
        }),
        { numRuns: runs }
      )
    } finally {
      await store.close()
    }
  })
  it("routed by the ingress (inline) to a lone consumer that can run it: run once in the transaction with its row written done (never pending), or received pending and scheduled once when it declines or did not run it; never for a redelivery nor with several consumers", async () => {
    const store = await Sqlite.open({ path: ":memory:" })
    const inbox = await Inbox.make(store)
    const scenario = fc.record({
      consumers: fc.integer({ min: 1, max: 3 }),
      events: fc.array(fc.record({ again: fc.boolean(), runs: fc.constantFrom("declines", "not-run", "runs") }), { minLength: 1, maxLength: 5 })
    })
    let topicNo = 0
    try {
      await fc.assert(
        fc.asyncProperty(scenario, async ({ consumers, events }) => {
          const topic = `accepted/inline-${topicNo++}`
          const router = Router.make(inbox)
          const log: Array<string> = []
          let mode = "runs"
          for (let c = 0; c < consumers; c++)
            router.add(topic, {
              name: `c${c}-${topic}`,
              schedule: (event) => void log.push(`scheduled ${event.id}`),
              // As Consumer's `inline`: its row written done in a savepoint, then its effects; a
              // failure (not-run) rolls the savepoint back; a redelivery finds its row and runs nothing.
              inline: (event, t, payload) =>
                mode === "declines"
                  ? undefined
                  : Effect.map(
                      Effect.exit(
                        store.sql.withTransaction(
                          Effect.flatMap(inbox.receiveDone(`c${c}-${topic}`, { envelopeId: event.id, topic: t, key: event.key, payload }), (fresh) => {
                            if (!fresh) return Effect.succeed(undefined)
                            log.push(`inline ${event.id}`)
                            return mode === "runs" ? Effect.succeed(() => void log.push(`ran ${event.id}`)) : Effect.fail("not run")
                          })
                        )
                      ),
                      (exit) => (exit._tag === "Success" ? exit.value : undefined)
                    )
            })
          const expected: Array<string> = []
          for (const { again, runs } of events) {
            const event: Envelope.Envelope = { ...Envelope.initiate("inline", {}, { key: "k" }), type: "inline" }
            mode = runs
            for (const run of again ? [1, 2] : [1]) {
              const deliveries = await store.transaction(router.route(topic, event, Envelope.encode(event), true))
              for (const deliver of deliveries) deliver()
              const statuses = await Promise.all(Array.from({ length: consumers }, (_, c) => store.run(inbox.status(`c${c}-${topic}`, event.id))))
              expect(statuses).toEqual(Array.from({ length: consumers }, () => (consumers === 1 && runs === "runs" ? "done" : "pending")))
              if (run === 2) continue
              if (consumers > 1) for (let c = 0; c < consumers; c++) expected.push(`scheduled ${event.id}`)
              else if (runs === "declines") expected.push(`scheduled ${event.id}`)
              else if (runs === "not-run") expected.push(`inline ${event.id}`, `scheduled ${event.id}`)
              else expected.push(`inline ${event.id}`, `ran ${event.id}`)
            }
          }
          expect(log).toEqual(expected)
        }),
        { numRuns: runs }
      )
    } finally {
      await store.close()
    }
  })
})
