/**
 * The mediator topology, from a client's side: places an order whose payment gateway fails (test
 * card 4000000000000119), watches the workflow stop at step 2, looks at it over HTTP, and restarts
 * it with another card; the workflow resumes at the failed step and completes. Start the runtime
 * with `BATON_TOPOLOGY=mediator pnpm start`.
 *
 *   pnpm example:mediator          # BATON_MQTT_PORT=1884 BATON_HTTP_PORT=8081 pnpm example:mediator
 */
import { connect, httpJson, within } from "./Endpoints.ts"

const id = crypto.randomUUID()
const started = performance.now()
const since = () => `+${String(Math.round(performance.now() - started)).padStart(5)} ms`

const client = await connect()
const finished = new Promise<void>((resolve) => {
  client.on("message", (topic, payload) => {
    const e = JSON.parse(payload.toString()) as { correlationId: string; type: string; data: Record<string, unknown> }
    if (e.correlationId !== id) return
    const d = e.data
    console.log(`${since()}  ${topic.padEnd(32)} ${String(d.step ?? "")} ${String(d.outcome ?? d.reason ?? "")}`)
    if (e.type === "workflow-failed") void restart()
    if (e.type === "workflow-completed") resolve()
  })
})

const restart = async () => {
  const workflow = await httpJson<{ status: string; failure: unknown; commands: ReadonlyArray<{ key: string; status: string }> }>("GET", `/workflows/${id}`)
  console.log(`operator: GET /workflows/${id} -> ${workflow.status}, ${workflow.commands.map((c) => `${c.key} ${c.status}`).join(", ")}`)
  console.log("operator: POST /workflows/<id>/restart with another card")
  const restarted = await httpJson<{ status?: string }>("POST", `/workflows/${id}/restart`, { payment: { card: "4242424242424242" } })
  console.log(`operator: restarted${restarted.status === undefined ? "" : `, ${restarted.status}`}`)
}

await client.subscribeAsync("events/#", { qos: 1 })
const order = { customerId: "c-med", email: "med@example.com", items: [{ sku: "BOOK-1", qty: 1, price: 12.5 }], payment: { card: "4000000000000119" } }
await client.publishAsync("initiate/place-order", JSON.stringify({ id, type: "place-order", data: order }), { qos: 1 })
console.log(`${since()}  placed workflow ${id}`)
await within(20_000, "the workflow did not complete", finished)
await client.endAsync()
