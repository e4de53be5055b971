/**
 * A stand-in for a "front" (the broker and the ingress off the runtime's main thread), for
 * `frontProxy.ts`: Baton's own broker (`packages/broker-aedes`, sessions in memory, no guard) alone
 * in a process, whose `beforeAck` does what the ingress does before a PUBACK: parses the payload
 * (JSON), appends it to an ingress log in an SQLite file of its own (WAL, synchronous=NORMAL, as
 * the runtime's store), the appends of one turn of the event loop in one transaction (a group
 * commit); the PUBACK goes once that commits. Nothing is forwarded anywhere: it measures the
 * front's own accept path. Prints `ready {"port": ...}`; `FRONT_DB` is the SQLite file.
 */
import { DatabaseSync } from "node:sqlite"
import { Log } from "@baton/core"
import { EmbeddedBroker } from "@baton/broker-aedes"
import { settle } from "../settle.ts"

const db = new DatabaseSync(process.env.FRONT_DB ?? ":memory:")
db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL")
db.exec("CREATE TABLE IF NOT EXISTS ingress_log (seq INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL, client_id TEXT NOT NULL, received_at INTEGER NOT NULL)")
const insert = db.prepare("INSERT INTO ingress_log (topic, payload, client_id, received_at) VALUES (?, ?, ?, ?)")
let pending: Array<{ readonly topic: string; readonly payload: Buffer; readonly clientId: string; readonly done: () => void }> = []
const flush = () => {
  const batch = pending
  pending = []
  db.exec("BEGIN IMMEDIATE")
  for (const p of batch) insert.run(p.topic, p.payload, p.clientId, Date.now())
  db.exec("COMMIT")
  for (const p of batch) p.done()
}
const broker = await EmbeddedBroker.start({
  host: "127.0.0.1",
  mqttPort: 0,
  logger: Log.silent,
  beforeAck: (clientId, topic, payload) => {
    JSON.parse(payload.toString())
    return new Promise<void>((done) => {
      if (pending.length === 0) setImmediate(flush)
      pending.push({ topic, payload, clientId, done })
    })
  }
})
process.on("SIGTERM", () => void broker.close().then(() => process.exit(0)))
settle()
console.log(`ready ${JSON.stringify({ port: broker.mqttPort })}`)
