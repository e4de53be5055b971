/**
 * A domain mediator keeps the committed state of its workflows in flight in memory instead of
 * reading the stored row for each input (in a cluster too: see Handover.test.ts). These tests
 * check that this changes nothing of what it does: for any run, the same sends, announcements and stored states as
 * a mediator that reads every input's state from the store, across rolled-back transactions and
 * restarts of the process. The same for runs of one workflow's inputs applied in one transaction
 * (`processor.batch`: the acknowledgements of a step that come together): for any cut of the
 * inputs into runs, each input's effects and the state after each run are those of one at a time.
 */
import { afterEach, describe, expect, it } from "vitest"
import fc from "fast-check"
import { Effect } from "effect"
import { Log, Topics, type Envelope, type Processor } from "@baton/core"
import { Sqlite, type Store } from "@baton/store"
import { OrderWorkflow } from "@baton/order-entry"
import { Mediator, WorkflowStore } from "@baton/mediator"
import { envelope, order, resultsOf } from "./results.ts"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 4) * 10

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
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
    // Without the copy in memory (`cache: false`) every input reads the store.
    const reading = await mediator(false)
    await run(reading.store, reading.domain.processor, start)
    const read = reading.store.statements()
    await Effect.runPromise(reading.domain.processor.prepare!(ack))
    expect(reading.store.statements()).toBe(read + 1)
  })
})

/** A run, as the runtime runs it: prepared outside, handled in one transaction, `committed` after it. */
const inRun = async (store: Store, p: Processor, events: ReadonlyArray<Envelope.Envelope>, rollback = false) => {
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

const runAction = fc.record({
  kind: fc.constantFrom("ack", "ack", "ack", "ack", "ack", "duplicate", "unknown", "nack", "timeout", "restart", "discard"),
  pick: fc.nat(),
  approve: fc.boolean()
})

describe("a domain mediator's runs of one workflow's inputs", () => {
  it("for any inputs (acknowledgements in any order, duplicates, failures, timeouts, restarts, discards) cut into runs in any way: each input's effects and the state after each run as one at a time", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(runAction, { maxLength: 30 }), fc.array(fc.nat({ max: 4 }), { maxLength: 30 }), fc.boolean(), fc.boolean(), async (actions, cuts, cache, rollback) => {
        // The inputs, and what each gives one at a time (the inputs a run could see depend on the state before them).
        const single = await mediator(true)
        const events: Array<Envelope.Envelope> = [envelope("start", Mediator.messages.start, { workflow: OrderWorkflow.workflow.name, input: order })]
        const outs = [await run(single.store, single.domain.processor, events[0]!)]
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
          outs.push(await run(single.store, single.domain.processor, event))
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
            await inRun(batched.store, batched.domain.processor, slice, true)
            expect(await batched.workflows.load("wf-1")).toEqual(before)
          }
          const out = await inRun(batched.store, batched.domain.processor, slice)
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
    const out = await run(m.store, m.domain.processor, envelope("start", Mediator.messages.start, { workflow: OrderWorkflow.workflow.name, input: order }))
    const create = out.find((o) => o.type === "place-order")!
    const step2 = await run(m.store, m.domain.processor, envelope("a1", Mediator.messages.acked, { commandId: create.id, results: resultsOf("create-order", true) }))
    const sends = step2.filter((o) => o.replyTo !== undefined)
    expect(sends).toHaveLength(3)
    // A command's envelope id: `<workflow>/<track>/<step>/<name>/<generation>`.
    const acks = sends.map((s, i) => envelope(`a2-${i}`, Mediator.messages.acked, { commandId: s.id, results: resultsOf(s.id!.split("/")[3]!, true) }))
    const before = m.store.breakdown().find((b) => b.text.startsWith("INSERT INTO workflows"))?.count ?? 0
    const announced = await inRun(m.store, m.domain.processor, acks)
    expect((m.store.breakdown().find((b) => b.text.startsWith("INSERT INTO workflows"))?.count ?? 0) - before).toBe(1)
    // The last acknowledgement of the step announces it and sends step 3's two commands.
    expect(announced?.map((a) => a.length)).toEqual([0, 0, 3])
    expect((await m.workflows.load("wf-1"))?.step).toBe(2)
  })
})

/** The order workflow's rule: its initiating event, which a domain mediator alone may take itself. */
const startRule = OrderWorkflow.rules[0]!

/** An input as the runtime keys it: an initiating event by its customer, the rest by their workflow. */
const keyed = (id: string, type: string, key: string, data: unknown): Envelope.Envelope => ({ id, type, key, correlationId: key, causationId: id, occurredAt: new Date(0).toISOString(), data })

