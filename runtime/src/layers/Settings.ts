/**
 * What every part of the runtime is built from: the configuration, the embedding options, the
 * (masking) logger, and the phase the health endpoint reports.
 */
import { Context, Effect, Layer } from "effect"
import type { Log } from "@baton/core"
import type { Config } from "../Config.ts"
import type { Phase } from "../Http.ts"
import type { Options } from "../Runtime.ts"

export interface Shape {
  readonly config: Config
  readonly options: Options
  readonly logger: Log.Logger
  /** Starting, ready, then stopping: set by the composition root, read by the health endpoint. */
  readonly lifecycle: { phase: Phase }
}

export class Settings extends Context.Service<Settings, Shape>()("baton/runtime/Settings") {}

export const layer = (config: Config, options: Options, logger: Log.Logger): Layer.Layer<Settings> =>
  Layer.succeed(Settings, { config, options, logger, lifecycle: { phase: "starting" } })

/** Wraps a promise-returning function as an effect failing with its error. */
export const promise = <A>(f: () => Promise<A>) => Effect.tryPromise({ try: f, catch: (e) => e as Error })
