/**
 * A synchronous PostgreSQL connection: a worker thread owns the connection, and the calling thread
 * blocks (Atomics.wait) until each answer is back, the technique of `synckit`. It lets the stores
 * and processors written against `node:sqlite`'s synchronous API run unchanged on PostgreSQL,
 * with the same transaction boundaries (handler effects, inbox mark and outbox in one transaction).
 * The price: the event loop waits during each round trip (~0.1-0.3 ms on loopback).
 */
import { MessageChannel, receiveMessageOnPort, Worker } from "node:worker_threads"

export interface Result {
  readonly rows: ReadonlyArray<Record<string, unknown>>
  readonly rowCount: number
}

/** A PostgreSQL error, with its SQLSTATE code (`40P01` deadlock, `23505` unique violation, ...). */
export class PgError extends Error {
  readonly code: string | undefined
  constructor(message: string, code: string | undefined) {
    super(message)
    this.name = "PgError"
    this.code = code
  }
}

export interface Connection {
  /** Runs one statement (with `$n` parameters) or, without parameters, a script of several. */
  readonly query: (sql: string, params?: ReadonlyArray<unknown>) => Result
  readonly close: () => Promise<void>
}

export const connect = (url: string, options: { readonly timeoutMs?: number } = {}): Connection => {
  const timeoutMs = options.timeoutMs ?? 30_000
  const signal = new Int32Array(new SharedArrayBuffer(4))
  const { port1, port2 } = new MessageChannel()
  const worker = new Worker(new URL("./PgWorker.ts", import.meta.url), {
    workerData: { url, port: port2, signal },
    transferList: [port2],
    // `--input-type` (a script given with -e) would stop the worker's module from loading.
    execArgv: process.execArgv.filter((a) => !a.startsWith("--input-type"))
  })
  worker.unref()
  let closed = false
  let last = 0
  const query = (sql: string, params?: ReadonlyArray<unknown>): Result => {
    if (closed) throw new Error("the PostgreSQL connection is closed")
    // Each answer names its request: an answer that comes after its caller gave up (a timeout)
    // is skipped, never taken for the answer to a later query.
    const id = ++last
    port1.postMessage(params === undefined ? { id, sql } : { id, sql, params })
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const seen = Atomics.load(signal, 0)
      for (let m = receiveMessageOnPort(port1); m !== undefined; m = receiveMessageOnPort(port1)) {
        const reply = m.message as
          | { readonly id: number; readonly ok: true; readonly rows: ReadonlyArray<Record<string, unknown>>; readonly rowCount: number }
          | { readonly id: number; readonly ok: false; readonly message: string; readonly code?: string }
        if (reply.id !== id) continue
        if (!reply.ok) throw new PgError(reply.message, reply.code)
        return reply
      }
      const left = deadline - Date.now()
      if (left <= 0) throw new PgError(`no answer from PostgreSQL within ${timeoutMs} ms`, undefined)
      // The worker bumps the signal after each answer it posts.
      Atomics.wait(signal, 0, seen, left)
    }
  }
  // Connect now, so that a wrong URL fails at start with its reason.
  query("SELECT 1")
  return {
    query,
    close: async () => {
      if (closed) return
      closed = true
      port1.close()
      await worker.terminate()
    }
  }
}
