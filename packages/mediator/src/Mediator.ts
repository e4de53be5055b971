/**
 * The mediator topology's moving parts as processors, so that the runtime hosts them like any
 * other: each is a pool of supervised actors over a durable inbox (its queue).
 *
 * - `simple`: classifies an initiating event by the declared rule table and handles a simple one
 *   itself (one command) or delegates it to its domain mediator. On one instance alone it gets only
 *   the simple rules' events: the domain mediators take their workflows' events directly (`initiating`).
 * - `domain`: one per domain (`order`, `customer`): runs the workflows of that domain with the pure
 *   state machine, keeps their state in the workflow store, sends commands to processor channels
 *   and announces progress on `events/`. Acknowledgements, timeouts and restarts all arrive on its
 *   queue, keyed by workflow id, so one workflow's inputs are applied one at a time.
 * - `channel`: wraps a business processor (the same one the broker topology runs) so that it takes
 *   commands from its channel and acknowledges to the mediator instead of announcing its work.
 */
import { randomUUID } from "node:crypto"
import { Conflict, Envelope, Log, NotFound, Rejected, Topics, type Batch, type Processor, type Workflow as W } from "@baton/core"
import { Effect } from "effect"
import { SqlError, type SqlClient } from "effect/sql"

type Result = W.Result
type Rule = W.Rule
type Workflow = W.Workflow
import * as Machine from "./Machine.ts"
import type { Saved, WorkflowStore } from "./WorkflowStore.ts"

/**
 * The actors of a domain mediator and of each channel, at least: the inputs of different workflows
 * that run at once, and so share a group commit.
 */
const mediatorActors = 16

/** Message types on a mediator's queue. */
export const messages = {
  start: "start-workflow",
  acked: "command-acked",
  failed: "command-failed",
  timedOut: "command-timed-out",
  restart: "restart-workflow",
  discard: "discard-workflow"
} as const

/** The version a command's data follows, for its envelope (absent is 1). */
const versionOf = (c: { readonly version?: number }): { readonly version?: number } => (c.version === undefined ? {} : { version: c.version })

/** A business processor on its command channel: acknowledges with its results, or fails the command. */
export const channel = <P>(p: Processor<P>): Processor<P> => ({
  name: p.name,
  consumes: [],
  topics: [Topics.channel(p.name)],
  actors: Math.max(p.actors ?? 0, mediatorActors),
  ...(p.prepare === undefined ? {} : { prepare: (event: Envelope.Envelope) => p.prepare!(event) }),
  ...(p.prepareReadsOnly === undefined ? {} : { prepareReadsOnly: p.prepareReadsOnly }),
  ...(p.ownRows === undefined ? {} : { ownRows: p.ownRows }),
  handle: (event, prepared) =>
    Effect.map(p.handle(event, prepared), (results): ReadonlyArray<Envelope.Next> => {
      // A command without a reply address (a simple event's) announces its work like in the broker topology.
      if (event.replyTo === undefined) return results
      const data: { commandId: string; results: ReadonlyArray<Result> } = { commandId: event.id, results: results.map((r) => ({ type: r.type, ...versionOf(r), data: r.data })) }
      return [{ type: messages.acked, topic: event.replyTo, key: event.key, data }]
    }),
  failed: (event, reason) => (event.replyTo === undefined ? [] : [{ type: messages.failed, topic: event.replyTo, key: event.key, data: { commandId: event.id, reason } }])
})

/**
 * The simple mediator: classifies each initiating event by the rule table. It takes the events of
 * `consumes` (all the rules' by default; one instance alone, only the simple rules': the domain
 * mediators take the others directly) and still delegates any rule's event in its inbox (one left
 * there by a version before that).
 */
