/**
 * WAL checkpoints off the event loop. SQLite's automatic checkpoint runs inside the COMMIT that
 * takes the WAL past 1,000 pages, on the thread that commits: it copies the pages into the
 * database file and syncs it, a 20-130 ms stall of the runtime's one event loop. Here a worker
 * thread with its own connection to the same file runs `PRAGMA wal_checkpoint(PASSIVE)` every
 * `intervalMs` instead (less often while nothing is written): PASSIVE takes no lock a writer waits for (it copies what no reader
 * needs), and the writer restarts the WAL from its start once a checkpoint has copied all of it
 * before its next transaction. Under a steady load without gaps (the order flow commits ~2,000
 * transactions a second at 200 orders/s) that moment never comes: a checkpoint takes milliseconds
 * (two syncs) and more frames are committed meanwhile. The WAL then grows to the writing
 * connection's own automatic checkpoint mark (`fallbackPages`), where that connection checkpoints
 * in its COMMIT, on the event loop (syncing the WAL, copying what the worker has not, syncing the
 * database file) and syncs the restarted WAL's header: 5-25 ms here, waited out by every message
 * in flight. The mark is thus high (128 MB of WAL, a few seconds of the order flow), so that it
 * is reached rarely; it also bounds the WAL should the worker fall behind or die. The WAL file
 * keeps its largest size until the last connection closes (SQLite reuses it from its start).
 *
 * Durability is SQLite's own: a checkpoint is safe to kill at any point (the WAL stays the truth
 * until the database file is synced), and it syncs as the `synchronous` setting says.
 */
import { Worker } from "node:worker_threads"

export interface Options {
  readonly path: string
  readonly synchronous: "OFF" | "NORMAL" | "FULL"
  readonly intervalMs: number
}

export interface Checkpointer {
  /** Stops the worker after its checkpoint in progress, if any, and closes its connection. */
  readonly stop: () => Promise<void>
}

/** The worker's body (plain JavaScript, evaluated: no file to resolve at run time). */
const source = `
const { parentPort, workerData } = require("node:worker_threads")
const { DatabaseSync } = require("node:sqlite")
const db = new DatabaseSync(workerData.path)
db.exec("PRAGMA synchronous = " + workerData.synchronous + "; PRAGMA wal_autocheckpoint = 0;")
const checkpoint = db.prepare("PRAGMA wal_checkpoint(PASSIVE)")
// Idle (nothing new in the WAL since the last checkpoint): the wait doubles, up to 16 times the interval.
let wait = workerData.intervalMs
let last = -1
let timer
const tick = () => {
  try {
    const { log, checkpointed } = checkpoint.get()
    const idle = log === last && checkpointed === log
    last = log
    wait = idle ? Math.min(wait * 2, 16 * workerData.intervalMs) : workerData.intervalMs
  } catch (error) {
    parentPort.postMessage({ error: String(error && error.message || error) })
  }
  timer = setTimeout(tick, wait)
}
timer = setTimeout(tick, wait)
parentPort.on("message", () => {
  clearTimeout(timer)
  db.close()
  parentPort.close()
})
`

/**
 * The writing connection's automatic checkpoint mark while the worker runs, in pages (4 KB): a
 * bound, and under a steady load the rule (above). At 4,000 pages (16 MB) the order flow at 200/s
 * reached it about twice a second, each a 5-25 ms stall of the event loop; at 32,000 every few seconds.
 */
export const fallbackPages = 32_000

export const start = (options: Options, onError: (message: string) => void = () => {}): Checkpointer => {
  const worker = new Worker(source, { eval: true, workerData: options })
  worker.on("message", (m: { readonly error?: string }) => {
    if (m.error !== undefined) onError(m.error)
  })
  worker.on("error", (error) => onError(error.message))
  // It never keeps the process alive: SQLite's WAL is safe whenever the process ends.
  worker.unref()
  const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()))
  return {
    stop: async () => {
      // Held until it has stopped: otherwise the process could end while the close is awaited.
      worker.ref()
      worker.postMessage("stop")
      await exited
    }
  }
}
