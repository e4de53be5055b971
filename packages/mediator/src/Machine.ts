/**
 * The mediator's state machine, pure: (state, input) → (state, effects). Everything durable about
 * a workflow is its `State`; the runtime stores it, sends the `Send` effects to processor channels
 * and announces the `Announce` effects on `events/`.
 *
 * Rules: a step starts only when every command of the previous step is acknowledged; an
 * acknowledged command is never sent again; an acknowledgement that matches no command in flight
 * (a duplicate, a late one from before a restart) changes nothing; a failed command fails the
 * workflow, and a restart sends again only the failed commands of the failed step. A failed
 * workflow an operator gives up on is discarded: it sends the workflow's declared compensations
 * once (fire-and-forget), stays on record, and nothing moves it again.
 */
import type { Workflow as W } from "@baton/core"

type Data = W.Data
type Result = W.Result
type Step = W.Step
type Workflow = W.Workflow

export type CommandStatus = "sent" | "acked" | "failed"

export interface CommandState {
  /** `<track>/<step>/<name>`: unique within the workflow. */
  readonly key: string
  readonly name: string
  readonly channel: string
  readonly type: string
  /** The version of the event's schema the command's data follows (1 when absent). */
  readonly version?: number
  readonly track: string
  readonly step: number
  /** Bumped by a restart: a new envelope id, so the processor sees a new message. */
  readonly generation: number
  /** The id of the command's envelope; acknowledgements name it. */
  readonly envelopeId: string
  readonly status: CommandStatus
  /** Sends of this generation (a timeout sends the same envelope again). */
  readonly attempts: number
  readonly maxAttempts: number
  readonly timeoutMs: number
  readonly sentAt: string
  readonly ackedAt?: string
  readonly failedAt?: string
  readonly error?: string
}

export type Status = "running" | "failed" | "discarded" | "completed" | (string & {})

export interface State {
  readonly id: string
  readonly workflow: string
  readonly domain: string
  /** `running`, `failed`, `discarded` (by an operator, from failed), or the outcome: `completed` or a branch name (`denied`). */
  readonly status: Status
  /** `main`, or the branch being run. */
  readonly track: string
  /** Index of the current step in the track. */
  readonly step: number
  readonly data: Data
  readonly commands: Readonly<Record<string, CommandState>>
  readonly failure?: { readonly step: string; readonly command: string; readonly reason: string; readonly at: string }
  /** Who gave up on the failed workflow, and why. */
  readonly discarded?: { readonly by: string; readonly reason: string; readonly at: string; readonly compensations: ReadonlyArray<string> }
  /** Where the initiating event asked for a reply. */
  readonly replyTo?: string
  readonly startedAt: string
  readonly updatedAt: string
}

export type Input =
  | { readonly _tag: "Start"; readonly id: string; readonly input: Readonly<Record<string, unknown>>; readonly replyTo?: string }
  | { readonly _tag: "Ack"; readonly envelopeId: string; readonly results: ReadonlyArray<Result> }
  | { readonly _tag: "Nack"; readonly envelopeId: string; readonly reason: string }
  | { readonly _tag: "Timeout"; readonly envelopeId: string; readonly attempt: number }
  | { readonly _tag: "Restart"; readonly patch?: Readonly<Record<string, unknown>> }
  | { readonly _tag: "Discard"; readonly by: string; readonly reason: string }

export type Effect =
  | { readonly _tag: "Send"; readonly command: CommandState; readonly data: unknown }
  | { readonly _tag: "Announce"; readonly type: string; readonly data: Readonly<Record<string, unknown>> }
  | { readonly _tag: "Reply"; readonly topic: string; readonly data: unknown }
  /** A discarded workflow's compensation: sent once, with no acknowledgement asked for. */
  | { readonly _tag: "Compensate"; readonly envelopeId: string; readonly name: string; readonly channel: string; readonly type: string; readonly version?: number; readonly data: unknown }

export interface Transition {
  readonly state: State | undefined
  readonly effects: ReadonlyArray<Effect>
}

export interface Defaults {
  readonly timeoutMs: number
  readonly maxAttempts: number
}

export const terminal = (status: Status): boolean => status !== "running" && status !== "failed"

/** A terminal state kept on record (not deleted when reached): a discarded workflow. */
export const kept = (status: Status): boolean => status === "discarded"

const trackOf = (workflow: Workflow, track: string): ReadonlyArray<Step> =>
  track === "main" ? workflow.steps : (workflow.branches?.[track] ?? [])

/** A workflow's step as people name it: `2 (payment-and-inventory)`, or `denied 1 (...)`. */
export const stepLabel = (workflow: Workflow, track: string, step: number): string =>
  `${track === "main" ? "" : `${track} `}${step + 1} (${trackOf(workflow, track)[step]?.name ?? "end"})`

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v)

