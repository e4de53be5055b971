/**
 * The embedded broker of several git trees side by side in this process (`restoreAb.ts`,
 * `pubackAb.ts`): each tree's own `packages/broker-aedes`, with that tree's patched Aedes, and per
 * run a fresh one on a fresh sessions store (a new folder; a new key prefix in
 * `BATON_BENCH_REDIS_URL`, default redis://127.0.0.1:6379/3), closed and removed after the run.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import * as TestRedis from "@baton/testkit/redis"

export type Kind = "disk" | "redis" | "memory"
export const kinds: ReadonlyArray<string> = ["disk", "redis", "memory"]

type Module = typeof import("@baton/broker-aedes")
type Broker = Awaited<ReturnType<Module["EmbeddedBroker"]["start"]>>

export const load = async (trees: ReadonlyArray<string>, kind: Kind) => {
  const redisUrl = process.env.BATON_BENCH_REDIS_URL ?? "redis://127.0.0.1:6379/3"
  const modules = new Map<string, Module>()
  for (const tree of trees) modules.set(tree, (await import(resolve(tree, "packages/broker-aedes/src/index.ts"))) as Module)
  /** `body` with a fresh broker of `tree` and its MQTT URL. */
  return async <A>(tree: string, body: (broker: Broker, url: string) => Promise<A>): Promise<A> => {
    const { EmbeddedBroker } = modules.get(tree)!
    const dir = mkdtempSync(join(tmpdir(), "baton-tree-broker-"))
    const scope = TestRedis.scoped(redisUrl)
    const sessions = kind === "disk" ? { kind, dir } : kind === "redis" ? { kind, url: scope.url } : { kind }
    const broker = await EmbeddedBroker.start({ host: "127.0.0.1", mqttPort: 0, sessions } as Parameters<typeof EmbeddedBroker.start>[0])
    try {
      return await body(broker, `mqtt://127.0.0.1:${broker.mqttPort}`)
    } finally {
      await broker.close()
      rmSync(dir, { recursive: true, force: true })
      if (kind === "redis") await scope.clean()
    }
  }
}
