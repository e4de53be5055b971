/**
 * A domain mediator applies a run of one workflow's waiting inputs (the acknowledgements of a step
 * that come together) in one transaction (`processor.batch`). These tests check that a run changes
 * nothing of what it does: for any inputs and any cut of them into runs, each input announces and
 * sends what it would one at a time, and the stored state after each run is the one the same
 * inputs leave one at a time; a rolled-back run leaves nothing.
 */
import { afterEach, describe, expect, it } from "vitest"
import fc from "fast-check"
import { Effect } from "effect"
import { Log, type Envelope, type Processor } from "@baton/core"
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
const resultsOf = resultsFor({ ...order, paymentToken: "tok_1", cardLast4: "4242" })

const envelope = (id: string, type: string, data: unknown): Envelope.Envelope => ({
  id,
  type,
  key: "wf-1",
  correlationId: "wf-1",
  causationId: id,
  occurredAt: new Date(0).toISOString(),
  data
})

/** A mediator over its own store, its clock standing still (two of them compare equal); `cache` on or off. */
const mediator = async (cache: boolean) => {
  const store = await Sqlite.open({ path: ":memory:" })
  cleanups.push(() => store.close())
  const workflows = await WorkflowStore.inStore(store)
  const domain = Mediator.domain({ domain: "order", workflows: [OrderWorkflow.workflow], store: workflows, defaults: { timeoutMs: 600_000, maxAttempts: 2 }, logger: Log.silent, now: () => new Date(0), cache })
  cleanups.push(() => domain.close())
  return { store, workflows, domain }
}

/** One at a time, as the runtime runs an input alone. */
const one = async <P>(store: Store, p: Processor<P>, event: Envelope.Envelope) => {
  const prepared = p.prepare === undefined ? (undefined as P) : await Effect.runPromise(p.prepare(event))
  const out = await store.transaction(p.handle(event, prepared))
  await p.committed?.(event, prepared)
  return out
}

/** A run, as the runtime runs it: prepared outside, handled in one transaction, `committed` after it. */
const run = async (store: Store, p: Processor, events: ReadonlyArray<Envelope.Envelope>, rollback = false) => {
  const batch = p.batch!
  const prepared = await Effect.runPromise(batch.prepare(events))
  if (rollback) {
    await expect(store.transaction(Effect.andThen(batch.handle(events, prepared), Effect.fail(new Error("rolled back"))))).rejects.toThrow("rolled back")
    return undefined
  }
  const out = await store.transaction(batch.handle(events, prepared))
  await batch.committed?.(events, prepared)
  return out
}

const action = fc.record({
  kind: fc.constantFrom("ack", "ack", "ack", "ack", "ack", "duplicate", "unknown", "nack", "timeout", "restart", "discard"),
  pick: fc.nat(),
  approve: fc.boolean()
})

describe("a domain mediator's runs of one workflow's inputs", () => {
  it("for any inputs (acknowledgements in any order, duplicates, failures, timeouts, restarts, discards) cut into runs in any way: each input's effects and the state after each run as one at a time", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(action, { maxLength: 30 }), fc.array(fc.nat({ max: 4 }), { maxLength: 30 }), fc.boolean(), fc.boolean(), async (actions, cuts, cache, rollback) => {
        // The inputs, and what each gives one at a time (the inputs a run could see depend on the state before them).
        const single = await mediator(true)
        const events: Array<Envelope.Envelope> = [envelope("start", Mediator.messages.start, { workflow: OrderWorkflow.workflow.name, input: order })]
        const outs = [await one(single.store, single.domain.processor, events[0]!)]
        const states = [await single.workflows.load("wf-1")]
        const acked: Array<string> = []
        for (const [n, a] of actions.entries()) {
          const commands = Object.values((await single.workflows.load("wf-1"))?.commands ?? {})
          const sent = commands.filter((c) => c.status === "sent")
          const c = sent[a.pick % Math.max(1, sent.length)]
          const id = `i${n}`
          const event =
            a.kind === "ack" && c !== undefined
              ? envelope(id, Mediator.messages.acked, { commandId: c.envelopeId, results: resultsOf(c.name, a.approve) })
              : a.kind === "duplicate" && acked.length > 0
                ? envelope(id, Mediator.messages.acked, { commandId: acked[a.pick % acked.length], results: [] })
                : a.kind === "nack" && c !== undefined
                  ? envelope(id, Mediator.messages.failed, { commandId: c.envelopeId, reason: "refused" })
                  : a.kind === "timeout" && c !== undefined
                    ? envelope(id, Mediator.messages.timedOut, { commandId: c.envelopeId, attempt: c.attempts })
                    : a.kind === "restart"
                      ? envelope(id, Mediator.messages.restart, a.approve ? { patch: { payment: { card: "5555555555554444" } } } : {})
                      : a.kind === "discard"
                        ? envelope(id, Mediator.messages.discard, { by: "op", reason: "gave up" })
                        : envelope(id, Mediator.messages.acked, { commandId: `wf-1/nothing/${a.pick}`, results: [] })
          if (a.kind === "ack" && c !== undefined) acked.push(c.envelopeId)
          events.push(event)
          outs.push(await one(single.store, single.domain.processor, event))
          states.push(await single.workflows.load("wf-1"))
        }
        // The same inputs in runs of 1 to 5 (the cuts), on a mediator with its state in memory or read from the store.
        const batched = await mediator(cache)
        let at = 0
        for (let i = 0; at < events.length; i++) {
          const size = Math.min(events.length - at, (cuts[i] ?? 0) + 1)
          const slice = events.slice(at, at + size)
          const before = await batched.workflows.load("wf-1")
          // A run whose transaction rolls back leaves the state as it was; it runs again.
          if (rollback && i % 2 === 0) {
            await run(batched.store, batched.domain.processor, slice, true)
            expect(await batched.workflows.load("wf-1")).toEqual(before)
          }
          const out = await run(batched.store, batched.domain.processor, slice)
          expect(out).toEqual(outs.slice(at, at + size))
          at += size
          expect(await batched.workflows.load("wf-1")).toEqual(states[at - 1])
        }
      }),
      { numRuns: runs }
    )
  })

  it("a run writes the workflow's state once, whatever the number of its inputs", async () => {
    const m = await mediator(true)
    const out = await one(m.store, m.domain.processor, envelope("start", Mediator.messages.start, { workflow: OrderWorkflow.workflow.name, input: order }))
    const create = out.find((o) => o.type === "place-order")!
    const step2 = await one(m.store, m.domain.processor, envelope("a1", Mediator.messages.acked, { commandId: create.id, results: resultsOf("create-order", true) }))
    const sends = step2.filter((o) => o.replyTo !== undefined)
    expect(sends).toHaveLength(3)
    // A command's envelope id: `<workflow>/<track>/<step>/<name>/<generation>`.
    const acks = sends.map((s, i) => envelope(`a2-${i}`, Mediator.messages.acked, { commandId: s.id, results: resultsOf(s.id!.split("/")[3]!, true) }))
    const before = m.store.breakdown().find((b) => b.text.startsWith("INSERT INTO workflows"))?.count ?? 0
    const announced = await run(m.store, m.domain.processor, acks)
    expect((m.store.breakdown().find((b) => b.text.startsWith("INSERT INTO workflows"))?.count ?? 0) - before).toBe(1)
    // The last acknowledgement of the step announces it and sends step 3's two commands.
    expect(announced?.map((a) => a.length)).toEqual([0, 0, 3])
    expect((await m.workflows.load("wf-1"))?.step).toBe(2)
  })
})
