/**
 * A domain mediator connected to its channels (`Domain.connect`) runs a command whose channel can
 * run it at once inside the input's transaction and applies its acknowledgement there (a chain of
 * steps as one input). This checks that this changes nothing of what happens: for random workflows
 * (commands on a few channels, several to one channel in a step, failures), channels that refuse
 * at random (busy, a handler that fails and rolls back its savepoint), channels never called (their
 * processor has a `prepare`) and any interleaving of the
 * queues, each command is handled once, each channel takes each workflow's commands in the order
 * the queued mediator sends them, and every workflow ends as it does with every command queued.
 */
import { afterEach, describe, expect, it } from "vitest"
import fc from "fast-check"
import { Effect } from "effect"
import { Log, Topics, type Envelope, type Workflow } from "@baton/core"
import { Sqlite } from "@baton/store"
import { Mediator, WorkflowStore } from "@baton/mediator"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 4) * 25

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

const channels = ["a", "b", "c"] as const

interface Plan {
  /** Per workflow: its steps, each a list of channels (a command per entry, several may share one). */
  readonly workflows: ReadonlyArray<ReadonlyArray<ReadonlyArray<number>>>
  /** Per command (by a hash of its id), whether its handler fails (it is then refused inline and nacked from the queue). */
  readonly fails: ReadonlyArray<boolean>
  /** Per command, whether its channel refuses to run it at once (busy). */
  readonly busy: ReadonlyArray<boolean>
  /** Per channel, whether its processor has a `prepare` (one that only reads): never called (`Consumer.call` absent), every command to it queued. */
  readonly prepared: ReadonlyArray<boolean>
  /** Which queue runs next (modulo the queues that hold something), and how many of a workflow's waiting inputs run together. */
  readonly picks: ReadonlyArray<number>
}

const workflowOf = (i: number, steps: ReadonlyArray<ReadonlyArray<number>>): Workflow.Workflow => ({
  name: `w${i}`,
  domain: "test",
  steps: steps.map((cs, s) => ({
    name: `s${s}`,
    commands: cs.map((c, n) => ({ name: `c${n}`, channel: channels[c]!, type: `do-${channels[c]}`, data: (d) => ({ step: s, seen: Object.keys(d.results).length }) }))
  }))
})

const queue = Topics.mediator("test")

