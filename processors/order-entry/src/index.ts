/** The order-entry reference app (docs/concepts.md, section 1): seven processors over one SQL store. */
import type { App, Envelope } from "@baton/core"
import { Envelope as E, Sensitive } from "@baton/core"
import type { Store } from "@baton/store"
import { names, PlaceOrder } from "./Contract.ts"
import type { Mailer } from "./Mailer.ts"
import { migrations } from "./Schema.ts"
import * as Inventory from "./Inventory.ts"
import * as Notification from "./Notification.ts"
import * as OrderFulfillment from "./OrderFulfillment.ts"
import * as OrderPlacement from "./OrderPlacement.ts"
import * as Payment from "./Payment.ts"
import * as Shipping from "./Shipping.ts"
import * as Warehouse from "./Warehouse.ts"
import * as OrderWorkflow from "./OrderWorkflow.ts"

export * as Contract from "./Contract.ts"
export * as Mailer from "./Mailer.ts"
export { Inventory, Notification, OrderFulfillment, OrderPlacement, OrderWorkflow, Payment, Shipping, Warehouse }
export { migrations }

export const make = async (deps: { readonly store: Store; readonly mailer: Mailer; readonly clock?: Envelope.Clock }): Promise<App> => {
  await deps.store.migrate(migrations)
  const full = { ...deps, clock: deps.clock ?? E.systemClock }
  return {
    name: "order-entry",
    initiating: [
      {
        name: names.placeOrder,
        decode: E.decode(PlaceOrder),
        sensitive: Sensitive.fields(PlaceOrder),
        key: (data) => (data as PlaceOrder).customerId
      }
    ],
    processors: [OrderPlacement.make(full), Notification.make(full), Payment.make(full), Inventory.make(full), Warehouse.make(full), OrderFulfillment.make(full), Shipping.make(full)],
    mediation: { rules: OrderWorkflow.rules, workflows: [OrderWorkflow.workflow] }
  }
}
