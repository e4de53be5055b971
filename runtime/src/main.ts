/** `pnpm start`: the runtime on its embedded defaults, configured by BATON_* variables. */
import { Cause, Effect, Exit } from "effect"
import { NodeRuntime } from "@effect/platform-node"
import { Log, PortInUseError } from "@baton/core"
import { AppLoadError } from "./Apps.ts"
import { ConfigError, fromEnv, portVariable } from "./Config.ts"
import { EventVersionError } from "./EventVersions.ts"
import * as Runtime from "./Runtime.ts"

// The configured format and level once the configuration is read; readable until then.
let logger: Log.Logger = Log.console

/** One readable line for the failures a user can fix; the full cause otherwise. */
const explain = (error: unknown): string => {
  if (error instanceof PortInUseError)
    return `${error.message}; set ${portVariable[error.listener] ?? "the port variable"} to a free port (0 picks one)`
  if (error instanceof ConfigError) return `configuration error: ${error.message}`
  if (error instanceof AppLoadError || error instanceof EventVersionError) return error.message
  return Log.reason(error)
}

const program = Effect.gen(function* () {
  const config = yield* Effect.try({ try: () => fromEnv(), catch: (e) => e })
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

NodeRuntime.runMain(program, {
  disableErrorReporting: true,
  // A signal (SIGINT/SIGTERM) interrupts the program after a graceful shutdown: exit 0.
  teardown: (exit, onExit) => onExit(Exit.isSuccess(exit) || Cause.hasInterruptsOnly(exit.cause) ? 0 : 1)
})
