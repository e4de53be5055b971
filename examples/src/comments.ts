/**
 * Asynchronous accept versus a synchronous call (docs/concepts.md, section 3). Start the runtime with
 * `BATON_APP=comments pnpm start`, then `pnpm example:comments`. The MQTT comment is acknowledged
 * as soon as it is durable, and its checks report as they finish; the HTTP comment answers only
 * when every check is done.
 *
 *   BATON_MQTT_PORT=1884 BATON_HTTP_PORT=8081 pnpm example:comments
 */
import { connect, httpJson, within } from "./Endpoints.ts"

const comment = { author: "ann", email: "ann@example.com", text: process.argv[2] ?? "What a frak of a chapter." }

const client = await connect()
const id = crypto.randomUUID()
const started = performance.now()
const since = () => `+${String(Math.round(performance.now() - started)).padStart(5)} ms`
const done = new Promise<void>((resolve) => {
  client.on("message", (topic, payload) => {
    const e = JSON.parse(payload.toString()) as { correlationId: string; type: string; data: Record<string, unknown> }
    if (e.correlationId !== id) return
    console.log(`${since()}  ${topic.padEnd(26)} ${String(e.data.reason ?? e.data.status ?? e.data.ok ?? "")}`)
    if (e.type === "email-sent") resolve()
  })
})
await client.subscribeAsync(["events/#", "errors/#"], { qos: 1 })
console.log(`MQTT: publishing initiate/post-comment ${JSON.stringify(comment.text)}`)
await client.publishAsync("initiate/post-comment", JSON.stringify({ id, type: "post-comment", data: comment }), { qos: 1 })
console.log(`${since()}  accepted (PUBACK: the comment is durable; the checks run on)`)
await within(20_000, "the comment's checks did not finish", done)
await client.endAsync()

console.log("\nHTTP: POST /comments, the same work while the caller waits")
const t = performance.now()
const answer = await httpJson("POST", "/comments", comment)
console.log(`+${String(Math.round(performance.now() - t)).padStart(5)} ms  ${JSON.stringify(answer)}`)
