/** The order-statistics counter: its app module (`./app`), and its events for tests and clients. */
import type { Context } from "@baton/sdk"
import app from "./app.ts"

export * from "./app.ts"
export { app }

/**
 * The app on a store, for the runtime's list of reference apps until it loads them as modules
 * (`runtime/src/Apps.ts`); new code runs `app`.
 */
export const make = (deps: { readonly store: Omit<Context, "env" | "clock"> }) =>
  app.make({ ...deps.store, env: process.env, clock: { now: () => new Date(), newId: () => crypto.randomUUID() } })
