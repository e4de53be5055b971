/**
 * The mediator topology, from a client's side: places an order whose payment gateway fails (test
 * card 4000000000000119), watches the workflow stop at step 2, looks at it over HTTP, and restarts
 * it with another card; the workflow resumes at the failed step and completes. Start the runtime
 * with `BATON_TOPOLOGY=mediator pnpm start`.
 *
 *   pnpm example:mediator          # BATON_URL=mqtt://127.0.0.1:1884 BATON_HTTP=http://127.0.0.1:8081 pnpm example:mediator
 */
import mqtt from "mqtt"

const url = process.env.BATON_URL ?? "mqtt://127.0.0.1:1883"
const http = process.env.BATON_HTTP ?? "http://127.0.0.1:8080"
const id = crypto.randomUUID()
const started = performance.now()
const since = () => `+${String(Math.round(performance.now() - started)).padStart(5)} ms`

const client = await mqtt.connectAsync(url, { protocolVersion: 4 })
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
  const workflow = (await (await fetch(`${http}/workflows/${id}`)).json()) as { status: string; failure: unknown; commands: ReadonlyArray<{ key: string; status: string }> }
  console.log(`operator: GET /workflows/${id} -> ${workflow.status}, ${workflow.commands.map((c) => `${c.key} ${c.status}`).join(", ")}`)
  console.log("operator: POST /workflows/<id>/restart with another card")
  const res = await fetch(`${http}/workflows/${id}/restart`, { method: "POST", body: JSON.stringify({ payment: { card: "4242424242424242" } }) })
  console.log(`operator: ${res.status}`)
}

await client.subscribeAsync("events/#", { qos: 1 })
const order = { customerId: "c-med", email: "med@example.com", items: [{ sku: "BOOK-1", qty: 1, price: 12.5 }], payment: { card: "4000000000000119" } }
await client.publishAsync("initiate/place-order", JSON.stringify({ id, type: "place-order", data: order }), { qos: 1 })
console.log(`${since()}  placed workflow ${id}`)
await Promise.race([finished, new Promise((_, reject) => setTimeout(() => reject(new Error("the workflow did not complete within 20 s")), 20_000))])
await client.endAsync()
