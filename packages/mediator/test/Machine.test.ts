import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { OrderWorkflow } from "@baton/order-entry"
import { Machine } from "@baton/mediator"

const workflow = OrderWorkflow.workflow
const defaults = { timeoutMs: 1000, maxAttempts: 2 }
const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 4) * 50

const order = { orderId: "ORD-000001", customerId: "c1", email: "c1@example.com", items: [{ sku: "BOOK-1", qty: 1, price: 2 }], total: 2, paymentToken: "tok", cardLast4: "4242" }

/** What each processor answers to a command, as in the reference app. */
const resultsOf = (name: string, approve: boolean): ReadonlyArray<{ type: string; data: unknown }> => {
  switch (name) {
    case "create-order":
      return [{ type: "order-created", data: order }]
    case "apply-payment":
      return approve ? [{ type: "payment-applied", data: { ...order, amount: 2, authorization: "a" } }] : [{ type: "payment-denied", data: { ...order, amount: 2, reason: "declined" } }]
    case "adjust-inventory":
      return [{ type: "inventory-updated", data: { orderId: order.orderId, lines: [], shortfall: 0 } }]
    case "fulfill-order":
      return [{ type: "order-fulfilled", data: order }]
    case "ship-order":
      return [{ type: "order-shipped", data: { orderId: order.orderId, method: "standard", trackingId: "TRK-1" } }]
    case "order-stock":
      return []
    default:
      return [{ type: "email-sent", data: { orderId: order.orderId } }]
  }
}

const action = fc.record({
  kind: fc.constantFrom("ack", "ack", "ack", "duplicate", "late", "nack", "timeout", "restart"),
  pick: fc.nat(),
  approve: fc.boolean(),
  patch: fc.boolean()
})

type Action = typeof action extends fc.Arbitrary<infer A> ? A : never

const ack = (): Action => ({ kind: "ack", pick: 0, approve: false, patch: false })

