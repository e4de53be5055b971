/**
 * A bare embedded Aedes (memory sessions, no guard, TCP_NODELAY) for the raw baselines, with an
 * optional hand-written MQTT.js peer in the same process (as Baton hosts its processors):
 * `PEER=relay` subscribes `hop/in` and publishes each message on to `hop/out` (QoS 1);
 * `PEER=echo` answers each `rr/req` on the reply topic named in it (QoS 0). `REDIS_URL` and
 * `CLUSTER=1`: a node of a Redis-clustered Aedes (the cluster scenario's per-hop cost). It runs a
 * full GC before its `ready` line (`settle.ts`; `PEER_SETTLE=0`: not). `SESSIONS_DIR`: sessions on disk
 * in that folder (as the runtime's own broker keeps them), the external broker of `ab.ts`'s `#aedes` arm.
 * `PEER=durable-echo`: the floor of a durable request-reply (`rrFloor.ts`), no MQTT.js peer: each
 * `rr/req` is written to a SQLite file in `FLOOR_DIR` (WAL, synchronous=NORMAL, as Baton's store)
 * in one transaction before its PUBACK (the broker's `beforeAck`, as the runtime's ingress), and
 * its reply published in-process at QoS 0 right after the COMMIT. `FLOOR_SHAPE=one`: one INSERT
 * (the request with its reply, its id unique: what a durable, deduplicated answer needs at least);
 * `FLOOR_SHAPE=baton`: the five writes of Baton's inline round trip (the ingress log, the seen id,
 * the inbox row, the previous reply's outbox delete, the reply's outbox row).
 */
import type { Socket } from "node:net"
import { join } from "node:path"
import { DatabaseSync } from "node:sqlite"
import mqtt from "mqtt"
import { Log } from "@baton/core"
import { EmbeddedBroker } from "@baton/broker-aedes"
import { settle } from "../settle.ts"

const floorShape = process.env.PEER === "durable-echo" ? (process.env.FLOOR_SHAPE ?? "one") : undefined
const floor = floorShape === undefined ? undefined : durableEcho(floorShape)
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
      : {}),
  ...(floor === undefined ? {} : { beforeAck: (_clientId: string, topic: string, payload: Buffer) => (topic === "rr/req" ? floor(payload) : undefined) })
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
function durableEcho(shape: string) {
  const db = new DatabaseSync(join(process.env.FLOOR_DIR ?? ".", "floor.db"))
  db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA temp_store = MEMORY")
  db.exec(`CREATE TABLE IF NOT EXISTS requests (id TEXT PRIMARY KEY, payload BLOB NOT NULL, reply TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL, received_at TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS seen (envelope_id TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS inbox (processor TEXT NOT NULL, envelope_id TEXT NOT NULL, status TEXT NOT NULL, PRIMARY KEY (processor, envelope_id)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL)`)
  const begin = db.prepare("BEGIN IMMEDIATE")
  const commit = db.prepare("COMMIT")
  const one = db.prepare("INSERT INTO requests (id, payload, reply) VALUES (?, ?, ?)")
  const log = db.prepare("INSERT INTO log (topic, payload, received_at) VALUES (?, ?, ?)")
  const seen = db.prepare("INSERT INTO seen (envelope_id, seq) VALUES (?, ?)")
  const inbox = db.prepare("INSERT OR IGNORE INTO inbox (processor, envelope_id, status) VALUES ('echo', ?, 'done')")
  const sent = db.prepare("DELETE FROM outbox WHERE seq <= ?")
  const outbox = db.prepare("INSERT INTO outbox (topic, payload) VALUES (?, ?)")
  let last = 0
  return (payload: Buffer): Promise<void> => {
    const request = JSON.parse(payload.toString()) as { id: string; replyTo: string; data: unknown }
    const reply = JSON.stringify({ correlationId: request.id, data: request.data })
    begin.run()
    if (shape === "baton") {
      const seq = Number(log.run("rr/req", payload, new Date().toISOString()).lastInsertRowid)
      seen.run(request.id, seq)
      inbox.run(request.id)
      sent.run(last)
      last = Number(outbox.run(request.replyTo, reply).lastInsertRowid)
    } else one.run(request.id, payload, reply)
    commit.run()
    void broker.publish(request.replyTo, reply, 0)
    return Promise.resolve()
  }
}
process.on("SIGTERM", () => void broker.close().then(() => process.exit(0)))
// Its start's garbage collected before it is ready (`settle.ts`), not in the first paced second (PEER_SETTLE=0: not).
if (process.env.PEER_SETTLE !== "0") settle()
console.log(`ready ${JSON.stringify({ port: broker.mqttPort })}`)
