/**
 * A bare embedded Aedes (memory sessions, no guard, TCP_NODELAY) for the raw baselines, with an
 * optional hand-written MQTT.js peer in the same process (as Baton hosts its processors):
 * `PEER=relay` subscribes `hop/in` and publishes each message on to `hop/out` (QoS 1);
 * `PEER=echo` answers each `rr/req` on the reply topic named in it (QoS 0). `REDIS_URL` and
 * `CLUSTER=1`: a node of a Redis-clustered Aedes (the cluster scenario's per-hop cost). It runs a
 * full GC before its `ready` line (`settle.ts`; `PEER_SETTLE=0`: not). `SESSIONS_DIR`: sessions on disk
 * in that folder (as the runtime's own broker keeps them), the external broker of `ab.ts`'s `#aedes` arm.
 */
import type { Socket } from "node:net"
import mqtt from "mqtt"
import { Log } from "@baton/core"
import { EmbeddedBroker } from "@baton/broker-aedes"
import { settle } from "../settle.ts"

// REDIS_URL: sessions in Redis; with CLUSTER=1 too, every such broker on that Redis is one broker.
const redis = process.env.REDIS_URL
const broker = await EmbeddedBroker.start({
  host: "127.0.0.1",
  mqttPort: Number(process.env.PORT ?? 0),
  logger: Log.silent,
  ...(redis !== undefined
    ? { sessions: { kind: "redis", url: redis, cluster: process.env.CLUSTER === "1" } }
    : process.env.SESSIONS_DIR !== undefined
      ? { sessions: { kind: "disk", dir: process.env.SESSIONS_DIR } }
      : {})
})
const peer = process.env.PEER
if (peer === "relay" || peer === "echo") {
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.mqttPort}`, { protocolVersion: 4, clientId: `raw-${peer}` })
  ;(client.stream as Partial<Socket>).setNoDelay?.(true)
  client.on("message", (_topic, payload) => {
    if (peer === "relay") void client.publishAsync("hop/out", payload, { qos: 1 })
    else {
      const request = JSON.parse(payload.toString()) as { id: string; replyTo: string; data: unknown }
      void client.publishAsync(request.replyTo, JSON.stringify({ correlationId: request.id, data: request.data }), { qos: 0 })
    }
  })
  await client.subscribeAsync(peer === "relay" ? "hop/in" : "rr/req", { qos: 1 })
}
process.on("SIGTERM", () => void broker.close().then(() => process.exit(0)))
// Its start's garbage collected before it is ready (`settle.ts`), not in the first paced second (PEER_SETTLE=0: not).
if (process.env.PEER_SETTLE !== "0") settle()
console.log(`ready ${JSON.stringify({ port: broker.mqttPort })}`)
