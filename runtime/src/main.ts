/** `pnpm start`: the runtime on its embedded defaults, configured by BATON_* variables. */
import { Cause, Exit } from "effect"
import { NodeRuntime } from "@effect/platform-node"
import { program } from "./Serve.ts"

NodeRuntime.runMain(program(), {
  disableErrorReporting: true,
  // A signal (SIGINT/SIGTERM) interrupts the program after a graceful shutdown: exit 0.
  teardown: (exit, onExit) => onExit(Exit.isSuccess(exit) || Cause.hasInterruptsOnly(exit.cause) ? 0 : 1)
})
