import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { OrderWorkflow } from "@baton/order-entry"
import { Machine } from "@baton/mediator"
import { resultsFor } from "./results.ts"

const workflow = OrderWorkflow.workflow
const defaults = { timeoutMs: 1000, maxAttempts: 2 }
const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 4) * 50

const order = { orderId: "ORD-000001", customerId: "c1", email: "c1@example.com", items: [{ sku: "BOOK-1", qty: 1, price: 2 }], total: 2, paymentToken: "tok", cardLast4: "4242" }

const resultsOf = resultsFor(order)

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

  it("a command's and a compensation's event version goes with every send of it: first, after a timeout, after a restart, on discard", () => {
    const at = "2026-01-01T00:00:00.000Z"
    const versioned = {
      name: "v",
      domain: "d",
      steps: [{ name: "s", commands: [{ name: "c", channel: "p", type: "measured", version: 3, data: () => ({ kelvin: 1 }) }, { name: "u", channel: "q", type: "plain", data: () => ({}) }] }],
      onDiscard: [{ name: "undo", channel: "p", type: "unmeasured", version: 2, data: () => ({}) }]
    }
    const versionsOf = (t: Machine.Transition) => t.effects.flatMap((e) => (e._tag === "Send" ? [[e.command.name, e.command.version]] : e._tag === "Compensate" ? [[e.name, e.version]] : []))
    let t = Machine.transition(versioned, defaults, undefined, { _tag: "Start", id: "w", input: {} }, at)
    expect(versionsOf(t)).toEqual([["c", 3], ["u", undefined]])
    t = Machine.transition(versioned, defaults, t.state, { _tag: "Timeout", envelopeId: "w/main/1/c/1", attempt: 1 }, at)
    expect(versionsOf(t)).toEqual([["c", 3]])
    t = Machine.transition(versioned, defaults, t.state, { _tag: "Nack", envelopeId: "w/main/1/c/1", reason: "no" }, at)
    const failed = t.state
    t = Machine.transition(versioned, defaults, failed, { _tag: "Restart" }, at)
    expect(versionsOf(t)).toEqual([["c", 3]])
    expect(versionsOf(Machine.transition(versioned, defaults, failed, { _tag: "Discard", by: "op", reason: "r" }, at))).toEqual([["undo", 2]])
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

/**
 * Any workflow, not only the order's: steps of zero to three commands, a branch entered by one
 * step's decision, a reply after one of the steps, a summary. A model of the rules gives the
 * effects the machine must produce, whatever the order of the acknowledgements.
 */
describe("the mediator's state machine, for any workflow", () => {
  type Shape = { readonly n: number; readonly timeoutMs: number | undefined; readonly maxAttempts: number | undefined }
  const stepShape = fc.record({
    n: fc.integer({ min: 0, max: 3 }),
    timeoutMs: fc.option(fc.integer({ min: 1, max: 5000 }), { nil: undefined }),
    maxAttempts: fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined })
  })
  const shapes = fc.record({
    main: fc.array(stepShape, { minLength: 1, maxLength: 4 }),
    alt: fc.array(stepShape, { maxLength: 3 }),
    decideAt: fc.nat(),
    replyAfter: fc.option(fc.nat(), { nil: undefined }),
    summary: fc.boolean(),
    replyTo: fc.boolean(),
    toAlt: fc.boolean(),
    order: fc.array(fc.nat(), { minLength: 1, maxLength: 30 }),
    duplicates: fc.array(fc.boolean(), { minLength: 1, maxLength: 30 }),
    failAt: fc.nat(),
    byTimeout: fc.boolean(),
    lateAck: fc.boolean(),
    /** Declared compensations: each with no `when`, or one that says yes or no. */
    compensations: fc.option(fc.array(fc.option(fc.boolean(), { nil: undefined }), { maxLength: 3 }), { nil: undefined })
  })
  type Generated = typeof shapes extends fc.Arbitrary<infer G> ? G : never
  const names = ["a", "b", "c"]
  const dataOf = (name: string) => (d: Machine.State["data"]) => ({ command: name, input: d.input, seen: Object.keys(d.results).sort() })
  const stepsOf = (prefix: string, shapes: ReadonlyArray<Shape>, decideAt: number | undefined) =>
    shapes.map((s, i) => ({
      name: `${prefix}${i}`,
      commands: names.slice(0, s.n).map((name) => ({
        name,
        channel: `ch-${name}`,
        type: `do-${name}`,
        data: dataOf(name),
        ...(s.timeoutMs === undefined ? {} : { timeoutMs: s.timeoutMs }),
        ...(s.maxAttempts === undefined ? {} : { maxAttempts: s.maxAttempts })
      })),
      ...(i === decideAt ? { decide: (d: Machine.State["data"]) => (d.input.toAlt === true ? "alt" : undefined) } : {})
    }))
  const workflowOf = (g: Generated): typeof workflow => {
    const stepNames = [...g.main.map((_, i) => `s${i}`), ...g.alt.map((_, i) => `alt${i}`)]
    return {
      name: "any",
      domain: "anything",
      steps: stepsOf("s", g.main, g.decideAt % g.main.length),
      // The branch's own first step decides too: only the main track's decisions count.
      branches: { alt: stepsOf("alt", g.alt, 0) },
      ...(g.compensations === undefined ? {} : { onDiscard: g.compensations.map((when, i) => ({ name: `undo-${i}`, channel: "ch-undo", type: "undo", data: (d: Machine.State["data"]) => ({ i, input: d.input }), ...(when === undefined ? {} : { when: () => when }) })) }),
      ...(g.replyAfter === undefined ? {} : { reply: { after: stepNames[g.replyAfter % stepNames.length]!, data: (d: Machine.State["data"]) => ({ replied: Object.keys(d.results).sort() }) } }),
      ...(g.summary ? { summary: (d: Machine.State["data"]) => ({ count: Object.keys(d.results).length }) } : {})
    } as unknown as typeof workflow
  }
  const resultsFor = (key: string) => [{ type: "done", data: { key } }]
  const announced = (type: string, data: Record<string, unknown> = {}) => ({ _tag: "Announce", type, data: { workflowId: "w", workflow: "any", ...data } })

  /** What the rules say the workflow does when every command is acknowledged: its effects, in order, and its outcome. */
  const model = (wf: typeof workflow, input: Record<string, unknown>, replyTo: string | undefined) => {
    const effects: Array<unknown> = [announced("workflow-started")]
    const results: Record<string, ReadonlyArray<{ type: string; data: unknown }>> = {}
    const data = () => ({ input, results: { ...results } })
    const label = (track: string, step: number, name: string) => `${track === "main" ? "" : `${track} `}${step + 1} (${name})`
    let track = "main"
    let step = 0
    for (;;) {
      const steps = track === "main" ? wf.steps : (wf.branches?.[track] ?? [])
      const spec = steps[step]
      if (spec === undefined) {
        const outcome = track === "main" ? "completed" : track
        effects.push(announced("workflow-completed", { outcome, ...(wf.summary?.(data()) ?? {}) }))
        return { effects, outcome }
      }
      for (const c of spec.commands) {
        const key = `${track}/${step + 1}/${c.name}`
        const command = { key, name: c.name, channel: c.channel, type: c.type, track, step, generation: 1, envelopeId: `w/${key}/1`, status: "sent", attempts: 1, maxAttempts: c.maxAttempts ?? defaults.maxAttempts, timeoutMs: c.timeoutMs ?? defaults.timeoutMs }
        effects.push({ _tag: "Send", command: expect.objectContaining(command), data: c.data(data()) })
      }
      for (const c of spec.commands) results[`${track}/${step + 1}/${c.name}`] = resultsFor(`${track}/${step + 1}/${c.name}`)
      effects.push(announced("workflow-step-completed", { step: label(track, step, spec.name), results: Object.fromEntries(spec.commands.map((c) => [c.name, results[`${track}/${step + 1}/${c.name}`]])) }))
      if (replyTo !== undefined && track === "main" && wf.reply?.after === spec.name) effects.push({ _tag: "Reply", topic: replyTo, data: wf.reply.data(data()) })
      const branch = track === "main" ? spec.decide?.(data()) : undefined
      if (branch === undefined) step++
      else [track, step] = [branch, 0]
    }
  }

  const start = (g: Generated, wf: typeof workflow) =>
    Machine.transition(wf, defaults, undefined, { _tag: "Start", id: "w", input: { toAlt: g.toAlt }, ...(g.replyTo ? { replyTo: "reply/me" } : {}) }, "t0")
  const sent = (state: Machine.State | undefined) => Object.values(state?.commands ?? {}).filter((c) => c.status === "sent")

  it("acknowledged in any order, with duplicates: the effects the rules give, in order, and the outcome (completed, or the branch)", () => {
    fc.assert(
      fc.property(shapes, (g) => {
        const wf = workflowOf(g)
        const expected = model(wf, { toAlt: g.toAlt }, g.replyTo ? "reply/me" : undefined)
        let t = start(g, wf)
        expect(t.state?.replyTo).toBe(g.replyTo ? "reply/me" : undefined)
        const effects = [...t.effects]
        const acked: Array<Machine.CommandState> = []
        for (let i = 0; t.state?.status === "running"; i++) {
          const open = sent(t.state)
          const c = open[g.order[i % g.order.length]! % open.length]!
          // Running: a restart, a discard, or a refusal or timeout of no envelope of it change nothing.
          for (const input of [{ _tag: "Restart" }, { _tag: "Discard", by: "x", reason: "y" }, { _tag: "Nack", envelopeId: "none", reason: "z" }, { _tag: "Timeout", envelopeId: "none", attempt: 1 }] as const)
            expect(Machine.transition(wf, defaults, t.state, input, "now"), input._tag).toEqual({ state: t.state, effects: [] })
          t = Machine.transition(wf, defaults, t.state, { _tag: "Ack", envelopeId: c.envelopeId, results: resultsFor(c.key) }, `t${i + 1}`)
          effects.push(...t.effects)
          acked.push(c)
          if (g.duplicates[i % g.duplicates.length]) {
            const again = acked[g.order[(i + 1) % g.order.length]! % acked.length]!
            expect(Machine.transition(wf, defaults, t.state, { _tag: "Ack", envelopeId: again.envelopeId, results: [] }, "later"), "a duplicate acknowledgement").toEqual({ state: t.state, effects: [] })
          }
        }
        expect(effects).toEqual(expected.effects)
        expect(t.state?.status).toBe(expected.outcome)
        expect(Machine.terminal(t.state!.status) && !Machine.kept(t.state!.status)).toBe(true)
        // Nothing moves a finished workflow.
        for (const input of [{ _tag: "Restart" }, { _tag: "Discard", by: "x", reason: "y" }, { _tag: "Nack", envelopeId: acked[0]?.envelopeId ?? "none", reason: "late" }] as const)
          expect(Machine.transition(wf, defaults, t.state, input, "later")).toEqual({ state: t.state, effects: [] })
      }),
      { numRuns: runs }
    )
  })

  it("a command failed (refused, or silent past its attempts) fails the workflow at its step, once; a restart sends it again with a new envelope and the workflow ends as if nothing failed", () => {
    fc.assert(
      fc.property(shapes, (g) => {
        const wf = workflowOf(g)
        const expected = model(wf, { toAlt: g.toAlt }, g.replyTo ? "reply/me" : undefined)
        let t = start(g, wf)
        const effects = [...t.effects]
        let failed = false
        for (let i = 0; t.state?.status === "running"; i++) {
          const open = sent(t.state)
          const c = open[g.order[i % g.order.length]! % open.length]!
          if (!failed && i === g.failAt % 8) {
            failed = true
            const step = Machine.stepLabel(wf, c.track, c.step)
            expect(step).toBe(`${c.track === "main" ? "" : "alt "}${c.step + 1} (${c.track === "main" ? "s" : "alt"}${c.step})`)
            // Silent: sent again, the same envelope, until its attempts run out; or refused.
            for (let attempt = 1; g.byTimeout && attempt < c.maxAttempts; attempt++) {
              t = Machine.transition(wf, defaults, t.state, { _tag: "Timeout", envelopeId: c.envelopeId, attempt }, "t")
              expect(t.effects).toEqual([{ _tag: "Send", command: { ...c, attempts: attempt + 1, sentAt: "t" }, data: dataOf(c.name)(t.state!.data) }])
            }
            const reason = g.byTimeout ? `no acknowledgement from ${c.channel} after ${c.maxAttempts} attempt(s) of ${c.timeoutMs} ms` : "refused"
            t = Machine.transition(wf, defaults, t.state, g.byTimeout ? { _tag: "Timeout", envelopeId: c.envelopeId, attempt: c.maxAttempts } : { _tag: "Nack", envelopeId: c.envelopeId, reason }, "t")
            expect(t.effects).toEqual([announced("workflow-failed", { step, command: c.name, reason })])
            expect(t.state).toMatchObject({ status: "failed", failure: { step, command: c.name, reason, at: "t" }, commands: { [c.key]: { status: "failed", error: reason, failedAt: "t" } } })
            // A sibling failing now is recorded; the first failure stands, nothing is announced.
            const sibling = sent(t.state)[0]
            if (sibling !== undefined) {
              const s = Machine.transition(wf, defaults, t.state, { _tag: "Nack", envelopeId: sibling.envelopeId, reason: "too" }, "t2")
              expect(s.effects).toEqual([])
              expect(s.state).toMatchObject({ status: "failed", failure: t.state!.failure, commands: { [sibling.key]: { status: "failed" } } })
            }
            // Acknowledgements and timeouts of the failed envelope change nothing.
            expect(Machine.transition(wf, defaults, t.state, { _tag: "Nack", envelopeId: c.envelopeId, reason: "again" }, "t3")).toEqual({ state: t.state, effects: [] })
            expect(Machine.transition(wf, defaults, t.state, { _tag: "Timeout", envelopeId: c.envelopeId, attempt: c.maxAttempts }, "t3")).toEqual({ state: t.state, effects: [] })
            // Given up on: its compensations (those whose `when` does not say no) are sent, once.
            const d = Machine.transition(wf, defaults, t.state, { _tag: "Discard", by: "olga", reason: "no" }, "t3")
            const compensated = (g.compensations ?? []).flatMap((when, i) => (when === false ? [] : [i]))
            expect(d.effects).toEqual([
              announced("workflow-discarded", { step, reason: "no", by: "olga" }),
              ...compensated.map((i) => ({ _tag: "Compensate", envelopeId: `w/discard/undo-${i}`, name: `undo-${i}`, channel: "ch-undo", type: "undo", data: { i, input: t.state!.data.input } }))
            ])
            expect(d.state?.discarded?.compensations).toEqual(compensated.map((i) => `undo-${i}`))
            if (g.lateAck) {
              // The failed command's acknowledgement arrives late: recorded, the workflow stays failed; a restart finds nothing to send again and moves on.
              const late = Machine.transition(wf, defaults, t.state, { _tag: "Ack", envelopeId: c.envelopeId, results: resultsFor(c.key) }, "t4")
              expect(late.effects).toEqual([])
              expect(late.state).toMatchObject({ status: "failed", commands: { [c.key]: { status: "acked" } } })
              const r = Machine.transition(wf, defaults, late.state, { _tag: "Restart", patch: { toAlt: g.toAlt } }, "t4")
              expect(r.effects[0]).toEqual(announced("workflow-restarted", { step, patched: true }))
              expect(r.effects.filter((e) => e._tag === "Send" && e.command.key === c.key)).toEqual([])
              t = { state: r.state, effects: r.effects.slice(1) }
              effects.push(...t.effects)
              continue
            }
            const r = Machine.transition(wf, defaults, t.state, { _tag: "Restart" }, "t4")
            const again = { ...c, generation: 2, envelopeId: `w/${c.key}/2`, attempts: 1, sentAt: "t4" }
            expect(r.effects).toEqual([announced("workflow-restarted", { step, patched: false }), { _tag: "Send", command: again, data: dataOf(c.name)(t.state!.data) }])
            expect(r.state).toMatchObject({ status: "running", commands: { [c.key]: again } })
            expect(r.state?.failure).toBeUndefined()
            // The old envelope's acknowledgement is late: it changes nothing.
            expect(Machine.transition(wf, defaults, r.state, { _tag: "Ack", envelopeId: c.envelopeId, results: [] }, "t5")).toEqual({ state: r.state, effects: [] })
            t = Machine.transition(wf, defaults, r.state, { _tag: "Ack", envelopeId: again.envelopeId, results: resultsFor(c.key) }, "t5")
          } else t = Machine.transition(wf, defaults, t.state, { _tag: "Ack", envelopeId: c.envelopeId, results: resultsFor(c.key) }, `t${i + 1}`)
          effects.push(...t.effects)
        }
        // Besides the failure and the restart (checked above, not collected): the effects of a run where nothing failed.
        expect(effects).toEqual(expected.effects)
        expect(t.state?.status).toBe(expected.outcome)
      }),
      { numRuns: runs }
    )
  })

  it("names steps, past the end too, and merges a restart's patch deeply (objects merge, anything else replaces)", () => {
    expect(Machine.stepLabel(workflow, "main", 0)).toBe("1 (create-order)")
    expect(Machine.stepLabel(workflow, "main", 99)).toBe("100 (end)")
    expect(Machine.stepLabel(workflow, "nowhere", 0)).toBe("nowhere 1 (end)")
    expect(Machine.kept("discarded")).toBe(true)
    // An input for no workflow (nothing started) changes nothing.
    for (const input of [{ _tag: "Ack", envelopeId: "x", results: [] }, { _tag: "Nack", envelopeId: "x", reason: "r" }, { _tag: "Timeout", envelopeId: "x", attempt: 1 }, { _tag: "Restart" }] as const)
      expect(Machine.transition(workflow, defaults, undefined, input, "t")).toEqual({ state: undefined, effects: [] })
    for (const s of ["running", "failed", "completed", "denied"]) expect(Machine.kept(s), s).toBe(false)
    const base = { a: { b: 1, c: 2 }, d: [1, 2], e: 1, f: { g: 1 }, h: { i: 1 }, keep: "k" }
    const copy = structuredClone(base)
    expect(Machine.merge(base, { a: { b: 3 }, d: { 0: 9 }, e: { x: 1 }, f: null, h: [1] })).toEqual({ a: { b: 3, c: 2 }, d: { 0: 9 }, e: { x: 1 }, f: null, h: [1], keep: "k" })
    expect(Machine.merge(base, {})).toEqual(base)
    expect(base, "the base is not changed").toEqual(copy)
  })
})
