/**
 * `node bench/src/inboxShape.ts [<orders>]`: runs the order flow (burst) on this tree's runtime on
 * SQLite, stops it, and prints what its file holds: the inbox's rows by processor and status with
 * their payloads' and ids' bytes, how many processors' rows each envelope has, and each table's and
 * index's pages, bytes and cells (`dbstat`). The data directory stays (its path is printed).
 */
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { DatabaseSync } from "node:sqlite"
import { Process } from "@baton/testkit"
import { placeOrders } from "./scenarios/orders.ts"

const count = Number(process.argv[2] ?? 2000)
const dataDir = mkdtempSync(join(tmpdir(), "baton-shape-"))
const running = await Process.startProcess(dataDir, { BATON_PUBLISH_RATE: "1000000" })
try {
  await placeOrders(running.mqttPort!, count, "events/order-shipped")
  await new Promise((r) => setTimeout(r, 1500))
} finally {
  await running.kill("SIGTERM")
}
console.log("data dir", dataDir)
const db = new DatabaseSync(join(dataDir, "baton.db"), { readOnly: true })
console.table(db.prepare("SELECT processor, status, COUNT(*) AS n, AVG(LENGTH(payload)) AS payload, AVG(LENGTH(envelope_id)) AS id FROM inbox GROUP BY processor, status").all())
console.table(db.prepare("SELECT c AS processors, COUNT(*) AS envelopes FROM (SELECT COUNT(*) AS c FROM inbox GROUP BY envelope_id) GROUP BY c").all())
console.table(db.prepare("SELECT name, COUNT(*) AS pages, SUM(payload) AS bytes, SUM(ncell) AS cells FROM dbstat GROUP BY name ORDER BY pages DESC LIMIT 16").all())
db.close()
