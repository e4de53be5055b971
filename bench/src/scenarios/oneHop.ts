/**
 * Scenario 1, one hop: a QoS 1 event through one processor that handles it and publishes the next
 * event. Baton: `initiate/ping` → the ping processor (a supervised actor) → `events/pong`. Raw: a
 * hand-written MQTT.js relay `hop/in` → `hop/out` on a bare Aedes. Both run broker and processor in
 * one process; the load generator is this process, one connection, 500 messages in flight.
 */
import mqtt from "mqtt"
import { Process } from "@baton/testkit"
import { burst, child, counter, noDelay, within } from "../lib.ts"
import { onRuntime } from "./runtime.ts"

const drive = async (port: number, count: number, inTopic: string, outTopic: string, body: (i: number) => string): Promise<number> => {
  const client = noDelay(await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0 }))
  const got = counter(count)
  client.on("message", () => got.hit())
  await client.subscribeAsync(outTopic, { qos: 1 })
  const t0 = performance.now()
  await burst(count, 500, (i) => client.publishAsync(inTopic, body(i), { qos: 1 }))
  await within(got.done, 120_000, `${count} messages on ${outTopic}`)
  const rate = count / ((performance.now() - t0) / 1000)
  await client.endAsync()
  return rate
}

export const baton = (count: number, env: Record<string, string>) =>
  onRuntime({ BATON_APP: "ping", ...env }, (r: Process.Running) => drive(r.mqttPort!, count, "initiate/ping", "events/pong", (i) => JSON.stringify({ n: i })))

export const raw = async (count: number): Promise<number> => {
  const peer = await child("peers/aedes.ts", { PEER: "relay" })
  try {
    return await drive(Number(peer.info.port), count, "hop/in", "hop/out", (i) => JSON.stringify({ n: i }))
  } finally {
    await peer.stop()
  }
}