/** Drives the machine like the runtime does, checking the invariants after every transition. */
const simulate = (actions: ReadonlyArray<Action>) => {
  let clock = 0
  const at = () => new Date(Date.UTC(2026, 0, 1, 0, 0, clock++)).toISOString()
  const outstanding = new Map<string, Machine.CommandState>()
  const answered: Array<{ readonly envelopeId: string; readonly results: ReadonlyArray<{ type: string; data: unknown }> }> = []
  const everSent = new Set<string>()
  let state: Machine.State | undefined

  const apply = (input: Machine.Input) => {
    const before = state
    const t = Machine.transition(workflow, defaults, before, input, at())
    for (const effect of t.effects) {
      if (effect._tag !== "Send") continue
      const c = effect.command
      // An acknowledged command is never sent again.
      expect(before?.commands[c.key]?.status, `${c.key} sent again after its acknowledgement`).not.toBe("acked")
      if (before !== undefined && (c.track !== before.track || c.step !== before.step)) {
        // A new step starts only when every command of the step before is acknowledged.
        const previous = Object.values(before.commands).filter((x) => x.track === before.track && x.step === before.step)
        const acked = Object.values(t.state?.commands ?? {}).filter((x) => x.track === before.track && x.step === before.step)
        expect(previous.length).toBeGreaterThan(0)
        for (const x of acked) expect(x.status, `${x.key} when ${c.key} was sent`).toBe("acked")
      }
      outstanding.set(c.envelopeId, c)
      everSent.add(c.envelopeId)
    }
    state = t.state
    expect(["running", "failed", "completed", "denied"]).toContain(state?.status)
    // Steps only move forward.
    if (before !== undefined && state !== undefined && before.track === state.track) expect(state.step).toBeGreaterThanOrEqual(before.step)
  }

  const pick = (n: number) => {
    const all = [...outstanding.values()]
    return all.length === 0 ? undefined : all[n % all.length]
  }

  apply({ _tag: "Start", id: "wf-1", input: { customerId: "c1", email: "c1@example.com", items: order.items, payment: { card: "4000000000000119" } } })
  for (const a of actions) {
    if (state === undefined || Machine.terminal(state.status)) break
    switch (a.kind) {
      case "ack": {
        const c = pick(a.pick)
        if (c === undefined) break
        outstanding.delete(c.envelopeId)
        const results = resultsOf(c.name, a.approve)
        answered.push({ envelopeId: c.envelopeId, results })
        apply({ _tag: "Ack", envelopeId: c.envelopeId, results })
        break
      }
      case "duplicate": {
        const old = answered[a.pick % Math.max(1, answered.length)]
        if (old === undefined) break
        const snapshot = state
        apply({ _tag: "Ack", envelopeId: old.envelopeId, results: old.results })
        expect(state, "a duplicate acknowledgement changes nothing").toBe(snapshot)
        break
      }
      case "late": {
        // An acknowledgement of an envelope that is no longer the command's current one.
        const stale = [...everSent].filter((id) => !Object.values(state?.commands ?? {}).some((c) => c.envelopeId === id))
        const id = stale[a.pick % Math.max(1, stale.length)]
        if (id === undefined) break
        const snapshot = state
        apply({ _tag: "Ack", envelopeId: id, results: [] })
        expect(state).toBe(snapshot)
        break
      }
      case "nack": {
        const c = pick(a.pick)
        if (c === undefined) break
        outstanding.delete(c.envelopeId)
        apply({ _tag: "Nack", envelopeId: c.envelopeId, reason: "processor failed" })
        break
      }
      case "timeout": {
        const c = pick(a.pick)
        if (c === undefined) break
        const current = state.commands[c.key]
        if (current?.envelopeId === c.envelopeId && current.status === "sent") apply({ _tag: "Timeout", envelopeId: c.envelopeId, attempt: current.attempts })
        break
      }
      case "restart":
        apply({ _tag: "Restart", ...(a.patch ? { patch: { payment: { card: "4242424242424242" } } } : {}) })
        break
    }
  }
  // Then everything goes right: a failed workflow is restarted, every command is acknowledged.
  for (let round = 0; round < 200 && state !== undefined && !Machine.terminal(state.status); round++) {
    if (state.status === "failed") {
      // A restart may find the failed command acknowledged late: the step is done and the workflow
      // moves on, possibly to its end.
      apply({ _tag: "Restart" })
      if (state === undefined || Machine.terminal(state.status)) break
    }
    const c = [...outstanding.values()].find((x) => state?.commands[x.key]?.envelopeId === x.envelopeId && state.commands[x.key]?.status !== "acked")
    if (c === undefined) {
      if (state.status === "failed") continue
      throw new Error(`stuck: ${JSON.stringify(state)}`)
    }
    outstanding.delete(c.envelopeId)
    apply({ _tag: "Ack", envelopeId: c.envelopeId, results: resultsOf(c.name, true) })
  }
  return state
}

