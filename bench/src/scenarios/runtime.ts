/** The runtime in its own process, as users run it, on a fresh data directory. */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Process } from "@baton/testkit"

/** `main`: the runtime's `main.ts` to run (another tree's, say); the testkit's by default. */
export const onRuntime = async <A>(env: Record<string, string>, body: (running: Process.Running) => Promise<A>, main?: string): Promise<A> => {
  const dataDir = mkdtempSync(join(tmpdir(), "baton-bench-"))
  const running = await Process.startProcess(dataDir, { BATON_PUBLISH_RATE: "1000000", ...env }, main === undefined ? undefined : [main])
  try {
    return await body(running)
  } finally {
    await running.kill("SIGTERM")
    rmSync(dataDir, { recursive: true, force: true })
  }
}
