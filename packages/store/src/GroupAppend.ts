/**
 * The group-committed append of an ingress log (main's `IngressLog.ts`, the front's `FrontLog.ts`):
 * appends arriving together share one transaction, and each resolves once it committed (the
 * broker's PUBACK after it). What differs between the two logs (the columns, what runs around the
 * commit) is the caller's `flush`.
 */
import { Effect } from "effect"
import { Envelope } from "@baton/core"
import { timeline, type Query, type Sql, type Store } from "./Store.ts"

/** One append waiting for its batch's commit; `inline`: forwarded in the same transaction (IngressLog's `inline`). */
export interface Pending {
  readonly topic: string
  readonly payload: Buffer
  readonly clientId: string | null
  readonly done: (e?: Error, inline?: boolean) => void
}

export const chunks = <A>(items: ReadonlyArray<A>, size: number): ReadonlyArray<ReadonlyArray<A>> =>
  // One chunk (a batch of one, say) without Array.from's iteration over an array-like.
  items.length === 0 ? [] : items.length <= size ? [items] : Array.from({ length: Math.ceil(items.length / size) }, (_, i) => items.slice(i * size, (i + 1) * size))

/** A statement over `n` rows or keys, compiled once per `n`. */
export const sized = (store: Store, text: (n: number) => string): ((n: number) => Query) => {
  const compiled = new Map<number, Query>()
  return (n) => {
    let q = compiled.get(n)
    if (q === undefined) compiled.set(n, (q = store.query(text(n))))
    return q
  }
}

/** `n` rows of `columns` values each in one INSERT's `VALUES`. */
export const values = (n: number, columns: number): string => Array.from({ length: n }, () => `(${Array.from({ length: columns }, () => "?").join(", ")})`).join(", ")

/**
 * What a batch writes for each append: the time (formatted once per millisecond, `Envelope.isoNow`,
 * not a `Date` made and formatted per batch) and the payload kept, an oversized one as a preview
 * (the rejection records its size).
 */
export const rowing = (limits: { readonly maxBytes: number; readonly previewBytes: number }) => {
  const at = Envelope.isoNow()
  const kept = (e: Pending): Buffer => (e.payload.length > limits.maxBytes ? e.payload.subarray(0, limits.previewBytes) : e.payload)
  return { at, kept }
}

/** A batch's INSERTs (`rows` appends a statement) inside its transaction, then `beforeCommit`. */
export const inserts = Effect.fnUntraced(function* (
  insertOf: (n: number) => Query,
  entries: ReadonlyArray<Pending>,
  row: (e: Pending) => ReadonlyArray<unknown>,
  rows: number,
  beforeCommit: (() => void) | undefined,
  fence?: Sql<void>
) {
  timeline?.("s", entries.length)
  if (fence !== undefined) yield* fence
  for (const chunk of chunks(entries, rows)) yield* insertOf(chunk.length).run(...chunk.flatMap(row))
  beforeCommit?.()
})

/**
 * `append` for a log whose batches `flush` commits (calling each one's `done`). When a batch
 * commits. SQLite: once the code running now is done (the publishes parsed from one read of a
 * socket), not at the end of the event loop's turn: the commit is synchronous and cheap, and
 * waiting for the turn's end made the publisher's PUBACK wait behind everything the turn still had
 * to run (other sockets' callbacks, group commits of processing), ~10 ms at 1,000 events/s.
 * PostgreSQL: at the end of the turn, so that more appends share its round trip.
 */
export const grouped = (store: Store, flush: (entries: Array<Pending>) => Promise<void>) => {
  const schedule: (flush: () => void) => void = store.dialect === "sqlite" ? queueMicrotask : setImmediate
  let batch: Array<Pending> = []
  const flushNow = () => {
    const entries = batch
    batch = []
    timeline?.("f", entries.length)
    void flush(entries)
  }
  return (topic: string, payload: Buffer, clientId: string | null): Promise<boolean> =>
    new Promise<boolean>((resolve, reject) => {
      if (batch.length === 0) schedule(flushNow)
      batch.push({ topic, payload, clientId, done: (e, inline = false) => (e === undefined ? resolve(inline) : reject(e)) })
    })
}
