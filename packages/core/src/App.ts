/** An application: the initiating events it accepts and the processors that react to them. */
import type { Result } from "effect"
import type { Envelope, Issue } from "./Envelope.ts"
import type { Processor } from "./Processor.ts"
import type { Rule, Workflow } from "./Workflow.ts"

export interface Initiating {
  /** Kebab-case name: published on `initiate/<name>`. */
  readonly name: string
  /** Validates the event's data, reporting every issue with its path. */
  readonly decode: (data: unknown) => Result.Result<unknown, ReadonlyArray<Issue>>
  /** The partition key of a bare event (order is kept per key); the event id when absent. */
  readonly key?: (data: unknown) => string | undefined
  /**
   * Names of the event's fields that must not leak (`Sensitive.fields(schema)` reads the fields
   * marked with `Sensitive.annotation`): masked in rejections, log lines and HTTP answers.
   */
  readonly sensitive?: ReadonlyArray<string>
}

export interface App {
  readonly name: string
  readonly initiating: ReadonlyArray<Initiating>
  readonly processors: ReadonlyArray<Processor>
  /** For the mediator topology: how its initiating events are classified, and its workflows. */
  readonly mediation?: Mediation
  /** HTTP endpoints of the app, by `METHOD /path` (the synchronous `POST /comments`). */
  readonly http?: Readonly<Record<string, HttpRoute>>
  /** For the workflow event pattern: repairs of failed messages, by message type. */
  readonly repairs?: Readonly<Record<string, Repair>>
}

/** Answers a request with a JSON object body (undefined when empty). */
export type HttpRoute = (body: Readonly<Record<string, unknown>> | undefined) => Promise<{ readonly status: number; readonly body: unknown }>

/** Fixes a failed message's data, or returns undefined when it cannot tell what is wrong. */
export type Repair = (message: Envelope, error: string) => { readonly data: unknown; readonly changes: ReadonlyArray<string> } | undefined

export interface Mediation {
  readonly rules: ReadonlyArray<Rule>
  readonly workflows: ReadonlyArray<Workflow>
}
