/**
 * The ingress (initiating events: logged, acknowledged, then judged and forwarded) with its log,
 * and the in-process router it forwards through, which the processor host fills with routes.
 */
import { existsSync } from "node:fs"
import { payloadPreviewBytes } from "@baton/core"
import { FrontLog, IngressLog } from "@baton/store"
import { Context, Deferred, Effect, Exit, Layer } from "effect"
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
  /**
   * With `BATON_FRONT=log` or `thread`: how to prune the front's log with main's seen ids
   * (Housekeeping), main's mark at start, and who hears it move (the front thread: its backlog).
   */
  readonly front:
    | { readonly prune: (before: Date) => Promise<number>; readonly mark: number; readonly onMoved: (listener: (mark: number) => void) => void }
    | undefined
  /** Fails when forwarding stopped for good (a hand-over out of order, a defect): the runtime must stop. */
  readonly broken: Deferred.Deferred<never>
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
    // Not with the front's log: its entries are committed in another file (docs/front-thread.md 3.1).
    const inline = config.brokerUrl === undefined && !ownership.clustered && store.dialect === "sqlite" && config.front === "off"
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
    const broken = yield* Deferred.make<never>()
    // The front's log: the live source with the flag; without it, a file left is forwarded at start and pruned.
    const frontPath = FrontLog.pathIn(config.dataDir)
    const frontFile = store.dialect === "sqlite" && (config.front !== "off" || existsSync(frontPath))
    const front = frontFile
      ? yield* Effect.acquireRelease(
          promise(() =>
            FrontLog.open({
              path: frontPath,
              synchronous: config.durable ? "NORMAL" : "OFF",
              maxBytes: config.maxPayloadBytes,
              previewBytes: payloadPreviewBytes,
              beforeCommit: () => Crash.point("ingress-before-commit"),
              onCheckpointError: (message) => logger.log("warn", "WAL checkpoint failed (the next one tries again)", { file: frontPath, reason: message }),
              // The front thread writes the file and checkpoints it: main only reads it (and prunes it).
              ...(config.front === "thread" ? { checkpointIntervalMs: 0 } : {})
            })
          ),
          // After the ingress is idle (its finalizer runs first, below), before the store closes.
          (f) => Effect.promise(() => f.close()).pipe(Effect.tap(() => Effect.sync(() => logger.log("info", "front log closed", { file: frontPath }))))
        )
      : undefined
    let source: Ingress_.Source | undefined
    let mark = 0
    let moved: ((mark: number) => void) | undefined
    if (front !== undefined) {
      const read = yield* promise(() => Ingress_.frontMark(store, front))
      // Its newest row is never pruned: only an older copy of the file can hold less than the mark.
      if (read.newest < read.mark)
        return yield* Effect.die(
          new Error(`${frontPath} is an older copy of the front log ${front.logId} (its newest entry ${read.newest}, forwarded up to ${read.mark}): its next entries would be taken for forwarded ones; restore the file it replaced, or move it away to start a new one`)
        )
      mark = read.mark
      source = Ingress_.frontSource(store, front, read.mark, (seq) => moved?.(seq))
      logger.log("info", "front log opened", { file: frontPath, "log-id": front.logId, newest: read.newest, mark: read.mark, mode: config.front })
    }
    const prune = (before: Date) => Ingress_.pruneFront(store, front!, log, before)
    const mainLog = Ingress_.logSource(log)
    const ingress = Ingress_.make({
      contracts,
      maxPayloadBytes: config.maxPayloadBytes,
      store,
      log,
      outbox,
      reject,
      logger,
      tracing,
      inline,
      fatal: (error) => Deferred.doneUnsafe(broken, Exit.die(error)),
      ...(routePublic ? { router } : {}),
      // With the flag, main's own log (older) is drained first; without it, a front file left
      // (older than anything main logs from now on) is, then pruned (its newest row kept).
      ...(config.front !== "off"
        ? { source: source!, before: [{ source: mainLog }] }
        : source !== undefined
          ? {
              before: [
                {
                  source,
                  drained: async (n: number) => {
                    logger.log("info", "left entries forwarded", { file: frontPath, entries: n })
                    await prune(new Date("9999-12-31T23:59:59.999Z"))
                  }
                }
              ]
            }
          : {})
    })
    // Runs before the front log closes (finalizers in reverse): what is being handed over ends first.
    yield* Effect.addFinalizer(() => Effect.promise(() => ingress.idle()))
    return {
      ingress,
      log,
      router,
      routePublic,
      front: config.front === "off" ? undefined : { prune, mark, onMoved: (listener: (mark: number) => void) => void (moved = listener) },
      broken
    }
  })
)
