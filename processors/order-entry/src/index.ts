/** The order-entry reference app (docs/concepts.md, section 1): the app module (`./app`) and its parts. */
import type { Context } from "@baton/sdk"
import * as Compat from "./Compat.ts"
import type { Mailer } from "./Mailer.ts"
import { makeApp } from "./app.ts"
import * as Inventory from "./Inventory.ts"
import * as Notification from "./Notification.ts"
import * as OrderFulfillment from "./OrderFulfillment.ts"
import * as OrderPlacement from "./OrderPlacement.ts"
import * as Payment from "./Payment.ts"
import * as Shipping from "./Shipping.ts"
import * as Warehouse from "./Warehouse.ts"
import * as OrderWorkflow from "./OrderWorkflow.ts"

export { default as app, makeApp, type Options } from "./app.ts"
export * as Contract from "./Contract.ts"
export * as Mailer from "./Mailer.ts"
export { Compat, Inventory, Notification, OrderFulfillment, OrderPlacement, OrderWorkflow, Payment, Shipping, Warehouse }
export { migrations } from "./Schema.ts"

/** The app over the runtime's store (see `Compat`). */
export const make = (deps: { readonly store: Compat.StoreLike; readonly mailer: Mailer; readonly clock?: Context["clock"] }) =>
  Compat.start(makeApp({ mailer: deps.mailer }), deps.store, deps.clock)
