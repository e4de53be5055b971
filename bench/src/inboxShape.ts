/**
 * `node bench/src/inboxShape.ts <orders> [<tree>]`: runs the order flow (burst) on one runtime
 * (the tree's) on SQLite, stops it, and prints what its file holds: the inbox's rows by processor
 * and status with their payloads' bytes, and each table's and index's pages (`dbstat`).
 */
import { spawn } from "node:child_process"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { DatabaseSync } from "node:sqlite"
import { benchRuntimeEnv } from "./lib.ts"
import { placeOrders } from "./scenarios/orders.ts"

const [countArg = "2000", treeArg = "."] = process.argv.slice(2)
const tree = resolve(treeArg)
const dataDir = mkdtempSync(join(tmpdir(), "baton-shape-"))
const child = spawn(process.execPath, [join(tree, "runtime/src/main.ts")], { env: benchRuntimeEnv(dataDir, { mediator: false }), stdio: ["ignore", "pipe", "pipe"] })
let output = ""
child.stdout.on("data", (b: Buffer) => (output += b.toString()))
child.stderr.on("data", (b: Buffer) => (output += b.toString()))
const mqtt = await new Promise<number>((ok, fail) => {
  const check = () => {
    const m = output.match(/runtime ready .*http=(\d+)(?: mqtt=(\d+))?/)
    if (m !== null) ok(Number(m[2]))
    else if (child.exitCode !== null) fail(new Error(output))
    else setTimeout(check, 20)
  }
  check()
})
await placeOrders(mqtt, Number(countArg), "events/order-shipped")
await new Promise((r) => setTimeout(r, 1500))
child.kill("SIGTERM")
await new Promise((r) => child.on("exit", r))
console.log("data dir", dataDir)
const { readdirSync } = await import("node:fs")
const file = readdirSync(dataDir, { recursive: true }).map(String).find((f) => f.endsWith(".db") || f.endsWith(".sqlite"))!
const db = new DatabaseSync(join(dataDir, file))
console.table(db.prepare("SELECT processor, status, COUNT(*) AS n, AVG(LENGTH(payload)) AS payload, AVG(LENGTH(envelope_id)) AS id FROM inbox GROUP BY processor, status").all())
console.table(db.prepare("SELECT name, COUNT(*) AS pages, SUM(payload) AS bytes, SUM(ncell) AS cells FROM dbstat GROUP BY name ORDER BY pages DESC").all())
console.table(db.prepare("SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE tbl_name = 'inbox'").all())
