/**
 * A domain mediator keeps the committed state of its workflows in flight in memory (on SQLite, its
 * one writer) instead of reading the stored row for each input. These tests check that this
 * changes nothing of what it does: for any run, the same sends, announcements and stored states as
 * a mediator that reads every input's state from the store, across rolled-back transactions and
 * restarts of the process.
 */
import { afterEach, describe, expect, it } from "vitest"
import fc from "fast-check"
import { Effect } from "effect"
import { Log, Topics, type Envelope, type Processor } from "@baton/core"
import { Sqlite, type Store } from "@baton/store"
import { OrderWorkflow } from "@baton/order-entry"
import { Mediator, WorkflowStore } from "@baton/mediator"
import { resultsFor } from "./results.ts"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 4) * 10

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

const order = { orderId: "ORD-1", customerId: "c1", email: "c1@example.com", items: [{ sku: "BOOK-1", qty: 1, price: 2 }], total: 2, payment: { card: "4242424242424242" } }
const created = { ...order, paymentToken: "tok_1", cardLast4: "4242" }

const resultsOf = resultsFor(created)

const envelope = (id: string, type: string, data: unknown): Envelope.Envelope => ({
  id,
  type,
  key: "wf-1",
  correlationId: "wf-1",
  causationId: id,
  occurredAt: new Date(0).toISOString(),
  data
})

/** A mediator over its own store; `cache` on or off. Its clock stands still, so two runs compare equal. */
const mediator = async (cache: boolean) => {
  const store = await Sqlite.open({ path: ":memory:" })
  cleanups.push(() => store.close())
  const workflows = await WorkflowStore.inStore(store)
  const make = () => {
    const domain = Mediator.domain({ domain: "order", workflows: [OrderWorkflow.workflow], store: workflows, defaults: { timeoutMs: 600_000, maxAttempts: 2 }, logger: Log.silent, now: () => new Date(0), cache })
    cleanups.push(() => domain.close())
    return domain
  }
  return { store, workflows, domain: make(), make }
}

/** What the runtime does with an input: prepare outside, handle in the transaction, `committed` after the commit. */
const run = async <P>(store: Store, p: Processor<P>, event: Envelope.Envelope) => {
  const prepared = p.prepare === undefined ? (undefined as P) : await Effect.runPromise(p.prepare(event))
  const out = await store.transaction(p.handle(event, prepared))
  await p.committed?.(event, prepared)
  return out
}

/** An attempt whose transaction fails after the handler ran: nothing of it commits, `committed` is not called. */
const rolledBack = async <P>(store: Store, p: Processor<P>, event: Envelope.Envelope) => {
  const prepared = p.prepare === undefined ? (undefined as P) : await Effect.runPromise(p.prepare(event))
  await expect(store.transaction(Effect.andThen(p.handle(event, prepared), Effect.fail(new Error("rolled back"))))).rejects.toThrow("rolled back")
}

const action = fc.record({
  kind: fc.constantFrom("ack", "ack", "ack", "ack", "duplicate", "unknown", "nack", "restart", "discard", "process-restart"),
  pick: fc.nat(),
  approve: fc.boolean(),
  /** The input's first attempt rolls back (a failed commit, a lost group) before the one that commits. */
  rollback: fc.boolean()
})

describe("a domain mediator's state in memory (SQLite)", () => {
  it("for any run of acknowledgements, duplicates, failures, restarts, discards, rolled-back attempts and process restarts: the same effects and stored states as reading the store for each input", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(action, { maxLength: 40 }), async (actions) => {
        const cached = await mediator(true)
        const reading = await mediator(false)
        const both = [cached, reading]
        let n = 0
        const apply = async (event: Envelope.Envelope, rollback: boolean) => {
          const outs = []
          for (const m of both) {
            if (rollback) await rolledBack(m.store, m.domain.processor, event)
            outs.push(await run(m.store, m.domain.processor, event))
          }
          expect(outs[0]).toEqual(outs[1])
          expect(await cached.workflows.load("wf-1")).toEqual(await reading.workflows.load("wf-1"))
        }
        await apply(envelope("start", Mediator.messages.start, { workflow: OrderWorkflow.workflow.name, input: order }), false)
        const ackedIds: Array<string> = []
        for (const a of actions) {
          // The commands as stored by the mediator that reads: the inputs a run could see next.
          const state = await reading.workflows.load("wf-1")
          const commands = Object.values(state?.commands ?? {})
          const sent = commands.filter((c) => c.status === "sent")
          const id = `i${n++}`
          switch (a.kind) {
            case "ack": {
              const c = sent[a.pick % Math.max(1, sent.length)]
              if (c === undefined) break
              ackedIds.push(c.envelopeId)
              await apply(envelope(id, Mediator.messages.acked, { commandId: c.envelopeId, results: resultsOf(c.name, a.approve) }), a.rollback)
              break
            }
            case "duplicate": {
              const commandId = ackedIds[a.pick % Math.max(1, ackedIds.length)]
              if (commandId !== undefined) await apply(envelope(id, Mediator.messages.acked, { commandId, results: [] }), a.rollback)
              break
            }
            case "unknown":
              await apply(envelope(id, Mediator.messages.acked, { commandId: `wf-1/nothing/${a.pick}`, results: [] }), a.rollback)
              break
            case "nack": {
              const c = sent[a.pick % Math.max(1, sent.length)]
              if (c !== undefined) await apply(envelope(id, Mediator.messages.failed, { commandId: c.envelopeId, reason: "refused" }), a.rollback)
              break
            }
            case "restart":
              await apply(envelope(id, Mediator.messages.restart, a.approve ? { patch: { payment: { card: "5555555555554444" } } } : {}), a.rollback)
              break
            case "discard":
              await apply(envelope(id, Mediator.messages.discard, { by: "op", reason: "gave up" }), a.rollback)
              break
            case "process-restart":
              // A new process: nothing in memory, the state is read from the store again.
              cached.domain = cached.make()
              break
          }
        }
      }),
      { numRuns: runs }
    )
  })

  it("an input's transition starts from the state its workflow's last input committed, without a statement; a rolled-back one's leaves it as it was", async () => {
    const m = await mediator(true)
    const start = envelope("start", Mediator.messages.start, { workflow: OrderWorkflow.workflow.name, input: order })
    const out = await run(m.store, m.domain.processor, start)
    const create = out.find((o) => o.topic === Topics.channel("order-placement"))!
    const ack = envelope("a1", Mediator.messages.acked, { commandId: create.id, results: resultsOf("create-order", true) })
    const before = m.store.statements()
    const next = await Effect.runPromise(m.domain.processor.prepare!(ack))
    expect(m.store.statements()).toBe(before)
    expect(next?.step).toBe(1)
    // Rolled back: the next attempt starts again from the committed state (step 0), not from its own.
    await rolledBack(m.store, m.domain.processor, ack)
    expect((await Effect.runPromise(m.domain.processor.prepare!(ack)))?.lastEffects).toEqual(next?.lastEffects)
    await run(m.store, m.domain.processor, ack)
    expect((await m.workflows.load("wf-1"))?.step).toBe(1)
    // On PostgreSQL (a cluster: other instances move workflows too) every input reads the store.
    const reading = await mediator(false)
    await run(reading.store, reading.domain.processor, start)
    const read = reading.store.statements()
    await Effect.runPromise(reading.domain.processor.prepare!(ack))
    expect(reading.store.statements()).toBe(read + 1)
  })
})
