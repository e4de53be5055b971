/**
 * The workflow event pattern, from a client's side: places trades for two accounts, one of them
 * malformed beyond repair, and watches what happens. ACC-1's later trades are parked while ACC-2
 * keeps trading; the repairable trades are fixed without a person; then this client plays the
 * operator and resubmits the broken trade corrected through the dashboard, and ACC-1's parked
 * trades execute in their original order. Start the runtime with `BATON_APP=trading pnpm start`.
 *
 *   pnpm example:trading          # BATON_MQTT_PORT=1884 BATON_HTTP_PORT=8081 pnpm example:trading
 */
import { connect, fail, httpJson, silenceHint } from "./Endpoints.ts"

const trades = [
  { account: "ACC-1", symbol: "AAPL", side: "buy", quantity: 10 },
  { account: "ACC-1", symbol: "MSFT", side: "buy", quantity: -5 }, // cannot be repaired: to the dashboard
  { account: "ACC-1", symbol: "GOOG", side: "buy", quantity: 3 }, // parked behind it
  { account: "ACC-1", symbol: "aapl", side: "sell", quantity: "4" }, // parked, then repaired
  { account: "ACC-2", symbol: "googl", side: "buy", quantity: 7 }, // repaired: alias
  { account: "ACC-2", symbol: "AMZN", side: "sell", quantity: 2 }
]

const client = await connect()
const started = Date.now()
let executed = 0
client.on("message", (topic, payload) => {
  const e = JSON.parse(payload.toString()) as { type: string; data: Record<string, unknown> }
  const d = e.data
  const what =
    e.type === "trade-executed"
      ? `${d.account} #${d.seq}: ${d.side} ${d.quantity} ${d.symbol} at ${d.price}`
      : `${d.key ?? ""} ${Array.isArray(d.changes) ? `repaired: ${d.changes.join(", ")}` : String(d.error ?? d.reason ?? "")}`
  console.log(`+${String(Date.now() - started).padStart(4)} ms  ${topic.padEnd(34)} ${what}`)
  if (e.type === "trade-executed" && ++executed === trades.length) {
    console.log("every trade executed, each account in the order it was placed")
    void client.endAsync().then(() => process.exit(0))
  }
})
await client.subscribeAsync(["events/#", "errors/#"], { qos: 1 })
for (const t of trades) await client.publishAsync("initiate/place-trade", JSON.stringify(t), { qos: 1 })

// The operator: wait for the dashboard entry, then resubmit it with a corrected quantity.
for (;;) {
  const { entries } = await httpJson<{ entries: Array<{ id: string; key: string; payload: Record<string, unknown> }> }>("GET", "/dashboard")
  const entry = entries.find((e) => e.key === "ACC-1")
  if (entry !== undefined) {
    console.log(`operator: resubmitting dashboard entry ${entry.id} with quantity 5`)
    await httpJson("POST", `/dashboard/${entry.id}/resubmit`, { ...entry.payload, quantity: 5 })
    break
  }
  await new Promise((r) => setTimeout(r, 200))
}
setTimeout(() => fail(`not every trade executed within 10 s; ${silenceHint}`), 10_000).unref()