/** Deep merge of plain objects; anything else in the patch replaces. */
export const merge = (base: Readonly<Record<string, unknown>>, patch: Readonly<Record<string, unknown>>): Record<string, unknown> => {
  const out: Record<string, unknown> = { ...base }
  for (const [k, v] of Object.entries(patch)) {
    const b = out[k]
    out[k] = isObject(v) && isObject(b) ? merge(b, v) : v
  }
  return out
}

const currentCommands = (state: State): ReadonlyArray<CommandState> =>
  Object.values(state.commands).filter((c) => c.track === state.track && c.step === state.step)

const announce = (state: State, type: string, data: Record<string, unknown> = {}): Effect => ({
  _tag: "Announce",
  type,
  data: { workflowId: state.id, workflow: state.workflow, ...data }
})

/** Enters step `step` of `track`, or ends the workflow past the track's last step. */
const enter = (workflow: Workflow, defaults: Defaults, state: State, track: string, step: number, at: string): Transition => {
  const steps = trackOf(workflow, track)
  const spec = steps[step]
  if (spec === undefined) {
    const outcome = track === "main" ? "completed" : track
    const done: State = { ...state, status: outcome, track, step, updatedAt: at }
    return { state: done, effects: [announce(done, "workflow-completed", { outcome, ...(workflow.summary?.(done.data) ?? {}) })] }
  }
  const commands: Record<string, CommandState> = { ...state.commands }
  const effects: Array<Effect> = []
  for (const c of spec.commands) {
    const key = `${track}/${step + 1}/${c.name}`
    const command: CommandState = {
      key,
      name: c.name,
      channel: c.channel,
      type: c.type,
      ...(c.version === undefined ? {} : { version: c.version }),
      track,
      step,
      generation: 1,
      envelopeId: `${state.id}/${key}/1`,
      status: "sent",
      attempts: 1,
      maxAttempts: c.maxAttempts ?? defaults.maxAttempts,
      timeoutMs: c.timeoutMs ?? defaults.timeoutMs,
      sentAt: at
    }
    commands[key] = command
    effects.push({ _tag: "Send", command, data: c.data(state.data) })
  }
  const next: State = { ...state, status: "running", track, step, commands, updatedAt: at }
  // A step without commands is done at once.
  if (spec.commands.length === 0) return advance(workflow, defaults, next, at, effects)
  return { state: next, effects }
}

/** The current step is fully acknowledged: announce it and enter what follows. */
const advance = (workflow: Workflow, defaults: Defaults, state: State, at: string, before: ReadonlyArray<Effect> = []): Transition => {
  const spec = trackOf(workflow, state.track)[state.step]
  const results = Object.fromEntries(currentCommands(state).map((c) => [c.name, state.data.results[c.key] ?? []]))
  const completed: Array<Effect> = [announce(state, "workflow-step-completed", { step: stepLabel(workflow, state.track, state.step), results })]
  const reply = workflow.reply
  if (state.replyTo !== undefined && state.track === "main" && reply !== undefined && reply.after === spec?.name)
    completed.push({ _tag: "Reply", topic: state.replyTo, data: reply.data(state.data) })
  const branch = state.track === "main" ? spec?.decide?.(state.data) : undefined
  const entered = branch === undefined ? enter(workflow, defaults, state, state.track, state.step + 1, at) : enter(workflow, defaults, state, branch, 0, at)
  return { state: entered.state, effects: [...before, ...completed, ...entered.effects] }
}

const fail = (workflow: Workflow, state: State, command: CommandState, reason: string, at: string): Transition => {
  const failedCommand: CommandState = { ...command, status: "failed", failedAt: at, error: reason }
  const commands = { ...state.commands, [command.key]: failedCommand }
  // A sibling failing while the workflow is already failed is recorded; the first failure stands.
  if (state.status === "failed") return { state: { ...state, commands, updatedAt: at }, effects: [] }
  const step = stepLabel(workflow, command.track, command.step)
  const failed: State = { ...state, status: "failed", commands, failure: { step, command: command.name, reason, at }, updatedAt: at }
  return { state: failed, effects: [announce(failed, "workflow-failed", { step, command: command.name, reason })] }
}

const find = (state: State, envelopeId: string): CommandState | undefined =>
  Object.values(state.commands).find((c) => c.envelopeId === envelopeId)

