/**
 * The worker thread behind `PgSync`: owns one PostgreSQL connection and runs the queries the main
 * thread sends, one at a time, waking it through the shared signal when the answer is posted.
 */
import { workerData, type MessagePort } from "node:worker_threads"
import pg from "pg"

interface Request {
  readonly id: number
  readonly sql: string
  readonly params?: ReadonlyArray<unknown>
}

const { url, port, signal } = workerData as { readonly url: string; readonly port: MessagePort; readonly signal: Int32Array }

// BIGINT counts and sequences, and NUMERIC sums, as JavaScript numbers (as node:sqlite returns them).
pg.types.setTypeParser(20, (v) => Number(v))
pg.types.setTypeParser(1700, (v) => Number(v))

const client = new pg.Client({ connectionString: url })
let broken: Error | undefined
client.on("error", (error) => {
  broken = error
})

// Statements with parameters are prepared once per connection (PostgreSQL parses and plans each
// text once instead of at every execution): the stores run a small, fixed set of statements.
const names = new Map<string, string>()
const nameOf = (sql: string): string => {
  let name = names.get(sql)
  if (name === undefined) {
    name = `baton_${names.size + 1}`
    names.set(sql, name)
  }
  return name
}

const answer = (message: unknown) => {
  port.postMessage(message)
  Atomics.add(signal, 0, 1)
  Atomics.notify(signal, 0)
}

const ready = client.connect().then(
  () => undefined,
  (error: unknown) => {
    broken = error as Error
  }
)

port.on("message", (request: Request) => {
  void ready
    .then(async () => {
      if (broken !== undefined) throw broken
      const params = request.params?.map((p) => (p instanceof Uint8Array && !Buffer.isBuffer(p) ? Buffer.from(p.buffer, p.byteOffset, p.byteLength) : p))
      const result = params === undefined ? await client.query(request.sql) : await client.query({ name: nameOf(request.sql), text: request.sql, values: params })
      const last = Array.isArray(result) ? result.at(-1) : result
      answer({ id: request.id, ok: true, rows: last?.rows ?? [], rowCount: last?.rowCount ?? 0 })
    })
    .catch((error: unknown) => {
      const e = error as { message?: string; code?: string }
      answer({ id: request.id, ok: false, message: e.message ?? String(error), code: e.code })
    })
})
