/**
 * A Cluster.ts member in this process, on PostgreSQL, for the tests of membership itself: a store
 * and a control pool of its own, as the runtime's (Consuming.ts gives it its hooks; here the test does).
 */
import { Log } from "@baton/core"
import { Postgres, type Store } from "@baton/store"
import * as Cluster from "../src/Cluster.ts"

export interface Settings {
  readonly url: string
  readonly partitions: number
  readonly heartbeatMs: number
  readonly deadAfterMs: number
  /** Where the member's pools and the member itself are closed after the tests, in reverse order. */
  readonly cleanups: Array<() => Promise<void>>
}

/** `instance`, not started yet: every hook does nothing unless given. */
export const clusterMember = async (
  settings: Settings,
  instance: string,
  hooks: Partial<Pick<Cluster.Hooks, "acquired" | "adopt">> = {},
  extra: { readonly stuckAfterMs?: number; readonly logger?: Log.Logger } = {}
): Promise<{ readonly cluster: Cluster.Cluster; readonly store: Store }> => {
  const { url, partitions, heartbeatMs, deadAfterMs, cleanups } = settings
  const store = await Postgres.open({ url, poolSize: 2 })
  const control = await Postgres.open({ url, poolSize: 2 })
  cleanups.push(() => store.close(), () => control.close())
  const nothing = () => undefined
  const cluster = await Cluster.make({
    store,
    control,
    url,
    instance,
    partitions,
    heartbeatMs,
    deadAfterMs,
    address: { http: "-", mqtt: "-" },
    logger: extra.logger ?? Log.silent,
    ...(extra.stuckAfterMs === undefined ? {} : { stuckAfterMs: extra.stuckAfterMs }),
    acquired: hooks.acquired ?? (async () => undefined),
    released: nothing,
    pending: nothing,
    adopt: hooks.adopt ?? nothing
  })
  cleanups.push(() => cluster.abandon())
  return { cluster, store }
}