/** Runs a plan on a mediator, connected to its channels (`inline`) or not; what the channels did and how each workflow ended. */
const play = async (plan: Plan, inline: boolean) => {
  const store = await Sqlite.open({ path: ":memory:" })
  cleanups.push(() => store.close())
  await store.transaction(store.query("CREATE TABLE handled (seq INTEGER PRIMARY KEY, channel TEXT NOT NULL, key TEXT NOT NULL, command TEXT NOT NULL)").run())
  const record = store.query("INSERT INTO handled (channel, key, command) VALUES (?, ?, ?)")
  const workflows = plan.workflows.map((steps, i) => workflowOf(i, steps))
  const domain = Mediator.domain({ domain: "test", workflows, store: await WorkflowStore.inStore(store), defaults: { timeoutMs: 600_000, maxAttempts: 1 }, logger: Log.silent, now: () => new Date(0) })
  cleanups.push(() => domain.close())
  const p = domain.processor
  /** Each command's plan, by its envelope id (the same in both modes, whatever the order commands are sent in). */
  const numberOf = (id: string) => {
    let h = 7
    for (let i = 0; i < id.length; i++) h = (h * 31 + id.charCodeAt(i)) >>> 0
    return h
  }
  const fails = (id: string) => plan.fails[numberOf(id) % Math.max(1, plan.fails.length)] === true
  const busy = (id: string) => plan.busy[numberOf(id) % Math.max(1, plan.busy.length)] === true
  const inputs: Array<Envelope.Envelope> = []
  const waiting = new Map<string, Array<Envelope.Envelope>>(channels.map((c) => [c, []]))
  const ended: Record<string, string> = {}
  let seq = 0
  const answer = (command: Envelope.Envelope): Envelope.Envelope => ({
    id: `${command.id}/answer`,
    type: fails(command.id) ? Mediator.messages.failed : Mediator.messages.acked,
    key: command.key,
    correlationId: command.correlationId,
    causationId: command.id,
    occurredAt: new Date(0).toISOString(),
    data: fails(command.id) ? { commandId: command.id, reason: "no" } : { commandId: command.id, results: [{ type: `${command.type}-done`, data: { n: numberOf(command.id) } }] }
  })
  const routed = (out: ReadonlyArray<Envelope.Next>) => {
    for (const next of out) {
      if (next.topic?.startsWith("baton/channel/") === true) {
        waiting.get(next.topic.slice("baton/channel/".length))!.push({ id: next.id!, type: next.type, key: next.key!, correlationId: next.key!, causationId: next.key!, occurredAt: "", ...(next.replyTo === undefined ? {} : { replyTo: next.replyTo }), data: next.data })
      } else if (next.type === "workflow-completed" || next.type === "workflow-failed") ended[next.key!] = next.type
    }
  }
  if (inline)
    domain.connect((channel) => (plan.prepared[channels.indexOf(channel as (typeof channels)[number])] === true ? undefined : (command) => {
      // A channel with messages queued, a busy one or one whose handler fails (its savepoint rolled back) runs nothing now.
      if (waiting.get(channel)!.length > 0 || busy(command.id) || fails(command.id)) return busy(command.id) ? undefined : Effect.succeed(undefined)
      return Effect.as(record.run(channel, command.key, command.id), { answers: [{ type: Mediator.messages.acked, topic: queue, key: command.key, data: answer(command).data }], traceparent: "", committed: () => {} })
    }))
  for (const [i] of plan.workflows.entries())
    inputs.push({ id: `wf${i}`, type: Mediator.messages.start, key: `wf${i}`, correlationId: `wf${i}`, causationId: `wf${i}`, occurredAt: "", data: { workflow: `w${i}`, input: {} } })
  const batch = p.batch!
  for (let step = 0; step < 10_000; step++) {
    const ready = [...(inputs.length > 0 ? ["mediator"] : []), ...channels.filter((c) => waiting.get(c)!.length > 0)]
    if (ready.length === 0) break
    const pick = plan.picks[step % Math.max(1, plan.picks.length)] ?? 0
    const which = ready[pick % ready.length]!
    if (which === "mediator") {
      // A run of the first input's workflow's waiting inputs (as the runtime's `batch`), or one alone.
      const first = inputs[0]!
      const run = inputs.filter((e) => e.key === first.key).slice(0, 1 + (pick % 3))
      for (const e of run) inputs.splice(inputs.indexOf(e), 1)
      if (run.length === 1) {
        const prepared = await Effect.runPromise(p.prepare!(first))
        routed(await store.transaction(p.handle(first, prepared)))
        await p.committed?.(first, prepared)
      } else {
        const prepared = await Effect.runPromise(batch.prepare(run))
        for (const out of await store.transaction(batch.handle(run, prepared))) routed(out)
        await batch.committed?.(run, prepared)
      }
    } else {
      const command = waiting.get(which)!.shift()!
      await store.transaction(record.run(which, command.key, command.id))
      inputs.push(answer(command))
    }
    seq++
  }
  const handled = await store.run(store.query("SELECT channel, key, command FROM handled ORDER BY seq").all())
  const byChannelAndKey: Record<string, Array<string>> = {}
  for (const h of handled) (byChannelAndKey[`${String(h.channel)} ${String(h.key)}`] ??= []).push(String(h.command))
  const stored = await store.run(store.query("SELECT id, status FROM workflows ORDER BY id").all())
  return { byChannelAndKey, commands: handled.map((h) => String(h.command)), ended, stored, inputsLeft: inputs.length, steps: seq }
}

const planArb: fc.Arbitrary<Plan> = fc.record({
  workflows: fc.array(fc.array(fc.array(fc.integer({ min: 0, max: channels.length - 1 }), { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 4 }),
  fails: fc.array(fc.nat(11).map((n) => n === 0), { minLength: 1, maxLength: 30 }),
  busy: fc.array(fc.boolean(), { minLength: 1, maxLength: 30 }),
  prepared: fc.array(fc.nat(3).map((n) => n === 0), { minLength: channels.length, maxLength: channels.length }),
  picks: fc.array(fc.nat(50), { minLength: 1, maxLength: 40 })
})

describe("a domain mediator running commands in its input's transaction", () => {
  it("for random workflows, refusals and interleavings: each command handled once, each channel's commands of a workflow in the queued order, every workflow ending as with every command queued", async () => {
    await fc.assert(
      fc.asyncProperty(planArb, async (plan) => {
        const queued = await play(plan, false)
        const chained = await play(plan, true)
        expect(new Set(chained.commands).size).toBe(chained.commands.length)
        expect(chained.byChannelAndKey).toEqual(queued.byChannelAndKey)
        expect(chained.ended).toEqual(queued.ended)
        expect(chained.stored).toEqual(queued.stored)
        expect(chained.inputsLeft).toBe(0)
      }),
      { numRuns: runs }
    )
  })
})
