/**
 * The mediator topology: apps with workflows take commands on channels from their domain
 * mediators (behind the simple mediator), which keep their workflows in the workflow store; apps
 * without keep chaining by events. Nothing here in the broker topology.
 */
import type { App } from "@baton/core"
import { Mediator, WorkflowStore } from "@baton/mediator"
import { Context, Effect, Layer } from "effect"
import { Apps } from "./Apps.ts"
import { promise, Settings } from "./Settings.ts"
import { Ownership } from "./Ownership.ts"
import { Store } from "./Store.ts"

export interface Shape {
  /** The apps whose processors take commands from mediators. */
  readonly mediated: ReadonlyArray<App>
  readonly workflowStore: WorkflowStore.WorkflowStore | undefined
  readonly workflows: NonNullable<App["mediation"]>["workflows"]
  readonly domains: ReadonlyArray<Mediator.Domain>
  /** The rule table of every mediated app. */
  readonly rules: ReadonlyArray<NonNullable<App["mediation"]>["rules"][number]>
  /**
   * The types the simple mediator takes: every rule's in a cluster; for one instance alone, only
   * those no domain mediator takes itself (`initiating`: the simple rules').
   */
  readonly simpleTypes: ReadonlyArray<string>
}

export class Mediation extends Context.Service<Mediation, Shape>()("baton/runtime/Mediation") {}

export const layer = Layer.effect(
  Mediation,
  Effect.gen(function* () {
    const { config, options, logger } = yield* Settings
    const store = yield* Store
    const { apps } = yield* Apps
    const mediated = config.topology === "mediator" ? apps.filter((a) => a.mediation !== undefined) : []
    const workflowStore =
      mediated.length === 0
        ? undefined
        : yield* Effect.acquireRelease(
            promise(() => WorkflowStore.inStore(store)),
            (s) => Effect.promise(() => s.close())
          )
    if (workflowStore !== undefined) logger.log("info", "workflow store opened", { kind: workflowStore.kind })
    const workflows = mediated.flatMap((a) => a.mediation?.workflows ?? [])
    const allRules = mediated.flatMap((a) => a.mediation?.rules ?? [])
    // Alone, an initiating event of a workflow goes to its domain mediator directly (see `initiating`).
    const direct = !(yield* Ownership).clustered
    const startedBy = (domain: string) =>
      direct ? allRules.filter((r) => r.kind !== "simple" && workflows.some((w) => w.name === r.workflow && w.domain === domain)) : []
    const domains =
      workflowStore === undefined
        ? []
        : [...new Set(workflows.map((w) => w.domain))].map((domain) =>
            Mediator.domain({
              domain,
              workflows: workflows.filter((w) => w.domain === domain),
              store: workflowStore,
              defaults: { timeoutMs: config.commandTimeoutMs, maxAttempts: config.commandAttempts },
              logger,
              initiating: startedBy(domain),
              ...(options.mediatorFault === undefined ? {} : { fault: () => options.mediatorFault?.(domain) })
            })
          )
    yield* Effect.addFinalizer(() => Effect.sync(() => domains.forEach((d) => d.close())))
    const simpleTypes = allRules.filter((r) => !direct || r.kind === "simple" || !workflows.some((w) => w.name === r.workflow)).map((r) => r.type)
    return { mediated, workflowStore, workflows, domains, rules: allRules, simpleTypes }
  })
)
