/**
 * Where apps come from: the runtime does not own them, it loads them. `BATON_APP` (and
 * `baton start --app`) lists app modules by path (`./src/app.ts`), or by the name of a reference
 * app (`order-entry`), which is the module of that name under `processors/`. A module's default
 * export is an app declared with `@baton/sdk`'s `Baton.app`.
 */
import { isAbsolute, resolve } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { Envelope, isAppModule, type App, type AppContext, type AppModule } from "@baton/core"
import type { Store } from "@baton/store"

/** The reference apps, by name: modules of this repository, loaded like any user's app. */
export const reference = {
  "order-entry": "processors/order-entry/src/app.ts",
  customer: "processors/customer/src/app.ts",
  trading: "processors/trading/src/app.ts",
  comments: "processors/comments/src/app.ts",
  "order-stats": "processors/order-stats/src/app.ts",
  ping: "processors/ping/src/app.ts"
} as const

const root = fileURLToPath(new URL("../../", import.meta.url))

/** An entry of `BATON_APP` that names a module rather than a reference app. */
export const isPath = (entry: string): boolean => entry.startsWith(".") || isAbsolute(entry) || /\.(ts|mts|js|mjs)$/.test(entry)

/**
 * The module an entry names: a reference app's, or the path resolved against the directory the
 * command was run from (`pnpm start` runs in the workspace's root, and says where it was run in `INIT_CWD`).
 */
export const modulePath = (entry: string, base: string = process.env.INIT_CWD ?? process.cwd()): string =>
  Object.hasOwn(reference, entry) ? resolve(root, reference[entry as keyof typeof reference]) : resolve(base, entry)

export class AppLoadError extends Error {
  override readonly name = "AppLoadError"
}

/** Imports an app module; a module that is missing, fails to load or exports no app is one readable error. */
export const load = async (entry: string): Promise<AppModule> => {
  const path = modulePath(entry)
  let module: Record<string, unknown>
  try {
    module = (await import(pathToFileURL(path).href)) as Record<string, unknown>
  } catch (e) {
    const code = (e as { readonly code?: unknown }).code
    if (code === "ERR_MODULE_NOT_FOUND" && (e as Error).message.includes(path))
      throw new AppLoadError(`app '${entry}': no module at ${path}`)
    throw new AppLoadError(`app '${entry}' (${path}) failed to load: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}`)
  }
  if (isAppModule(module.default)) return module.default
  const names = Object.keys(module).filter((k) => k !== "default")
  throw new AppLoadError(
    `app '${entry}' (${path}) has no app as its default export${module.default === undefined ? "" : ` (its default export is ${describe(module.default)})`}${names.length === 0 ? "" : `; it exports ${names.join(", ")}`}: end it with \`export default Baton.app({ ... })\` from @baton/sdk`
  )
}

const describe = (value: unknown): string =>
  value === null
    ? "null"
    : typeof value === "function"
      ? `a function (${value.name || "anonymous"})`
      : Array.isArray(value)
        ? "an array"
        : typeof value === "object"
          ? `an object with ${Object.keys(value).length === 0 ? "no keys" : `keys ${Object.keys(value).join(", ")}`}`
          : `a ${typeof value} (${JSON.stringify(value)})`

/** What an app is given at start: the store's SQL, the environment and the clock. */
export const context = (store: Store, env: Readonly<Record<string, string | undefined>> = process.env, clock: Envelope.Clock = Envelope.systemClock): AppContext => ({
  dialect: store.dialect,
  sql: store.sql,
  query: store.query,
  run: store.run,
  transaction: store.transaction,
  migrate: store.migrate,
  env,
  clock
})

/** Makes an app module's app; a throw while it starts is one readable error naming the app. */
export const instantiate = async (module: AppModule, ctx: AppContext): Promise<App> => {
  try {
    return await module.make(ctx)
  } catch (e) {
    throw new AppLoadError(`app '${module.name}' failed to start: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}`)
  }
}
