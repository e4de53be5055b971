/**
 * `node bench/src/walTables.ts <orders> [<tree>]`: where the order flow's WAL pages go on SQLite.
 * One runtime of the tree (this one by default), the order-flow burst (after a warm-up of 200
 * orders), `strace` on the runtime process recording each WAL frame's header (the first of the two
 * `pwrite64` SQLite makes a frame: the page number, and the database size on a transaction's last
 * frame), so that frames are grouped by transaction. Each page is named after the b-tree (table or
 * index) that owns it in the database file at the end (`dbstat`, through a hard link that outlives
 * the run's folder; a page freed and reused in the run counts for its last owner). A transaction is
 * told by what it writes: `ingress_log` an ingress append (with the inline forward into the first
 * processor's inbox), the outbox alone a deferred delete of sent entries in a commit of its own,
 * the inbox a group commit. Prints the transactions an order and the pages a transaction by kind,
 * then the pages an order by b-tree and kind. Needs strace and ptrace rights over a child process;
 * strace slows the runtime (about 0.6x orders/s), so groups are somewhat larger than without it.
 */
import { spawn } from "node:child_process"
import { linkSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { DatabaseSync } from "node:sqlite"
import { sleep } from "./lib.ts"
import { placeOrders } from "./scenarios/orders.ts"

const [countArg = "1500", tree = "."] = process.argv.slice(2)
const count = Number(countArg)
const { onRuntime } = (await import(resolve(tree, "bench/src/scenarios/runtime.ts"))) as typeof import("./scenarios/runtime.ts")
const work = mkdtempSync(join(tmpdir(), "baton-waltables-"))
const trace = join(work, "strace.txt")
const db = join(work, "baton.db")
await onRuntime({}, async (r) => {
  const pid = r.child.pid!
  const port = r.mqttPort!
  await placeOrders(port, 200, "events/order-shipped")
  const dataDir = readFileSync(`/proc/${pid}/environ`, "utf8").split("\0").find((v) => v.startsWith("BATON_DATA_DIR="))!.slice("BATON_DATA_DIR=".length)
  linkSync(join(dataDir, "baton.db"), db)
  const strace = spawn("strace", ["-f", "-y", "-xx", "-s", "24", "-e", "trace=pwrite64", "-o", trace, "-p", String(pid)], { stdio: ["ignore", "ignore", "pipe"] })
  await sleep(500)
  await placeOrders(port, count, "events/order-shipped")
  await sleep(300)
  strace.kill("SIGINT")
  await new Promise((done) => strace.once("exit", done))
})

// The page's owner in the file as the runtime's close left it (its last checkpoint copied the WAL in).
const owner = new Map<number, string>()
const file = new DatabaseSync(db, { readOnly: true })
for (const row of file.prepare("SELECT pageno, name FROM dbstat").all()) owner.set(Number(row.pageno), String(row.name))
file.close()

// strace -xx prints every byte of a path and a buffer as \xHH: the WAL's file descriptor ends in "-wal".
const hex = (s: string) => Buffer.from(s.replaceAll("\\x", ""), "hex")
const header = /pwrite64\(\d+<((?:\\x[0-9a-f]{2})+)>, "((?:\\x[0-9a-f]{2})+)", 24, /
const transactions: Array<Array<number>> = []
let frames: Array<number> = []
for (const line of readFileSync(trace, "utf8").split("\n")) {
  const m = header.exec(line)
  if (m === null || !hex(m[1]!).toString().endsWith("-wal")) continue
  const b = hex(m[2]!)
  frames.push(b.readUInt32BE(0))
  if (b.readUInt32BE(4) !== 0) {
    transactions.push(frames)
    frames = []
  }
}
rmSync(work, { recursive: true, force: true })

const kindOf = (names: ReadonlySet<string>): string =>
  names.has("ingress_log")
    ? "ingress append"
    : names.has("inbox")
      ? "group commit"
      : [...names].every((n) => n.includes("outbox"))
        ? "outbox delete"
        : "other"
const byKind = new Map<string, { transactions: number; pages: number }>()
const byTree = new Map<string, Map<string, number>>()
for (const t of transactions) {
  const names = t.map((p) => owner.get(p) ?? "(freed)")
  const kind = kindOf(new Set(names))
  const k = byKind.get(kind) ?? { transactions: 0, pages: 0 }
  byKind.set(kind, { transactions: k.transactions + 1, pages: k.pages + t.length })
  for (const name of names) {
    const of = byTree.get(name) ?? new Map<string, number>()
    byTree.set(name, of.set(kind, (of.get(kind) ?? 0) + 1))
  }
}
const total = transactions.reduce((n, t) => n + t.length, 0)
console.log(`${count} orders: ${(transactions.length / count).toFixed(3)} transactions and ${(total / count).toFixed(2)} WAL pages an order`)
for (const [kind, k] of [...byKind].sort((a, b) => b[1].pages - a[1].pages))
  console.log(`  ${kind.padEnd(16)} ${(k.transactions / count).toFixed(3)} an order, ${(k.pages / k.transactions).toFixed(1)} pages each, ${(k.pages / count).toFixed(2)} pages an order`)
console.log("pages an order by b-tree (by kind of transaction):")
for (const [name, of] of [...byTree].sort((a, b) => [...b[1].values()].reduce((x, y) => x + y) - [...a[1].values()].reduce((x, y) => x + y))) {
  const sum = [...of.values()].reduce((x, y) => x + y)
  console.log(`  ${name.padEnd(40)} ${(sum / count).toFixed(3)}  (${[...of].map(([kind, n]) => `${kind} ${(n / count).toFixed(3)}`).join(", ")})`)
}
