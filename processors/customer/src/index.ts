/** The customer reference app: the app module (`./app`) and its parts. */
import type { Context } from "@baton/sdk"
import { Compat, type Mailer } from "@baton/order-entry"
import { makeApp } from "./app.ts"

export * from "./app.ts"
export { default as app } from "./app.ts"

/** The app over the runtime's store (see order-entry's `Compat`). */
export const make = (deps: { readonly store: Compat.StoreLike; readonly mailer: Mailer.Mailer; readonly clock?: Context["clock"] }) =>
  Compat.start(makeApp({ mailer: deps.mailer }), deps.store, deps.clock)
