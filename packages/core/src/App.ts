/** An application: the initiating events it accepts and the processors that react to them. */
import type { Result } from "effect"
import type { Issue } from "./Envelope.ts"
import type { Processor } from "./Processor.ts"
import type { Rule, Workflow } from "./Workflow.ts"

export interface Initiating {
  /** Kebab-case name: published on `initiate/<name>`. */
  readonly name: string
  /** Validates the event's data, reporting every issue with its path. */
  readonly decode: (data: unknown) => Result.Result<unknown, ReadonlyArray<Issue>>
  /** The partition key of a bare event (order is kept per key); the event id when absent. */
  readonly key?: (data: unknown) => string | undefined
}

export interface App {
  readonly name: string
  readonly initiating: ReadonlyArray<Initiating>
  readonly processors: ReadonlyArray<Processor>
  /** For the mediator topology: how its initiating events are classified, and its workflows. */
  readonly mediation?: Mediation
}

export interface Mediation {
  readonly rules: ReadonlyArray<Rule>
  readonly workflows: ReadonlyArray<Workflow>
}