export const simple = (rules: ReadonlyArray<Rule>, workflows: ReadonlyArray<Workflow>, consumes: ReadonlyArray<string> = rules.map((r) => r.type)): Processor => {
  for (const rule of rules)
    if (rule.kind !== "simple" && !workflows.some((w) => w.name === rule.workflow)) throw new Error(`rule for ${rule.type} names an unknown workflow ${rule.workflow}`)
  return {
    name: "simple-mediator",
    consumes,
    handle: (event) => {
      const rule = rules.find((r) => r.type === event.type)
      if (rule === undefined) return Effect.fail(new Rejected(`no mediation rule for ${event.type}`))
      if (rule.kind === "simple") return Effect.succeed([{ id: `${event.id}/command`, type: rule.command.type, topic: Topics.channel(rule.command.channel), ...versionOf(rule.command), data: event.data }])
      const workflow = workflows.find((w) => w.name === rule.workflow)!
      const data = { workflow: workflow.name, input: event.data, ...(event.replyTo === undefined ? {} : { replyTo: event.replyTo }) }
      // The workflow's id is the initiating event's id; its events carry it as their correlation id.
      return Effect.succeed([{ id: `${event.id}/start`, type: messages.start, topic: Topics.mediator(workflow.domain), key: event.id, correlationId: event.id, data }])
    }
  }
}


/**
 * A channel's processor run inside the mediator's transaction (the runtime's `Consumer.call`): its
 * inbox row written done with its effects, and its acknowledgement given back instead of queued.
 * Undefined (asked before anything is written), or an outcome of undefined (it did not run and
 * wrote nothing), when it cannot run so now: the command is then sent as any other.
 */
export type Call = (
  command: Envelope.Envelope,
  topic: string,
  payload: string
) => Effect.Effect<{ readonly answers: ReadonlyArray<Envelope.Next>; readonly traceparent: string; readonly committed: () => void } | undefined, unknown, SqlClient.SqlClient> | undefined

export interface Domain {
  readonly domain: string
  readonly processor: Processor<Saved | undefined>
  /** How timeouts and restarts enter the queue: committed to the inbox, then run; resolves when applied. */
  readonly attach: (enqueue: (event: Envelope.Envelope) => Promise<void>) => void
  /** How a command runs on its channel inside the input's transaction (see `Call`), by channel name; not connected, every command is queued. */
  readonly connect: (callOf: (channel: string) => Call | undefined) => void
  /**
   * After a start or a hand-over: re-arms the command timeouts of workflows in flight (those `owns`
   * accepts: in a cluster, the workflows of the partitions this instance just acquired). Returns
   * the workflows in flight.
   */
  readonly recover: (owns?: (workflowId: string) => boolean) => Promise<number>
  /** Resumes a failed workflow at its failed step, with its input patched. */
  readonly restart: (id: string, patch: Readonly<Record<string, unknown>> | undefined) => Promise<Saved | undefined>
  /** Gives up on a failed workflow: it ends `discarded`, kept with who and why, and cannot be restarted. */
  readonly discard: (id: string, reason: string, by: string) => Promise<Saved>
  readonly close: () => void
}

const inputOf = (event: Envelope.Envelope, initiating: boolean): Machine.Input | undefined => {
  // An initiating event taken directly (no simple mediator before it): it starts the workflow it names, whose id is its own.
  if (initiating) return { _tag: "Start", id: event.id, input: (event.data ?? {}) as Record<string, unknown>, ...(event.replyTo === undefined ? {} : { replyTo: event.replyTo }) }
  const d = event.data as Record<string, unknown>
  switch (event.type) {
    case messages.start:
      return {
        _tag: "Start",
        id: event.key,
        input: (d.input ?? {}) as Record<string, unknown>,
        ...(typeof d.replyTo === "string" ? { replyTo: d.replyTo } : {})
      }
    case messages.acked:
      return { _tag: "Ack", envelopeId: String(d.commandId), results: (d.results ?? []) as ReadonlyArray<Result> }
    case messages.failed:
      return { _tag: "Nack", envelopeId: String(d.commandId), reason: String(d.reason) }
    case messages.timedOut:
      return { _tag: "Timeout", envelopeId: String(d.commandId), attempt: Number(d.attempt) }
    case messages.restart:
      return { _tag: "Restart", ...(d.patch === undefined ? {} : { patch: d.patch as Record<string, unknown> }) }
    case messages.discard:
      return { _tag: "Discard", by: String(d.by), reason: String(d.reason) }
    default:
      return undefined
  }
}

