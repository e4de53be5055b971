/**
 * Broker-topology client: places a few orders with MQTT.js and prints each order's event chain as
 * it arrives. Any MQTT client would do; this one sends full envelopes so it knows each order's
 * correlation id before the first event comes back.
 *
 *   pnpm example:orders                       # 3 orders to mqtt://127.0.0.1:1883
 *   BATON_MQTT_PORT=1884 pnpm example:orders 5  # the runtime's own variables (Endpoints.ts)
 */
import { connect, silenceHint } from "./Endpoints.ts"

const count = Number(process.argv[2] ?? 3)
const cards = ["4242424242424242", "5555555555554444", "4000000000000002"] // the last one is declined

interface Envelope {
  readonly id: string
  readonly type: string
  readonly correlationId: string
  readonly causationId: string
  readonly data: Record<string, unknown>
}

const client = await connect()
let timer: NodeJS.Timeout | undefined
const orders = new Map<string, { readonly label: string; readonly started: number; readonly seen: Array<string>; done: boolean }>()

client.on("message", (topic, payload) => {
  const e = JSON.parse(payload.toString()) as Envelope
  const order = orders.get(e.correlationId)
  if (order === undefined) return
  const ms = String(Date.now() - order.started).padStart(4)
  const detail = e.data.orderId ?? e.data.reason ?? ""
  console.log(`${order.label} +${ms} ms  ${topic.padEnd(26)} ${String(e.data.template ?? e.data.trackingId ?? e.data.reason ?? detail)}`)
  order.seen.push(e.type)
  // The broker topology's chain ends with two e-mails and either order-shipped, or payment-denied
  // and its stock released (inventory-released); the mediator topology's with the workflow's end
  // (completed, denied included, or failed); either with a rejection.
  const emails = order.seen.filter((t) => t === "email-sent").length
  const ended = order.seen.includes("order-shipped") || (order.seen.includes("payment-denied") && order.seen.includes("inventory-released"))
  const workflowEnded = e.type === "workflow-completed" || e.type === "workflow-failed"
  if ((ended && emails === 2) || workflowEnded || topic.startsWith("errors/")) order.done = true
  // Every order placed (an early one can end before the next is placed) and every one ended.
  if (orders.size === count && [...orders.values()].every((o) => o.done)) finish(0)
})
await client.subscribeAsync(["events/#", "errors/#"], { qos: 1 })

for (let i = 0; i < count; i++) {
  const id = crypto.randomUUID()
  const card = cards[i % cards.length]!
  orders.set(id, { label: `order ${i + 1}`, started: Date.now(), seen: [], done: false })
  await client.publishAsync(
    "initiate/place-order",
    JSON.stringify({
      id,
      type: "place-order",
      data: { customerId: `c-${i + 1}`, email: `customer${i + 1}@example.com`, items: [{ sku: `BOOK-${(i % 5) + 1}`, qty: 1 + (i % 3), price: 12.5 }], payment: { card } }
    }),
    { qos: 1 }
  )
  console.log(`order ${i + 1} placed (correlation ${id}, card ${card.slice(-4)})`)
}

timer = setTimeout(() => {
  console.error(`timed out: ${[...orders.values()].filter((o) => !o.done).map((o) => o.label).join(", ")} did not finish; ${silenceHint}`)
  finish(1)
}, 10_000)

function finish(code: number) {
  clearTimeout(timer)
  client.end(false, {}, () => process.exit(code))
}
