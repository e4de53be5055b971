/** The order-entry reference app (docs/concepts.md, section 1): the app module (`./app`) and its parts. */
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
export { Inventory, Notification, OrderFulfillment, OrderPlacement, OrderWorkflow, Payment, Shipping, Warehouse }
export { migrations } from "./Schema.ts"