describe("the mediator's state machine", () => {
  it("for any interleaving of acknowledgements, duplicates, late acknowledgements, timeouts, failures and restarts: steps in order, none re-run, and it ends completed or denied", () => {
    fc.assert(
      fc.property(fc.array(action, { maxLength: 60 }), (actions) => {
        const end = simulate(actions)
        expect(["completed", "denied"]).toContain(end?.status)
        if (end?.status === "completed") expect(Object.values(end.commands).filter((c) => c.name === "ship-order" && c.status === "acked")).toHaveLength(1)
      }),
      {
        numRuns: runs,
        examples: [
          // Found by a CI run: the last command of the denied branch times out twice (the workflow
          // fails), then its acknowledgement arrives; the restart finds nothing to send again and
          // the workflow ends denied.
          [[ack(), ack(), ack(), ack(), { ...ack(), kind: "timeout" }, { ...ack(), kind: "timeout" }, ack()]]
        ]
      }
    )
  })

  it("for any run up to a failure, a discard ends it discarded with who and why and sends its compensations once, and then no input moves it or sends anything; a discard of a workflow that has not failed changes nothing", () => {
    const later = fc.record({ kind: fc.constantFrom("ack", "nack", "timeout", "restart", "discard", "start"), pick: fc.nat() })
    fc.assert(
      fc.property(fc.array(action, { maxLength: 40 }), fc.array(later, { minLength: 1, maxLength: 20 }), fc.array(fc.boolean(), { maxLength: 3 }), (actions, afterwards, extras) => {
        const at = "2026-01-01T00:00:00.000Z"
        // Besides the order's own release: more declared compensations, each sent or not by its `when`.
        const spec: typeof workflow = {
          ...workflow,
          onDiscard: [
            ...(workflow.onDiscard ?? []),
            ...extras.map((sent, i) => ({ name: `note-${i}`, channel: "notification", type: "note", when: () => sent, data: (d: Machine.State["data"]) => ({ i, input: d.input }) }))
          ]
        }
        const start: Machine.Input = { _tag: "Start", id: "w", input: { payment: { card: "4000000000000119" } } }
        let state = Machine.transition(spec, defaults, undefined, start, at).state
        const envelopes = new Set<string>()
        for (const a of actions) {
          if (state === undefined || state.status !== "running") break
          const sent = Object.values(state.commands).filter((c) => c.status === "sent")
          const c = sent[a.pick % Math.max(1, sent.length)]
          if (c === undefined) break
          envelopes.add(c.envelopeId)
          const input: Machine.Input =
            a.kind === "nack" ? { _tag: "Nack", envelopeId: c.envelopeId, reason: "x" } : a.kind === "timeout" ? { _tag: "Timeout", envelopeId: c.envelopeId, attempt: c.attempts } : { _tag: "Ack", envelopeId: c.envelopeId, results: resultsOf(c.name, a.approve) }
          state = Machine.transition(spec, defaults, state, input, at).state
        }
        const discard: Machine.Input = { _tag: "Discard", by: "olga", reason: "card never fixed" }
        const first = state === undefined ? undefined : Object.values(state.commands).find((c) => c.status === "sent")
        if (state?.status === "running" && first !== undefined) {
          // Running: a discard changes nothing. Then the run fails, for the discard to find it failed.
          expect(Machine.transition(spec, defaults, state, discard, at)).toEqual({ state, effects: [] })
          state = Machine.transition(spec, defaults, state, { _tag: "Nack", envelopeId: first.envelopeId, reason: "x" }, at).state
        }
        const t = Machine.transition(spec, defaults, state, discard, at)
        if (state?.status !== "failed") {
          expect(t).toEqual({ state, effects: [] })
          return
        }
        // The order's compensation: its stock goes back, once, if the order was ever created (no order, no stock).
        const created = state.commands["main/1/create-order"]?.status === "acked"
        const release = { _tag: "Compensate", envelopeId: "w/discard/release-inventory", name: "release-inventory", channel: "inventory", type: "payment-denied", data: expect.objectContaining({ orderId: order.orderId }) }
        expect(t.state).toMatchObject({ status: "discarded", discarded: { by: "olga", reason: "card never fixed", at, compensations: [...(created ? ["release-inventory"] : []), ...extras.flatMap((sent, i) => (sent ? [`note-${i}`] : []))] }, failure: state.failure })
        expect(t.effects).toEqual([
          { _tag: "Announce", type: "workflow-discarded", data: { workflowId: "w", workflow: workflow.name, step: state.failure?.step, reason: "card never fixed", by: "olga" } },
          ...(created ? [release] : []),
          ...extras.flatMap((sent, i) =>
            sent ? [{ _tag: "Compensate", envelopeId: `w/discard/note-${i}`, name: `note-${i}`, channel: "notification", type: "note", data: { i, input: state!.data.input } }] : []
          )
        ])
        expect(Machine.terminal(t.state!.status) && Machine.kept(t.state!.status)).toBe(true)
        // Late acknowledgements, of the compensations too (nothing asked for them), move nothing.
        const ids = [...envelopes, ...Object.values(t.state!.commands).map((c) => c.envelopeId), ...t.effects.flatMap((e) => (e._tag === "Compensate" ? [e.envelopeId] : []))]
        for (const l of afterwards) {
          const id = ids[l.pick % ids.length]!
          const input: Machine.Input =
            l.kind === "ack" ? { _tag: "Ack", envelopeId: id, results: [] }
            : l.kind === "nack" ? { _tag: "Nack", envelopeId: id, reason: "late" }
            : l.kind === "timeout" ? { _tag: "Timeout", envelopeId: id, attempt: 1 }
            : l.kind === "restart" ? { _tag: "Restart", patch: { payment: { card: "4242424242424242" } } }
            : l.kind === "discard" ? discard
            : start
          expect(Machine.transition(spec, defaults, t.state, input, at), l.kind).toEqual({ state: t.state, effects: [] })
        }
      }),
      { numRuns: runs }
    )
  })

  it("runs the five steps of the order workflow in order, each command once", () => {
    const end = simulate([])
    expect(end?.status).toBe("completed")
    expect(Object.keys(end?.commands ?? {})).toEqual([
      "main/1/create-order",
      "main/2/email-customer",
      "main/2/apply-payment",
      "main/2/adjust-inventory",
      "main/3/fulfill-order",
      "main/3/order-stock",
      "main/4/ship-order",
      "main/4/email-customer",
      "main/5/email-customer"
    ])
  })

  it("a failure stops the workflow at its step; a restart re-sends only the failed command, with a new envelope and the patched data", () => {
    const at = "2026-01-01T00:00:00.000Z"
    let t = Machine.transition(workflow, defaults, undefined, { _tag: "Start", id: "w", input: { payment: { card: "4000000000000119" } } }, at)
    t = Machine.transition(workflow, defaults, t.state, { _tag: "Ack", envelopeId: "w/main/1/create-order/1", results: resultsOf("create-order", true) }, at)
    t = Machine.transition(workflow, defaults, t.state, { _tag: "Ack", envelopeId: "w/main/2/email-customer/1", results: [] }, at)
    t = Machine.transition(workflow, defaults, t.state, { _tag: "Nack", envelopeId: "w/main/2/apply-payment/1", reason: "gateway down" }, at)
    expect(t.state?.status).toBe("failed")
    expect(t.state?.failure).toMatchObject({ step: "2 (payment-and-inventory)", command: "apply-payment", reason: "gateway down" })
    expect(t.effects).toEqual([expect.objectContaining({ _tag: "Announce", type: "workflow-failed" })])
    t = Machine.transition(workflow, defaults, t.state, { _tag: "Restart", patch: { payment: { card: "4242424242424242" } } }, at)
    const sends = t.effects.filter((e) => e._tag === "Send")
    expect(sends).toHaveLength(1)
    expect(sends[0]).toMatchObject({ command: { name: "apply-payment", envelopeId: "w/main/2/apply-payment/2", generation: 2 }, data: { card: "4242424242424242" } })
    // adjust-inventory was still in flight: it is neither re-sent nor forgotten.
    expect(t.state?.commands["main/2/adjust-inventory"]?.status).toBe("sent")
  })

  it("times out a silent command: sends it again, then fails the workflow", () => {
    const at = "2026-01-01T00:00:00.000Z"
    let t = Machine.transition(workflow, defaults, undefined, { _tag: "Start", id: "w", input: {} }, at)
    t = Machine.transition(workflow, defaults, t.state, { _tag: "Timeout", envelopeId: "w/main/1/create-order/1", attempt: 1 }, at)
    expect(t.effects).toEqual([expect.objectContaining({ _tag: "Send", command: expect.objectContaining({ attempts: 2, envelopeId: "w/main/1/create-order/1" }) })])
    // A timer of an earlier attempt changes nothing.
    expect(Machine.transition(workflow, defaults, t.state, { _tag: "Timeout", envelopeId: "w/main/1/create-order/1", attempt: 1 }, at).state).toBe(t.state)
    t = Machine.transition(workflow, defaults, t.state, { _tag: "Timeout", envelopeId: "w/main/1/create-order/1", attempt: 2 }, at)
    expect(t.state?.status).toBe("failed")
    expect(t.state?.failure?.reason).toMatch(/no acknowledgement from order-placement after 2 attempt/)
  })
})
