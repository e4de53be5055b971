/**
 * The README's small app, complete: one initiating event, one processor that writes a row and
 * announces an event, one migration. Run it with `pnpm baton start --app examples/shop/app.ts`;
 * packages/sdk/test/shop.int.test.ts runs it through the testkit.
 */
import { Baton, Schema, SqlClient } from "@baton/sdk"

export const PlaceOrder = Baton.initiating(
  "shop-order",
  Schema.Struct({ orderId: Schema.NonEmptyString, total: Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0)) }),
  { key: (order) => order.orderId }
)
export const OrderAccepted = Baton.event("shop-order-accepted", Schema.Struct({ orderId: Schema.String, total: Schema.Finite }))

const accept = Baton.processor({
  name: "shop-accept",
  on: PlaceOrder,
  // A generator function, `event` typed by `on`: made into an Effect function once, not per message.
  handle: function* (event) {
    const sql = yield* SqlClient.SqlClient
    // Runs in the transaction that marks the message processed and stores what it announces.
    yield* sql`INSERT INTO shop_orders (id, total) VALUES (${event.data.orderId}, ${event.data.total}) ON CONFLICT DO NOTHING`
    return [OrderAccepted.make({ orderId: event.data.orderId, total: event.data.total })]
  }
})

export default Baton.app({
  name: "shop",
  initiating: [PlaceOrder],
  events: [OrderAccepted],
  migrations: [{ name: "shop-1", sql: "CREATE TABLE shop_orders (id TEXT PRIMARY KEY, total REAL NOT NULL)" }],
  processors: [accept]
})
