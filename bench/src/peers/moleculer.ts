/**
 * The order chain written with Moleculer 0.15 (the peer of scenario 2): seven services, each
 * reacting to an event and emitting the next, over its MQTT transporter (QoS 1, the strongest it
 * offers) on the same Aedes, with TCP_NODELAY. `SERVICES` picks the services this node hosts;
 * `CLIENT=1` makes it the load generator's node instead (see scenarios/orderFlow.ts). Its delivery
 * is at-most-once (docs/platform-facts.md): the client acknowledges before the handler runs, sessions
 * are clean, and there is no store.
 */
import { ServiceBroker, type ServiceSchema } from "moleculer"
import { setNoDelay, transporter } from "../moleculerTransport.ts"

interface Order {
  readonly orderId: string
  readonly customerId: string
  readonly email: string
  readonly items: ReadonlyArray<{ readonly sku: string; readonly qty: number; readonly price: number }>
  readonly sentAt: number
}

const stock = new Map<string, number>()
const services: Record<string, ServiceSchema> = {
  "order-placement": {
    name: "order-placement",
    events: { "place-order"(ctx) { void ctx.broker.emit("order-created", { ...(ctx.params as Order) }) } }
  },
  notification: {
    name: "notification",
    events: {
      "order-created"(ctx) { void ctx.broker.emit("email-sent", { orderId: (ctx.params as Order).orderId, template: "order-confirmation" }) },
      "order-fulfilled"(ctx) { void ctx.broker.emit("email-sent", { orderId: (ctx.params as Order).orderId, template: "ready-to-ship" }) }
    }
  },
  payment: {
    name: "payment",
    events: { "order-created"(ctx) { void ctx.broker.emit("payment-applied", { ...(ctx.params as Order), authorization: "auth" }) } }
  },
  inventory: {
    name: "inventory",
    events: {
      "order-created"(ctx) {
        const o = ctx.params as Order
        for (const i of o.items) stock.set(i.sku, (stock.get(i.sku) ?? 1000) - i.qty)
        void ctx.broker.emit("inventory-updated", { orderId: o.orderId, lines: o.items })
      }
    }
  },
  warehouse: { name: "warehouse", events: { "inventory-updated"() {} } },
  "order-fulfillment": {
    name: "order-fulfillment",
    events: { "payment-applied"(ctx) { void ctx.broker.emit("order-fulfilled", { ...(ctx.params as Order) }) } }
  },
  shipping: {
    name: "shipping",
    events: { "order-fulfilled"(ctx) { void ctx.broker.emit("order-shipped", { orderId: (ctx.params as Order).orderId, sentAt: (ctx.params as Order).sentAt, trackingId: "TRK" }) } }
  }
}

const hosted = (process.env.SERVICES ?? "").split(",").filter((s) => s !== "")
const broker = new ServiceBroker({
  nodeID: process.env.NODE_ID ?? `node-${process.pid}`,
  transporter: transporter(Number(process.env.MQTT_PORT)),
  logger: false
})
for (const name of hosted) broker.createService(services[name]!)
await broker.start()
setNoDelay(broker)
process.on("SIGTERM", () => void broker.stop().then(() => process.exit(0)))
console.log(`ready ${JSON.stringify({ node: broker.nodeID, services: hosted })}`)