/** What `chain` gives. */
interface Chained {
  readonly out: ReadonlyArray<Envelope.Next>
  readonly last: Saved
  readonly effects: ReadonlyArray<Machine.Effect>
  readonly committed: ReadonlyArray<() => void>
}

/** Workflows whose state a domain mediator keeps in memory at most. */
const maxCached = 10_000

export const domain = (options: {
  readonly domain: string
  readonly workflows: ReadonlyArray<Workflow>
  readonly store: WorkflowStore
  readonly defaults: Machine.Defaults
  readonly logger: Log.Logger
  readonly now?: () => Date
  /** Test hook: called before each input; a throw crashes the mediator. */
  readonly fault?: () => void
  /**
   * Keep the committed state of the workflows in flight in memory, so that an input's transition
   * starts from it instead of reading and parsing the stored row (default on). Each write asserts
   * the stored row's version is the one the transition started from: in a cluster, where another
   * instance may have moved a workflow meanwhile (its partition handed over and back), a stale
   * copy fails the write as a conflict, is dropped, and the input runs again from the store.
   */
  readonly cache?: boolean
  /**
   * Rules of this domain (hard or complex) whose initiating events it takes itself, from their `accepted/`
   * topics, instead of a `start-workflow` from the simple mediator (one message and transaction a
   * workflow fewer). Such an event is keyed by its contract's key (a customer's), not by the
   * workflow's id: it is always its workflow's first input, and the inputs after it (keyed by the
   * workflow's id) exist only once it has committed. Only for one instance alone: in a cluster
   * the instance owning the event's key would run the workflow's first step (and arm its command
   * timeouts) while another owns the workflow.
   */
  readonly initiating?: ReadonlyArray<Rule>
}): Domain => {
  const { store, defaults, logger } = options
  const now = options.now ?? (() => new Date())
  const name = `${options.domain}-mediator`
  const queue = Topics.mediator(options.domain)
  const timers = new Map<string, NodeJS.Timeout>()
  let enqueue: ((event: Envelope.Envelope) => Promise<void>) | undefined
  /**
   * The state of each workflow in flight as its last input's transaction committed it (set only
   * after the commit: a rolled-back or retried input leaves it as it was). Inputs of one workflow
   * run one at a time, so the next one starts from here; a miss reads the store.
   */
  const cache = (options.cache ?? true) ? new Map<string, Saved>() : undefined
  /** Workflows whose last write found the stored row moved: their next input reads it. */
  const conflicted = new Set<string>()
  const cached = (state: Saved) => {
    if (cache === undefined) return
    cache.delete(state.id)
    if (Machine.terminal(state.status)) return
    cache.set(state.id, state)
    // Bounded (failed workflows stay until an operator acts): the least recently changed goes.
    if (cache.size > maxCached) cache.delete(cache.keys().next().value!)
  }
  const specOf = (workflow: string) => options.workflows.find((w) => w.name === workflow)
  /** The workflow each directly taken initiating type starts. */
  const starts = new Map<string, string>()
  for (const rule of options.initiating ?? []) {
    if (rule.kind === "simple" || specOf(rule.workflow) === undefined) throw new Error(`${name} cannot start ${rule.type}: no workflow of its domain named ${rule.kind === "simple" ? "(a simple rule)" : rule.workflow}`)
    starts.set(rule.type, rule.workflow)
  }
  /** The workflow an input is for: an initiating event's own id, else the input's key. */
  const workflowOf = (event: Envelope.Envelope): string => (starts.has(event.type) ? event.id : event.key)

  const message = (id: string, type: string, workflowId: string, causationId: string, data: unknown): Envelope.Envelope => ({
    id,
    type,
    key: workflowId,
    correlationId: workflowId,
    causationId,
    occurredAt: now().toISOString(),
    data
  })

  const arm = (workflowId: string, command: Machine.CommandState) => {
    clearTimeout(timers.get(command.envelopeId))
    const delay = Math.max(0, Date.parse(command.sentAt) + command.timeoutMs - now().getTime())
    const timer = setTimeout(() => {
      timers.delete(command.envelopeId)
      const data = { commandId: command.envelopeId, attempt: command.attempts }
      void enqueue?.(message(`${command.envelopeId}/timeout/${command.attempts}`, messages.timedOut, workflowId, command.envelopeId, data)).catch((error: unknown) =>
        logger.log("error", "command timeout not queued", { mediator: name, command: command.envelopeId, reason: Log.reason(error) })
      )
    }, delay)
    timer.unref()
    timers.set(command.envelopeId, timer)
  }

  const disarm = (state: Machine.State) => {
    for (const c of Object.values(state.commands)) {
      // A finished workflow (a discarded one with siblings still in flight) waits for nothing.
      if (c.status === "sent" && !Machine.terminal(state.status)) continue
      clearTimeout(timers.get(c.envelopeId))
      timers.delete(c.envelopeId)
    }
  }

  /**
   * The workflow's state for an input, and whether it was read from the store (else it is this
   * mediator's copy, or assumed: to be checked by the write). `read`: from the store.
   */
  const current = async (event: Envelope.Envelope, read = false): Promise<readonly [Saved | undefined, boolean]> => {
    const id = workflowOf(event)
    const copy = read ? undefined : cache?.get(id)
    if (copy !== undefined) return [copy, false]
    if (read || cache === undefined || conflicted.delete(id)) return [await store.load(id), true]
    // A start is for a workflow not stored yet (a repeated one's write finds the row: a conflict,
    // and it runs again from the store), so it reads nothing first.
    return starts.has(event.type) || event.type === messages.start ? [undefined, false] : [await store.load(id), true]
  }

  /** The next state for an input (undefined when it changes nothing), from the state before it. */
  const transition = (before: Saved | undefined, event: Envelope.Envelope): Saved | undefined => {
    options.fault?.()
    const started = starts.get(event.type)
    const input = inputOf(event, started !== undefined)
    if (input === undefined) throw new Rejected(`${name} does not understand ${event.type}`)
    const spec = specOf(started ?? (input._tag === "Start" ? String((event.data as { workflow?: unknown }).workflow) : (before?.workflow ?? "")))
    if (spec === undefined) {
      if (before === undefined) return undefined // an input for a workflow that has finished
      throw new Rejected(`${name} has no workflow named ${before.workflow}`)
    }
    const t = Machine.transition(spec, defaults, before, input, now().toISOString())
    if (t.state === undefined || (t.state === before && t.effects.length === 0)) return undefined
    return { ...t.state, lastInput: event.id, lastEffects: t.effects, version: (before?.version ?? 0) + 1 } satisfies Saved
  }

  /** What a new state sends and announces. */
  const outgoing = (event: Envelope.Envelope, saved: Saved): ReadonlyArray<Envelope.Next> =>
    saved.lastEffects.map((effect, i): Envelope.Next => {
      const of = { key: saved.id, correlationId: saved.id }
      switch (effect._tag) {
        case "Send":
          return { ...of, id: effect.command.envelopeId, type: effect.command.type, topic: Topics.channel(effect.command.channel), replyTo: queue, ...versionOf(effect.command), data: effect.data }
        case "Compensate":
          // No reply address: the processor announces its work on `events/`, and the mediator waits for nothing.
          return { ...of, id: effect.envelopeId, type: effect.type, topic: Topics.channel(effect.channel), causationId: saved.id, ...versionOf(effect), data: effect.data }
        case "Reply":
          return { ...of, id: `${event.id}/${i}`, type: "reply", topic: effect.topic, causationId: saved.id, data: effect.data }
        case "Announce":
          return { ...of, id: `${event.id}/${i}`, type: effect.type, data: effect.data }
      }
    })

  /** After the commit of a new state: kept in memory, and the timeouts of the commands it still waits for armed. */
  const settled = (saved: Saved, sends: ReadonlyArray<Machine.Effect>) => {
    cached(saved)
    disarm(saved)
    if (Machine.terminal(saved.status)) return
    for (const effect of sends) {
      if (effect._tag !== "Send") continue
      const command = saved.commands[effect.command.key]
      // (In a run, a later input of it may have acknowledged it already.)
      if (command?.status === "sent" && command.envelopeId === effect.command.envelopeId) arm(saved.id, command)
    }
  }

  /**
   * In the input's transaction: the state written (or a finished workflow's removed), if the stored
   * row is still the one it was computed from. Otherwise another instance moved the workflow (this
   * one's copy is stale): the copy is dropped and the transaction fails as a lost conflict, run
   * again from the stored state.
   */
  const write = (saved: Saved, expected = (saved.version ?? 1) - 1) =>
    Effect.flatMap(Machine.terminal(saved.status) && !Machine.kept(saved.status) ? store.remove(saved, expected) : store.save(saved, expected), (written) => {
      if (written) return Effect.void
      cache?.delete(saved.id)
      conflicted.add(saved.id)
      const message = `workflow ${saved.id} was moved by another writer since version ${expected} was read`
      return Effect.fail(new SqlError.SqlError({ reason: new SqlError.SerializationError({ message, operation: "write workflow", cause: undefined }) }))
    })

  /** See `Domain.connect`. */
  let callOf: ((channel: string) => Call | undefined) | undefined
  const calls = new Map<string, Call | undefined>()
  const callFor = (channel: string): Call | undefined => {
    if (!calls.has(channel)) calls.set(channel, callOf?.(channel))
    return calls.get(channel)
  }
  /** Whether a new state sends a command that its channel may run at once (else it goes out as it is, no `chain`). */
  const chainable = (saved: Saved): boolean => callOf !== undefined && saved.lastEffects.some((e) => e._tag === "Send" && callFor(e.command.channel) !== undefined)
  /** Envelopes as the runtime makes them of what a handler announces (a command's id is its own). */
  const clock: Envelope.Clock = { now, newId: Envelope.systemClock.newId }

  /**
   * In an input's transaction, from the new state it made (`saved`): each command that state
   * sends whose channel can run it now (`Call`) runs here, and its acknowledgement is applied at
   * once as the next input (acknowledgements in the order they come, as from the queue), whose
   * commands may run so in turn. A chain of steps thus commits as one input: the state written
   * once, the acknowledgements never queued, no transaction of their own. A command whose
   * channel cannot run it now is sent as always, and so is every later message of the chain to
   * that channel (`queued`: the channels with a message of this transaction queued), so that a
   * channel takes a workflow's messages in the order they were sent. Gives what goes out (the
   * effects of every state of the chain, in order), the last state, the effects of them all
   * (to arm timeouts by) and what to run once committed.
   */
  const chain = Effect.fnUntraced(function* (event: Envelope.Envelope, saved: Saved, queued: Set<string>) {
    const out: Array<Envelope.Next> = []
    const effects: Array<Machine.Effect> = []
    const committed: Array<() => void> = []
    const acks: Array<Envelope.Envelope> = []
    let state = saved
    for (let input = event; ; ) {
      const nexts = outgoing(input, state)
      for (const [i, effect] of state.lastEffects.entries()) {
        const next = nexts[i]!
        effects.push(effect)
        if (effect._tag !== "Send" && effect._tag !== "Compensate") {
          out.push(next)
          continue
        }
        const channel = effect._tag === "Send" ? effect.command.channel : effect.channel
        const call = effect._tag === "Send" && !queued.has(channel) ? callFor(channel) : undefined
        if (call !== undefined) {
          // Its cause and span are those of the input's sender (the chain's acknowledgements are
          // never stored, and the mediator's own span is not known here): in a flow's causation
          // tree and in its trace it hangs beside the input, under what sent it.
          const command = Envelope.next(input, { ...next, causationId: input.causationId }, clock)
          const run = call(command, next.topic!, Envelope.encode(command))
          const called = run === undefined ? undefined : yield* run
          if (called !== undefined) {
            committed.push(called.committed)
            for (const answer of called.answers) acks.push(Envelope.next(command, answer, clock, called.traceparent))
            continue
          }
        }
        queued.add(channel)
        out.push(next)
      }
      // The next acknowledgement that moves the workflow (one that changes nothing is dropped, as from the queue).
      let moved: Saved | undefined
      while (moved === undefined && acks.length > 0) {
        input = acks.shift()!
        const ack = input
        moved = yield* Effect.try({ try: () => transition(state, ack), catch: (error) => error })
      }
      if (moved === undefined) return { out, last: state, effects, committed }
      state = moved
    }
  })

  /** What an input's transaction left for after its commit, by its prepared value: the chains it ran (see `chain`). */
  const chains = new WeakMap<object, ReadonlyArray<Chained>>()

  /** Of each workflow in a run, its last new state: the one written, in the order they were last moved. */
  const lastOfEach = (steps: ReadonlyArray<Saved | undefined>): ReadonlyArray<Saved> => {
    const last = new Map<string, Saved>()
    for (const s of steps) {
      if (s === undefined) continue
      last.delete(s.id)
      last.set(s.id, s)
    }
    return [...last.values()]
  }

  /**
   * A run of one key's waiting inputs (the acknowledgements of a step, come together; or initiating
   * events of one key, each a workflow of its own): each input's transition from the state its
   * workflow's input before it left, as one at a time would give; each workflow's last state
   * written once, each input's effects announced as its own.
   */
  const batch: Batch<{ readonly steps: ReadonlyArray<Saved | undefined>; readonly stored: ReadonlyMap<string, number>; readonly unchecked: boolean }> = {
    max: 16,
    prepare: (events) =>
      Effect.tryPromise({
        try: async () => {
          const transitions = async (read: boolean) => {
            const states = new Map<string, Saved | undefined>()
            const steps: Array<Saved | undefined> = []
            /** Of each workflow, the version stored before the run (its last state's write expects it). */
            const stored = new Map<string, number>()
            let unchecked = false
            for (const event of events) {
              const id = workflowOf(event)
              let before = states.get(id)
              if (!states.has(id)) {
                const [state, checked] = await current(event, read)
                before = state
                stored.set(id, before?.version ?? 0)
                unchecked ||= !checked
              }
              const next = transition(before, event)
              states.set(id, next ?? before)
              steps.push(next)
            }
            return { steps, stored, unchecked }
          }
          const run = await transitions(false)
          // An input that changes nothing writes nothing to check its copy by: such a run is computed again from the store.
          return run.unchecked && run.steps.includes(undefined) ? transitions(true) : run
        },
        catch: (error) => error
      }),
    handle: (events, prepared) => {
      const { steps, stored } = prepared
      const announced = events.map((event, i) => (steps[i] === undefined ? [] : outgoing(event, steps[i])))
      const last = lastOfEach(steps)
      if (last.length === 0) return Effect.succeed(announced)
      const written = (s: Saved) => write(s, stored.get(s.id))
      if (!last.some(chainable)) return Effect.as(last.length === 1 ? written(last[0]!) : Effect.forEach(last, written, { discard: true }), announced)
      // Each workflow's last state runs its chain; the commands of its states before it are queued already.
      const chained = (s: Saved) => {
        const at = steps.lastIndexOf(s)
        const queued = new Set<string>()
        for (const before of steps.slice(0, at)) if (before?.id === s.id) for (const e of before.lastEffects) if (e._tag === "Send" || e._tag === "Compensate") queued.add(e._tag === "Send" ? e.command.channel : e.channel)
        return Effect.flatMap(chain(events[at]!, s, queued), (c) => {
          announced[at] = c.out
          return Effect.as(write(c.last, stored.get(s.id)), c)
        })
      }
      return Effect.map(Effect.forEach(last, chained), (cs) => {
        chains.set(prepared, cs)
        return announced
      })
    },
    committed: (_events, prepared) => {
      const { steps } = prepared
      const cs = chains.get(prepared)
      chains.delete(prepared)
      for (const last of lastOfEach(steps)) {
        const c = cs?.find((c) => c.last.id === last.id)
        settled(c?.last ?? last, [...steps.flatMap((s) => (s?.id === last.id ? s.lastEffects : [])), ...(c?.effects ?? [])])
        for (const f of c?.committed ?? []) f()
      }
    }
  }

  const processor: Processor<Saved | undefined> = {
    name,
    consumes: [],
    topics: [queue, ...[...starts.keys()].map(Topics.accepted)],
    // Ten inputs a workflow of five steps, each in a transaction: with more of them in flight, more
    // share each commit (a group commit on SQLite; side by side on PostgreSQL's pool).
    actors: mediatorActors,
    // Outside the transaction: the state as it is (inputs of one workflow run one at a time), and
    // the transition, whose result `handle` writes in the input's transaction.
    prepare: (event) =>
      Effect.tryPromise({
        try: async () => {
          const [before, checked] = await current(event)
          const next = transition(before, event)
          // It changes nothing, so no write checks the copy it started from: it is computed again from the store.
          return next !== undefined || checked ? next : transition((await current(event, true))[0], event)
        },
        catch: (error) => error
      }),
    // It only reads the workflow's state and computes the transition.
    prepareReadsOnly: true,
    // Its transaction locks only rows of its message's own: its inbox row, its workflow's row (the
    // message's key, whose messages run one at a time) and the rows of what it sends: on
    // PostgreSQL a group commit holds several of its messages (of different workflows) at once.
    ownRows: true,
    handle: (event, saved) => {
      if (saved === undefined) return Effect.succeed([])
      // In the input's own transaction, with the effects below and the input's `done` mark. A
      // finished workflow is announced by these effects, and nothing is kept for it but a discarded one.
      if (!chainable(saved)) return Effect.as(write(saved), outgoing(event, saved))
      return Effect.flatMap(chain(event, saved, new Set()), (c) => {
        chains.set(saved, [c])
        return Effect.as(write(c.last, (saved.version ?? 1) - 1), c.out)
      })
    },
    committed: async (_event, saved) => {
      if (saved === undefined) return
      const c = chains.get(saved)?.[0]
      chains.delete(saved)
      settled(c?.last ?? saved, c?.effects ?? saved.lastEffects)
      for (const f of c?.committed ?? []) f()
    },
    batch
  }

  return {
    domain: options.domain,
    processor,
    attach: (f) => {
      enqueue = f
    },
    connect: (f) => {
      callOf = f
      calls.clear()
    },
    recover: async (owns) => {
      // Workflows of partitions just acquired: another instance may have moved them since this one held them.
      if (owns !== undefined) for (const id of [...(cache?.keys() ?? [])]) if (owns(id)) cache?.delete(id)
      let inFlight = 0
      for (const state of await store.list({ domain: options.domain, limit: 1_000_000 })) {
        if (owns !== undefined && !owns(state.id)) continue
        // (A finished workflow's state is deleted in the transaction that ends it.)
        if (Machine.terminal(state.status)) continue
        inFlight++
        if (state.status === "running") for (const c of Object.values(state.commands)) if (c.status === "sent") arm(state.id, c)
      }
      return inFlight
    },
    restart: async (id, patch) => {
      const state = await store.load(id)
      if (state === undefined) throw new NotFound(`no workflow ${id} (finished workflows are deleted once their outcome is announced)`)
      if (state.status !== "failed") throw new Conflict(`workflow ${id} is ${state.status}; only a failed workflow can be restarted`)
      if (enqueue === undefined) throw new Error(`${name} is not started`)
      await enqueue(message(`${id}/restart/${randomUUID()}`, messages.restart, id, id, patch === undefined ? {} : { patch }))
      return store.load(id)
    },
    discard: async (id, reason, by) => {
      const state = await store.load(id)
      if (state === undefined) throw new NotFound(`no workflow ${id} (finished workflows are deleted once their outcome is announced)`)
      if (state.status !== "failed") throw new Conflict(`workflow ${id} is ${state.status}; only a failed workflow can be discarded`)
      if (enqueue === undefined) throw new Error(`${name} is not started`)
      await enqueue(message(`${id}/discard/${randomUUID()}`, messages.discard, id, id, { reason, by }))
      const after = await store.load(id)
      // A restart that got in first wins: the workflow runs again, and is not discarded.
      if (after?.status !== "discarded") throw new Conflict(`workflow ${id} was ${after?.status ?? "finished"} before the discard reached it`)
      return after
    },
    close: () => {
      for (const timer of timers.values()) clearTimeout(timer)
      timers.clear()
      cache?.clear()
    }
  }
}
