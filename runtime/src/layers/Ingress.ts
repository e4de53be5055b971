/**
 * The ingress (initiating events: logged, acknowledged, then judged and forwarded) with its log,
 * and the in-process router it forwards through, which the processor host fills with routes.
 */
import { payloadPreviewBytes } from "@baton/core"
import { IngressLog } from "@baton/store"
import { Context, Effect, Layer } from "effect"
import * as Crash from "../Crash.ts"
import * as Ingress_ from "../Ingress.ts"
import * as Router from "../Router.ts"
import { Apps } from "./Apps.ts"
import { Ownership } from "./Ownership.ts"
import { Queues } from "./Queues.ts"
import { promise, Settings } from "./Settings.ts"
import { Store, Tracing } from "./Store.ts"

export interface Shape {
  readonly ingress: Ingress_.Ingress
  readonly log: IngressLog.IngressLog
  readonly router: Router.Router
  /**
   * Whether public topics go through the store too. Internal ones (command channels, repairs)
   * always do. With the embedded broker or in a cluster, so do public ones; with an external
   * broker and a single instance, every processor consumes those from its own broker session.
   */
  readonly routePublic: boolean
}

export class Ingress extends Context.Service<Ingress, Shape>()("baton/runtime/Ingress") {}

export const layer = Layer.effect(
  Ingress,
  Effect.gen(function* () {
    const { config, logger } = yield* Settings
    const store = yield* Store
    const tracing = yield* Tracing
    const ownership = yield* Ownership
    const { outbox, inbox } = yield* Queues
    const { contracts, reject } = yield* Apps
    // A single instance on the embedded broker and SQLite forwards a batch in its append's
    // transaction (SQLite commits its transactions one at a time, in the order they begin).
    const inline = config.brokerUrl === undefined && !ownership.clustered && store.dialect === "sqlite"
    const log = yield* promise(() =>
      IngressLog.make(store, {
        maxBytes: config.maxPayloadBytes,
        previewBytes: payloadPreviewBytes,
        beforeCommit: () => Crash.point("ingress-before-commit"),
        ...ownership.entries,
        // In a cluster, an entry is forwarded at once (no broker round trip wakes the ingress).
        ...(ownership.clustered ? { afterCommit: async () => ingress.forwardNow() } : {}),
        ...(inline ? { inline: { forwarder: () => ingress.inline.forwarder(), settled: () => ingress.inline.settled(), again: (error) => ingress.inline.again(error) } } : {}),
        // On an external broker, only the holder of the cluster's ingress session (the owner of
        // partition 0) logs initiating events: a former holder's client still connected cannot.
        ...(ownership.clustered && config.brokerUrl !== undefined
          ? {
              fence: Effect.flatMap(
                Effect.suspend(() => ownership.holds(0)),
                (holds) => (holds ? Effect.void : Effect.die(new Error("this instance no longer holds the cluster's ingress session")))
              )
            }
          : {})
      })
    )
    const router = Router.make(inbox)
    const routePublic = config.brokerUrl === undefined || ownership.clustered
    const ingress = Ingress_.make({ contracts, maxPayloadBytes: config.maxPayloadBytes, store, log, outbox, reject, logger, tracing, inline, ...(routePublic ? { router } : {}) })
    return { ingress, log, router, routePublic }
  })
)
