/**
 * The apps the runtime runs (`BATON_APP`, or the embedding's), checked against the event versions
 * earlier deployments recorded; what must not leak from them (their sensitive fields, card
 * numbers); and the error path their refused or failed messages take.
 */
import { isAppModule, Sensitive, type App } from "@baton/core"
import { Context, Effect, Layer } from "effect"
import * as Loader from "../Apps.ts"
import type { Config } from "../Config.ts"
import * as ErrorPath from "../ErrorPath.ts"
import * as EventVersions from "../EventVersions.ts"
import * as Ingress from "../Ingress.ts"
import { Queues } from "./Queues.ts"
import { promise, Settings } from "./Settings.ts"
import { Store } from "./Store.ts"

export interface Shape {
  readonly apps: ReadonlyArray<App>
  readonly mask: Sensitive.Masker
  /** `f` with its answer masked: what the operators see. */
  readonly masked: <A extends ReadonlyArray<any>, B>(f: (...args: A) => Promise<B>) => (...args: A) => Promise<B>
  readonly reject: ErrorPath.ErrorPath
  /** The initiating events the apps take, by name. */
  readonly contracts: ReturnType<typeof Ingress.contractsOf>
}

export class Apps extends Context.Service<Apps, Shape>()("baton/runtime/Apps") {}

/** `BATON_APP` in its order: app modules, by path or by a reference app's name (Apps.ts). */
const configuredApps = (deps: { readonly config: Config }) => Promise.all(deps.config.apps.map((a) => Loader.load(a)))

export const layer = Layer.effect(
  Apps,
  Effect.gen(function* () {
    const { config, options, logger } = yield* Settings
    const store = yield* Store
    const { outbox, rejections } = yield* Queues
    const apps = yield* promise(async () => {
      const given = await (options.apps ?? configuredApps)({ store, config })
      const ctx = Loader.context(store, options.env ?? process.env, options.clock)
      return Promise.all(given.map((a) => (isAppModule(a) ? Loader.instantiate(a, ctx) : a)))
    })
    // Their events' versions and schemas against those earlier deployments recorded.
    yield* promise(() => EventVersions.check(store, apps))
    logger.log("info", "apps running", { apps: apps.map((a) => a.name).join(","), hint: "BATON_APP=+<app or ./path/app.ts> adds one to the defaults" })
    // What must not leak: the fields the apps mark sensitive, and card numbers anywhere.
    const mask = Sensitive.masker(apps.flatMap((a) => a.initiating.flatMap((i) => i.sensitive ?? [])))
    const masked = <A extends ReadonlyArray<any>, B>(f: (...args: A) => Promise<B>) => async (...args: A): Promise<B> => mask.json(await f(...args))
    const reject = ErrorPath.make({ store, outbox, rejections, logger, mask })
    return { apps, mask, masked, reject, contracts: Ingress.contractsOf(apps) }
  })
)