export const transition = (workflow: Workflow, defaults: Defaults, state: State | undefined, input: Input, at: string): Transition => {
  if (input._tag === "Start") {
    // A workflow starts once; a repeated start changes nothing.
    if (state !== undefined) return { state, effects: [] }
    const fresh: State = {
      id: input.id,
      workflow: workflow.name,
      domain: workflow.domain,
      status: "running",
      track: "main",
      step: 0,
      data: { input: input.input, results: {} },
      commands: {},
      ...(input.replyTo === undefined ? {} : { replyTo: input.replyTo }),
      startedAt: at,
      updatedAt: at
    }
    const entered = enter(workflow, defaults, fresh, "main", 0, at)
    return { state: entered.state, effects: [announce(fresh, "workflow-started"), ...entered.effects] }
  }
  if (state === undefined || terminal(state.status)) return { state, effects: [] }
  switch (input._tag) {
    case "Ack": {
      const command = find(state, input.envelopeId)
      // Only the command's current envelope counts; an acknowledged command stays acknowledged.
      if (command === undefined || command.status === "acked") return { state, effects: [] }
      const { error: _error, failedAt: _failedAt, ...rest } = command
      const acked: CommandState = { ...rest, status: "acked", ackedAt: at }
      const next: State = {
        ...state,
        commands: { ...state.commands, [command.key]: acked },
        data: { ...state.data, results: { ...state.data.results, [command.key]: input.results } },
        updatedAt: at
      }
      if (next.status !== "running" || currentCommands(next).some((c) => c.status !== "acked")) return { state: next, effects: [] }
      return advance(workflow, defaults, next, at)
    }
    case "Nack": {
      const command = find(state, input.envelopeId)
      if (command === undefined || command.status !== "sent") return { state, effects: [] }
      return fail(workflow, state, command, input.reason, at)
    }
    case "Timeout": {
      const command = find(state, input.envelopeId)
      if (command === undefined || command.status !== "sent" || command.attempts !== input.attempt) return { state, effects: [] }
      if (command.attempts >= command.maxAttempts)
        return fail(workflow, state, command, `no acknowledgement from ${command.channel} after ${command.attempts} attempt(s) of ${command.timeoutMs} ms`, at)
      const resent: CommandState = { ...command, attempts: command.attempts + 1, sentAt: at }
      const spec = trackOf(workflow, command.track)[command.step]?.commands.find((c) => c.name === command.name)
      return {
        state: { ...state, commands: { ...state.commands, [command.key]: resent }, updatedAt: at },
        effects: spec === undefined ? [] : [{ _tag: "Send", command: resent, data: spec.data(state.data) }]
      }
    }
    case "Restart": {
      if (state.status !== "failed") return { state, effects: [] }
      const data: Data = input.patch === undefined ? state.data : { ...state.data, input: merge(state.data.input, input.patch) }
      const { failure: _failure, ...rest } = state
      const restarted: State = { ...rest, status: "running", data, updatedAt: at }
      const commands: Record<string, CommandState> = { ...state.commands }
      const effects: Array<Effect> = [announce(restarted, "workflow-restarted", { step: stepLabel(workflow, state.track, state.step), patched: input.patch !== undefined })]
      const specs = trackOf(workflow, state.track)[state.step]?.commands ?? []
      for (const c of currentCommands(state).filter((c) => c.status === "failed")) {
        const { error: _error, failedAt: _failedAt, ...clean } = c
        const generation = c.generation + 1
        const again: CommandState = { ...clean, generation, envelopeId: `${state.id}/${c.key}/${generation}`, status: "sent", attempts: 1, sentAt: at }
        commands[c.key] = again
        const spec = specs.find((s) => s.name === c.name)
        if (spec !== undefined) effects.push({ _tag: "Send", command: again, data: spec.data(data) })
      }
      const next: State = { ...restarted, commands }
      if (currentCommands(next).every((c) => c.status === "acked")) return advance(workflow, defaults, next, at, effects)
      return { state: next, effects }
    }
    case "Discard": {
      if (state.status !== "failed") return { state, effects: [] }
      const compensations = (workflow.onDiscard ?? []).filter((c) => c.when?.(state.data) ?? true)
      const discarded: State = {
        ...state,
        status: "discarded",
        discarded: { by: input.by, reason: input.reason, at, compensations: compensations.map((c) => c.name) },
        updatedAt: at
      }
      const sends = compensations.map(
        (c): Effect => ({ _tag: "Compensate", envelopeId: `${state.id}/discard/${c.name}`, name: c.name, channel: c.channel, type: c.type, ...(c.version === undefined ? {} : { version: c.version }), data: c.data(state.data) })
      )
      return { state: discarded, effects: [announce(discarded, "workflow-discarded", { step: state.failure?.step, reason: input.reason, by: input.by }), ...sends] }
    }
  }
}
