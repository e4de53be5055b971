/**
 * What crosses between the main thread and the front thread (`BATON_FRONT=thread`,
 * docs/front-thread.md 2). Each direction of the worker's port delivers in posting order: every
 * ordering argument of the front relies on it. The entries themselves do not cross: the front
 * commits them to its log (`front/ingress.db`) and says so (`accepted`); main reads them from that
 * file above its mark, as in `log` mode, and tells the front how far it forwarded (`forwarded`).
 */
import type { Users } from "@baton/auth"
import type { EmbeddedBroker } from "@baton/broker-aedes"
import type { Log } from "@baton/core"
import type { Limits } from "../Security.ts"

/** The worker's `workerData`. */
export interface Start {
  readonly host: string
  readonly mqttPort: number
  readonly wsPort: number | undefined
  readonly tls: { readonly cert: Uint8Array; readonly key: Uint8Array } | undefined
  readonly sessions: EmbeddedBroker.Sessions
  readonly drainTimeoutMs: number
  readonly limits: Limits
  /** The users file in force at start (undefined: authentication off). */
  readonly users: Users.File | undefined
  /** The front log's file, created by main at start (its identity checked there). */
  readonly path: string
  readonly durable: boolean
  readonly previewBytes: number
  /** Main's mark for this log at start: entries above it are not forwarded yet. */
  readonly mark: number
  /** Entries committed and not yet forwarded past which new accepts wait (`BATON_FRONT_BACKLOG`). */
  readonly backlog: number
  readonly logLevel: Log.Level
  /** `BATON_IDLE_SPIN_US`: the front's loop polls this long for a requester's next request after a reply (`IdleSpin`). */
  readonly idleSpinUs: number
}

export interface PublishItem {
  readonly topic: string
  readonly payload: Uint8Array | string
  readonly qos: 0 | 1 | 2
}

export type ToFront =
  /** Relay publishes with ids `first`, `first + 1`, ...; `epoch` counts the failures main has heard of. */
  | { readonly t: "publish"; readonly first: number; readonly epoch: number; readonly items: ReadonlyArray<PublishItem> }
  /** The filter announced as `id` is in main's mirror: its SUBACK may go. */
  | { readonly t: "known"; readonly id: number }
  /** Main committed its mark up to `upTo` (the front's backlog shrinks). */
  | { readonly t: "forwarded"; readonly upTo: number }
  | { readonly t: "users"; readonly file: Users.File }
  | { readonly t: "stats"; readonly id: number }
  | { readonly t: "subscriptions"; readonly id: number; readonly clientId: string }
  | { readonly t: "close" }

export type FromFront =
  /** Listening, its sessions' persistent filters read: main's mirror starts from them. */
  | { readonly t: "ready"; readonly mqttPort: number; readonly wsPort: number | undefined; readonly persistentFilters: ReadonlyArray<string> }
  /** The broker did not start (a port taken, a sessions store out of reach): the reason. */
  | { readonly t: "failed"; readonly reason: string; readonly inUse?: { readonly listener: string; readonly host: string; readonly port: number } }
  /** Entries up to `upTo` are committed in the front log. */
  | { readonly t: "accepted"; readonly upTo: number }
  /** Publishes up to `upTo` are done (stored for persistent sessions, forwarded). */
  | { readonly t: "published"; readonly upTo: number }
  /** Publishes `from` to `to` were not made (`from` failed, the rest of its epoch refused after it). */
  | { readonly t: "publishFailed"; readonly from: number; readonly to: number; readonly reason: string }
  | { readonly t: "filter"; readonly op: "add"; readonly id: number; readonly filter: string; readonly persistent: boolean }
  | { readonly t: "filter"; readonly op: "drop"; readonly filter: string }
  | { readonly t: "stats"; readonly id: number; readonly connections: number; readonly counts: Readonly<Record<string, number>>; readonly backlog: number }
  | { readonly t: "subscriptions"; readonly id: number; readonly filters: ReadonlyArray<string> }
  | { readonly t: "log"; readonly level: Log.Level; readonly event: string; readonly fields: Log.Fields | undefined }
  /** Its broker and log closed: the worker ends. */
  | { readonly t: "closed" }
