/**
 * The runtime as a program: configuration from BATON_* variables, the runtime until a signal or a
 * fatal failure, one readable line for what a user can fix. `pnpm start` (main.ts) and
 * `baton start --app` (cli.ts) both run it.
 */
import { Cause, Effect } from "effect"
import { Log, PortInUseError } from "@baton/core"
import { AppLoadError } from "./Apps.ts"
import { ConfigError, fromEnv, portVariable } from "./Config.ts"
import { EventVersionError } from "./EventVersions.ts"
import * as Runtime from "./Runtime.ts"

/** One readable line for the failures a user can fix; the full cause otherwise. */
export const explain = (error: unknown): string => {
  if (error instanceof PortInUseError)
    return `${error.message}; set ${portVariable[error.listener] ?? "the port variable"} to a free port (0 picks one)`
  if (error instanceof ConfigError) return `configuration error: ${error.message}`
  if (error instanceof AppLoadError || error instanceof EventVersionError) return error.message
  return Log.reason(error)
}

/** Runs until interrupted (a signal: graceful shutdown) or a fatal failure, which it logs in one line and fails with. */
export const program = (env: NodeJS.ProcessEnv = process.env) => {
  // The configured format and level once the configuration is read; readable until then.
  let logger: Log.Logger = Log.console
  return Effect.gen(function* () {
    const config = yield* Effect.try({ try: () => fromEnv(env), catch: (e) => e })
    logger = Log.stream({ format: config.logFormat, threshold: config.logLevel })
    const runtime = yield* Runtime.make(config, { logger })
    return yield* runtime.fatal
  }).pipe(
    Effect.scoped,
    Effect.tapCause((cause) =>
      Effect.sync(() => {
        if (Cause.hasInterruptsOnly(cause)) return
        logger.log("error", "runtime failed", { reason: explain(Cause.squash(cause)) })
      })
    ),
    Effect.ensuring(Effect.sync(() => logger.log("info", "runtime stopped")))
  )
}
