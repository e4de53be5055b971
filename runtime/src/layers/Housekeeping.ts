/** Forgets what is older than the deduplication window (at start, then every hour) and alerts about keys held too long. */
import { Log } from "@baton/core"
import { Effect, Layer } from "effect"
import { Ingress } from "./Ingress.ts"
import { ProcessorHost } from "./ProcessorHost.ts"
import { Queues } from "./Queues.ts"
import { promise, Settings } from "./Settings.ts"

export const layer = Layer.effectDiscard(
  Effect.gen(function* () {
    const { config, logger } = yield* Settings
    const { inbox } = yield* Queues
    const { log, front } = yield* Ingress
    const { repairs } = yield* ProcessorHost
    const prune = async () => {
      const before = new Date(Date.now() - config.retentionHours * 3_600_000)
      const inboxRows = await inbox.prune(before)
      const ingressRows = await log.prune(before)
      // The front's log (`BATON_FRONT=log`): its forwarded entries, then main's seen ids up to them (docs/front-thread.md 3.4).
      const frontUpTo = front === undefined ? 0 : await front.prune(before)
      if (inboxRows + ingressRows + frontUpTo > 0)
        logger.log("info", "retention sweep", { "inbox-rows": inboxRows, "ingress-rows": ingressRows, ...(front === undefined ? {} : { "front-up-to": frontUpTo }), before: before.toISOString() })
    }
    const pruneSafely = () => void prune().catch((error: unknown) => logger.log("error", "retention sweep failed", { reason: Log.reason(error) }))
    if (repairs !== undefined)
      yield* Effect.acquireRelease(
        Effect.sync(() =>
          setInterval(
            () => void repairs.sweep(new Date()).catch((error: unknown) => logger.log("error", "parking sweep failed", { reason: Log.reason(error) })),
            Math.min(5000, Math.max(100, Math.floor(config.parkMaxAgeMs / 2)))
          ).unref()
        ),
        (timer) => Effect.sync(() => clearInterval(timer))
      )
    yield* Effect.acquireRelease(
      Effect.gen(function* () {
        yield* promise(prune)
        return setInterval(pruneSafely, 3_600_000).unref()
      }),
      (timer) => Effect.sync(() => clearInterval(timer))
    )
  })
)
