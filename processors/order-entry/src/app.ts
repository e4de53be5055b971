/**
 * The order-entry reference app (docs/concepts.md, section 1), on the public API only, as a user's
 * app would be: seven processors over one SQL store (broker topology), and the order workflow for
 * the mediator topology. E-mail goes through SMTP at `BATON_SMTP_URL`, or stays in the store.
 */
import { Baton } from "@baton/sdk"
import { events } from "./Contract.ts"
import type { Deps } from "./Deps.ts"
import * as Mailer from "./Mailer.ts"
import { migrations } from "./Schema.ts"
import * as Inventory from "./Inventory.ts"
import * as Notification from "./Notification.ts"
import * as OrderFulfillment from "./OrderFulfillment.ts"
import * as OrderPlacement from "./OrderPlacement.ts"
import * as OrderWorkflow from "./OrderWorkflow.ts"
import * as Payment from "./Payment.ts"
import * as Shipping from "./Shipping.ts"
import * as Warehouse from "./Warehouse.ts"

export interface Options {
  /** Instead of SMTP at `BATON_SMTP_URL` (a test's mailer). */
  readonly mailer?: Mailer.Mailer
}

/** The app with its options; the module's default export is the app without any. */
export const makeApp = (options: Options = {}) =>
  Baton.app("order-entry", (ctx) => {
    const deps: Deps = { ...ctx, mailer: options.mailer ?? Mailer.make({ smtpUrl: ctx.env.BATON_SMTP_URL }) }
    const { placeOrder, ...processing } = events
    return {
      name: "order-entry",
      initiating: [placeOrder],
      events: Object.values(processing),
      migrations,
      processors: [OrderPlacement, Notification, Payment, Inventory, Warehouse, OrderFulfillment, Shipping].map((p) => p.make(deps)),
      mediation: { rules: OrderWorkflow.rules, workflows: [OrderWorkflow.workflow] }
    }
  })

export default makeApp()
