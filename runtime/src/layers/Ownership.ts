/**
 * Which key partitions this instance processes. One instance alone owns them all, always
 * (`single`); instances sharing a PostgreSQL store form a cluster, each owning some partitions
 * (`cluster`, Cluster.ts). The rest of the runtime asks the ownership and never which it is, except
 * where a cluster works differently by design (pending work is scheduled per acquired partition,
 * the ingress goes through the inbox).
 */
import { Inbox, Postgres, type Sql } from "@baton/store"
import { Context, Effect, Layer } from "effect"
import * as Cluster from "../Cluster.ts"
import { promise, Settings } from "./Settings.ts"
import { applicationName, Store } from "./Store.ts"

export type View = Awaited<ReturnType<Cluster.Cluster["view"]>>

export interface Shape {
  /** True in a cluster. */
  readonly clustered: boolean
  readonly instance: string
  readonly partitions: number
  /** The partition of a key. */
  readonly partOf: (key: string) => number
  /** Whether this instance owns the partition now (else its owner runs its messages). */
  readonly owns: (part: number) => boolean
  /** In a cluster: this instance's tenure of the partition (Cluster.ts `tenure`); alone, absent. */
  readonly tenure?: (part: number) => number
  /** In a cluster: whether the partition was just acquired, its `acquired` hook not yet returned (Cluster.ts `acquiring`); alone, absent. */
  readonly acquiring?: (part: number) => boolean
  /** Inside a transaction: whether it still does, fenced until the commit (Cluster.ts). */
  readonly holds: (part: number) => Sql<boolean>
  /** Inside a transaction: wakes the owner of a partition with a new pending message. */
  readonly notify: (part: number) => Sql<void>
  /** Whose outbox and ingress entries: this instance's in a cluster, everyone's alone. */
  readonly entries: { readonly instance?: string }
  /** The inbox's partitioning, notification and fencing (`Inbox.make`'s options). */
  readonly inbox: Parameters<typeof Inbox.make>[1]
  /** Members and partitions, for the console; undefined alone. */
  readonly view: () => Promise<View | undefined>
  /** Starts owning (in a cluster: joins, and from then on calls the hooks as partitions move). */
  readonly start: (hooks: Cluster.Hooks) => Promise<void>
  /** Stops taking work, runs `drain`, then lets the partitions go. */
  readonly stop: (drain: () => Promise<void>) => Promise<void>
}

export class Ownership extends Context.Service<Ownership, Shape>()("baton/runtime/Ownership") {}

/** One instance alone: owns and holds every partition, always. */
export const single = Layer.effect(
  Ownership,
  Effect.gen(function* () {
    const { config } = yield* Settings
    return {
      clustered: false,
      instance: config.instance,
      partitions: config.clusterPartitions,
      partOf: (key) => Inbox.partitionOf(key, config.clusterPartitions),
      owns: () => true,
      holds: () => Effect.succeed(true),
      notify: () => Effect.void,
      entries: {},
      inbox: {},
      view: async () => undefined,
      start: async () => undefined,
      stop: (drain) => drain()
    } satisfies Shape
  })
)

/**
 * A member of the cluster in the shared PostgreSQL store, with a small pool of its own for
 * heartbeats and claims. It owns nothing until `start`.
 */
export const cluster = Layer.effect(
  Ownership,
  Effect.gen(function* () {
    const { config, logger } = yield* Settings
    const store = yield* Store
    const control = yield* Effect.acquireRelease(
      promise(() => Postgres.open({ url: config.databaseUrl ?? "", poolSize: 2, driver: config.pgDriver, applicationName: applicationName(config) })),
      (s) => Effect.promise(() => s.close())
    )
    const member = yield* promise(() =>
      Cluster.make({
        store,
        control,
        url: config.databaseUrl ?? "",
        instance: config.instance,
        partitions: config.clusterPartitions,
        heartbeatMs: config.heartbeatMs,
        deadAfterMs: config.deadAfterMs,
        stuckAfterMs: config.tickStuckMs,
        logger
      })
    )
    return {
      clustered: true,
      instance: member.instance,
      partitions: member.partitions,
      partOf: (key) => Inbox.partitionOf(key, config.clusterPartitions),
      owns: member.owns,
      tenure: member.tenure,
      acquiring: member.acquiring,
      holds: member.holds,
      notify: member.notify,
      entries: { instance: config.instance },
      inbox: { partitions: config.clusterPartitions, notify: member.notify, guard: Cluster.inboxGuard(config.instance) },
      view: member.view,
      start: member.start,
      stop: member.stop
    } satisfies Shape
  })
)

/** A cluster when the store is PostgreSQL (instances sharing it form one), else alone. */
export const layer = Layer.unwrap(
  Effect.gen(function* () {
    const store = yield* Store
    return store.kind === "postgres" ? cluster : single
  })
)