const directAction = fc.record({
  kind: fc.constantFrom("initiate", "initiate", "ack", "ack", "ack", "ack", "resend"),
  /** Which workflow (of four), and which of its sent commands. */
  workflow: fc.nat({ max: 3 }),
  pick: fc.nat(),
  approve: fc.boolean()
})

describe("a domain mediator taking its initiating events directly (one instance alone)", () => {
  it("for any initiating events of several workflows, some of one customer (one key), re-sent ones and acknowledgements, cut into runs of one key in any way: each input's effects and every workflow's state as the simple mediator's start-workflow one at a time", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(directAction, { maxLength: 30 }), fc.array(fc.nat({ max: 4 }), { maxLength: 30 }), fc.boolean(), async (actions, cuts, cache) => {
        const make = async (initiating: boolean) => {
          const store = await Sqlite.open({ path: ":memory:" })
          cleanups.push(() => store.close())
          const workflows = await WorkflowStore.inStore(store)
          const domain = Mediator.domain({ domain: "order", workflows: [OrderWorkflow.workflow], store: workflows, defaults: { timeoutMs: 600_000, maxAttempts: 2 }, logger: Log.silent, now: () => new Date(0), cache, ...(initiating ? { initiating: [startRule] } : {}) })
          cleanups.push(() => domain.close())
          return { store, workflows, domain }
        }
        // The reference: each initiating event reaches the mediator as the simple mediator's start-workflow (keyed by the workflow), one at a time.
        const reference = await make(false)
        const ids = ["w0", "w1", "w2", "w3"]
        /** Two customers for four workflows: initiating events of one key in one run. */
        const customerOf = (id: string) => `c${ids.indexOf(id) % 2}`
        const direct: Array<Envelope.Envelope> = []
        const outs: Array<unknown> = []
        const started = new Set<string>()
        const states = async () => Promise.all(ids.map((id) => reference.workflows.load(id)))
        for (const [n, a] of actions.entries()) {
          const id = ids[a.workflow]!
          let input: Envelope.Envelope | undefined
          let viaStart: Envelope.Envelope | undefined
          if (a.kind === "initiate" || (a.kind === "resend" && started.has(id))) {
            input = keyed(id, startRule.type, customerOf(id), order)
            viaStart = keyed(id, Mediator.messages.start, id, { workflow: OrderWorkflow.workflow.name, input: order })
            started.add(id)
          } else if (a.kind === "ack") {
            const sent = Object.values((await reference.workflows.load(id))?.commands ?? {}).filter((c) => c.status === "sent")
            const c = sent[a.pick % Math.max(1, sent.length)]
            if (c !== undefined) input = viaStart = keyed(`i${n}`, Mediator.messages.acked, id, { commandId: c.envelopeId, results: resultsOf(c.name, a.approve) })
          }
          if (input === undefined || viaStart === undefined) continue
          direct.push(input)
          outs.push(await run(reference.store, reference.domain.processor, viaStart))
        }
        const expected = await states()
        // The same inputs on a mediator that takes the initiating events itself, in runs of one key's consecutive inputs (as the consumer forms them).
        const m = await make(true)
        let at = 0
        for (let i = 0; at < direct.length; i++) {
          let size = 1
          while (size < (cuts[i] ?? 0) + 1 && at + size < direct.length && direct[at + size]!.key === direct[at]!.key) size++
          const slice = direct.slice(at, at + size)
          const out = size === 1 ? [await run(m.store, m.domain.processor, slice[0]!)] : await inRun(m.store, m.domain.processor, slice)
          expect(out).toEqual(outs.slice(at, at + size))
          at += size
        }
        expect(await Promise.all(ids.map((id) => m.workflows.load(id)))).toEqual(expected)
      }),
      { numRuns: runs }
    )
  })

  it("takes the initiating events of its domain's complex rules from their accepted topics, and refuses a rule of another domain", () => {
    const store = { kind: "sqlite" } as unknown as WorkflowStore.WorkflowStore
    const domain = Mediator.domain({ domain: "order", workflows: [OrderWorkflow.workflow], store, defaults: { timeoutMs: 1, maxAttempts: 1 }, logger: Log.silent, initiating: [startRule] })
    expect(domain.processor.topics).toEqual([Topics.mediator("order"), Topics.accepted(startRule.type)])
    expect(() => Mediator.domain({ domain: "customer", workflows: [], store, defaults: { timeoutMs: 1, maxAttempts: 1 }, logger: Log.silent, initiating: [startRule] })).toThrow(/cannot start/)
  })
})
