/** The comment-posting app: its app module (`./app`), and its events and checks for tests and clients. */
import type { Context } from "@baton/sdk"
import { configure, type Options } from "./app.ts"

export * from "./app.ts"
export { default as app } from "./app.ts"

/**
 * The app on a store, for the runtime's list of reference apps until it loads them as modules
 * (`runtime/src/Apps.ts`); new code runs `app`, or `configure(options)`.
 */
export const make = (deps: Options & { readonly store: Omit<Context, "env" | "clock"> }) =>
  configure(deps).make({ ...deps.store, env: process.env, clock: { now: () => new Date(), newId: () => crypto.randomUUID() } })
