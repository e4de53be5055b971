/**
 * Workflows declared as data (docs/concepts.md, section 2): an ordered list of steps; a step is a set
 * of commands sent at once to processor channels; the mediator moves on only when every command of
 * the step is acknowledged. A step may divert the workflow to a named branch (a declined payment),
 * whose name becomes the workflow's outcome.
 */

/** What a processor answered: the events its work produced (the same as in the broker topology). */
export interface Result {
  readonly type: string
  /** The version of the event's schema `data` follows (1 when absent). */
  readonly version?: number
  readonly data: unknown
}

/** The workflow's data: the initiating event's data (patchable on restart) and every command's results. */
export interface Data {
  readonly input: Readonly<Record<string, unknown>>
  /** Results by command key (`main/1/apply-payment`). */
  readonly results: Readonly<Record<string, ReadonlyArray<Result>>>
}

/** What a workflow sends to a processor: a command, or a compensation. */
export interface Sent {
  /** Its name in the workflow (`apply-payment`). */
  readonly name: string
  /** The processor whose channel receives it. */
  readonly channel: string
  /** The event type the processor takes it as (the processor is the same in both topologies). */
  readonly type: string
  /**
   * The version of that event's schema `data` follows (1 when absent): the processor upcasts from
   * it, so a command built at version 2 must say so (`Event.version` of the SDK's event).
   */
  readonly version?: number
  readonly data: (data: Data) => unknown
}

export interface Command extends Sent {
  /** How long to wait for the acknowledgement before sending again; the mediator's default when absent. */
  readonly timeoutMs?: number
  /** Sends before the command counts as failed; the mediator's default when absent. */
  readonly maxAttempts?: number
}

export interface Step {
  readonly name: string
  readonly commands: ReadonlyArray<Command>
  /** After the step: the branch to take instead of the next step, or undefined to go on. */
  readonly decide?: (data: Data) => string | undefined
}

/**
 * What a workflow sends when an operator discards it (its compensation: the stock it took goes
 * back). Sent once, fire-and-forget: the processor announces its work like in the broker topology,
 * and nothing waits for it.
 */
export interface Compensation extends Sent {
  /** Sent only when this holds for the workflow's data (there is something to give back); always when absent. */
  readonly when?: (data: Data) => boolean
}

export interface Workflow {
  /** The workflow's name (`place-order`). */
  readonly name: string
  /** The domain mediator that runs it (`order`, `customer`). */
  readonly domain: string
  readonly steps: ReadonlyArray<Step>
  /** Branches by outcome name; a workflow that ends in one ends with that outcome. */
  readonly branches?: Readonly<Record<string, ReadonlyArray<Step>>>
  /**
   * Request-reply: when the initiating event carried `replyTo`, the mediator answers once the step
   * named `after` is done (the order id, after `create-order`).
   */
  readonly reply?: { readonly after: string; readonly data: (data: Data) => unknown }
  /** What `workflow-completed` reports besides the outcome (the order id). */
  readonly summary?: (data: Data) => Readonly<Record<string, unknown>>
  /** Sent when a failed workflow is discarded. */
  readonly onDiscard?: ReadonlyArray<Compensation>
}

/** The data of the first result of `type` among all results so far. */
export const find = <A>(data: Data, type: string): A | undefined => {
  for (const results of Object.values(data.results)) {
    const found = results.find((r) => r.type === type)
    if (found !== undefined) return found.data as A
  }
  return undefined
}

/** Like `find`, for a result the workflow cannot go on without. */
export const need = <A>(data: Data, type: string): A => {
  const found = find<A>(data, type)
  if (found === undefined) throw new Error(`the workflow has no ${type} result yet`)
  return found
}

/** Classification of an initiating event by the simple mediator (a declared rule table). */
export type Rule =
  | {
      readonly type: string
      readonly kind: "simple"
      /** Handled in one step by the simple mediator itself: one command, nothing to track. */
      readonly command: { readonly channel: string; readonly type: string; readonly version?: number }
    }
  | {
      readonly type: string
      readonly kind: "hard" | "complex"
      /** Delegated to the durable domain mediator that runs this workflow. */
      readonly workflow: string
    }
