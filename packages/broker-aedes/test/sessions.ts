/** Fresh sessions stores for the broker tests: Aedes' memory one, a directory on disk, a Redis key prefix. */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { EmbeddedBroker } from "@baton/broker-aedes"
import * as TestRedis from "@baton/testkit/redis"

export const redisUrl = process.env.BATON_TEST_REDIS_URL ?? "redis://127.0.0.1:6379/3"

export type Kind = "memory" | "disk" | "redis"

/** A fresh store of `kind` (the same one for every broker started on it); `cleanup` gets what removes its files or keys. */
export const freshSessions = (kind: Kind, cleanup: Array<() => unknown>): EmbeddedBroker.Sessions => {
  if (kind === "memory") return { kind }
  if (kind === "disk") {
    const dir = mkdtempSync(join(tmpdir(), "baton-sessions-"))
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }))
    return { kind, dir }
  }
  const scope = TestRedis.scoped(redisUrl)
  cleanup.push(scope.clean)
  return { kind, url: scope.url }
}
