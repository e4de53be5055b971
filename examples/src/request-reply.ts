/**
 * Request-reply (docs/concepts.md, section 7) with `@baton/request-reply`: places an order and waits
 * for its order id, in both modes. Works in both topologies (`BATON_TOPOLOGY=mediator pnpm start`).
 *
 *   pnpm example:request-reply          # BATON_MQTT_PORT=1884 pnpm example:request-reply
 */
import { make, type Mode } from "@baton/request-reply"
import { connect } from "./Endpoints.ts"

const clientId = `example-${crypto.randomUUID().slice(0, 8)}`
const client = await connect({ clientId })
const order = { customerId: "c-rr", email: "rr@example.com", items: [{ sku: "BOOK-2", qty: 1, price: 9.5 }], payment: { card: "4242424242424242" } }

for (const mode of ["correlation", "temporary"] as ReadonlyArray<Mode>) {
  const requester = await make(client, { clientId, mode, timeoutMs: 5000 })
  const started = performance.now()
  const reply = await requester.request("initiate/place-order", order)
  console.log(`${mode.padEnd(11)} ${(performance.now() - started).toFixed(1).padStart(6)} ms  ${reply.type} ${JSON.stringify(reply.data)} (correlationId ${reply.correlationId})`)
  await requester.close()
}
await client.endAsync()
