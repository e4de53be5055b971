/**
 * In a cluster, a workflow's inputs are applied by the instance that owns its partition, and a
 * partition moves between instances (a hand-over, a restart, a lost lease). Every domain mediator
 * keeps its workflows' committed state in memory; each write asserts the stored row is still the
 * version that state was computed from. These tests check that a copy gone stale (its partition
 * handed over and back meanwhile) is never written over a newer state: for any run of inputs,
 * each applied by either of two instances sharing one store, with conflicts run again as the
 * consumer runs them, the effects and stored states are those of one mediator reading the store
 * for each input.
 */
import { afterEach, describe, expect, it } from "vitest"
import fc from "fast-check"
import { Effect } from "effect"
import { Log, type Envelope, type Processor } from "@baton/core"
import { Sqlite, type Store } from "@baton/store"
import { OrderWorkflow } from "@baton/order-entry"
import { Mediator, WorkflowStore } from "@baton/mediator"
import { order, resultsOf } from "./results.ts"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 4) * 10

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

const ids = ["w0", "w1"]

const keyed = (id: string, type: string, key: string, data: unknown): Envelope.Envelope => ({ id, type, key, correlationId: key, causationId: id, occurredAt: new Date(0).toISOString(), data })

const instance = (store: Store, workflows: WorkflowStore.WorkflowStore, cache: boolean) => {
  const domain = Mediator.domain({ domain: "order", workflows: [OrderWorkflow.workflow], store: workflows, defaults: { timeoutMs: 600_000, maxAttempts: 2 }, logger: Log.silent, now: () => new Date(0), cache })
  cleanups.push(() => domain.close())
  return { store, workflows, domain }
}

const open = async () => {
  const store = await Sqlite.open({ path: ":memory:" })
  cleanups.push(() => store.close())
  return { store, workflows: await WorkflowStore.inStore(store) }
}

/** A lost conflict, which the consumer runs again in place (prepare, then the transaction). */
const isConflict = (error: unknown): boolean => (error as { reason?: { _tag?: string } } | undefined)?.reason?._tag === "SerializationError"

let conflicts = 0

/** What the consumer does with an input: prepare, the transaction, `committed`; a lost conflict runs again. */
const run = async <P>(store: Store, p: Processor<P>, event: Envelope.Envelope) => {
  for (let tries = 1; ; tries++) {
    const prepared = p.prepare === undefined ? (undefined as P) : await Effect.runPromise(p.prepare(event))
    try {
      const out = await store.transaction(p.handle(event, prepared))
      await p.committed?.(event, prepared)
      return out
    } catch (error) {
      if (!isConflict(error) || tries >= 3) throw error
      conflicts++
    }
  }
}

/** A run of one key's inputs in one transaction; when it fails, each runs alone (as the consumer falls back). */
const inRun = async (store: Store, p: Processor, events: ReadonlyArray<Envelope.Envelope>) => {
  const batch = p.batch!
  const prepared = await Effect.runPromise(batch.prepare(events))
  try {
    const out = await store.transaction(batch.handle(events, prepared))
    await batch.committed?.(events, prepared)
    return out
  } catch (error) {
    if (!isConflict(error)) throw error
    conflicts++
    const out = []
    for (const e of events) out.push(await run(store, p, e))
    return out
  }
}

const action = fc.record({
  kind: fc.constantFrom("start", "ack", "ack", "ack", "ack", "ack", "step", "step", "nack", "restart", "discard", "hand-over"),
  workflow: fc.nat({ max: ids.length - 1 }),
  /** The instance that owns the workflow's partition for this input. */
  on: fc.nat({ max: 1 }),
  pick: fc.nat(),
  approve: fc.boolean()
})

describe("domain mediators of a cluster, each with its workflows' state in memory", () => {
  it("for any inputs of two workflows, each applied by either of two instances over one store (partitions handed back and forth), repeated starts, runs of a step's acknowledgements and hand-overs: each input's effects and every stored state as one mediator reading the store for each input", async () => {
    let total = 0
    await fc.assert(
      fc.asyncProperty(fc.array(fc.nat({ max: 1 }), { minLength: ids.length, maxLength: ids.length }), fc.array(action, { minLength: 1, maxLength: 40 }), async (firsts, more) => {
        // Each workflow started first (on either instance), so that most inputs find commands in flight.
        const starts = firsts.map((on, workflow) => ({ kind: "start", workflow, on, pick: 0, approve: true }))
        const actions = [...starts, ...more]
        const shared = await open()
        const instances = [instance(shared.store, shared.workflows, true), instance(shared.store, shared.workflows, true)]
        const ref = await open()
        const reference = instance(ref.store, ref.workflows, false)
        const states = (w: WorkflowStore.WorkflowStore) => Promise.all(ids.map((id) => w.load(id)))
        let n = 0
        for (const a of actions) {
          const id = ids[a.workflow]!
          const m = instances[a.on]!
          const sent = Object.values((await reference.workflows.load(id))?.commands ?? {}).filter((c) => c.status === "sent")
          const c = sent[a.pick % Math.max(1, sent.length)]
          const input = (type: string, data: unknown) => keyed(`i${n++}`, type, id, data)
          let events: Array<Envelope.Envelope> = []
          switch (a.kind) {
            case "start":
              // The first, or a repeated one (another envelope for a workflow already started).
              events = [input(Mediator.messages.start, { workflow: OrderWorkflow.workflow.name, input: order })]
              break
            case "ack":
              if (c !== undefined) events = [input(Mediator.messages.acked, { commandId: c.envelopeId, results: resultsOf(c.name, a.approve) })]
              break
            case "step":
              // Every command in flight acknowledged, in one run.
              events = sent.map((s) => input(Mediator.messages.acked, { commandId: s.envelopeId, results: resultsOf(s.name, a.approve) }))
              break
            case "nack":
              if (c !== undefined) events = [input(Mediator.messages.failed, { commandId: c.envelopeId, reason: "refused" })]
              break
            case "restart":
              events = [input(Mediator.messages.restart, {})]
              break
            case "discard":
              events = [input(Mediator.messages.discard, { by: "op", reason: "gave up" })]
              break
            case "hand-over":
              // The instance acquires the workflow's partition again: it forgets what it held of it.
              await m.domain.recover((w) => w === id)
              break
          }
          if (events.length === 0) continue
          const expected = []
          for (const e of events) expected.push(await run(reference.store, reference.domain.processor, e))
          const out = events.length === 1 ? [await run(m.store, m.domain.processor, events[0]!)] : await inRun(m.store, m.domain.processor, events)
          expect(out).toEqual(expected)
          expect(await states(shared.workflows)).toEqual(await states(reference.workflows))
        }
        total++
      }),
      { numRuns: runs }
    )
    // (The runs met stale copies: the property is not true only for want of them.)
    expect(total).toBe(runs)
    expect(conflicts).toBeGreaterThan(0)
  })
})
