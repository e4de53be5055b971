/**
 * Keyset paging for the operator's lists: a page of rows after a cursor, oldest or newest first,
 * and the cursor of the page that follows. A cursor names the last row seen, not an offset, so rows
 * added meanwhile neither shift a page nor hide from it: a reader that follows `next` reaches every
 * row, however many come before it.
 */
import type { Row, Store } from "./Store.ts"

export type Order = "asc" | "desc"

export interface Request {
  readonly limit: number
  readonly order: Order
  /** From a previous page's `next`; without it, the first page. */
  readonly cursor?: string | undefined
}

export interface Page<A> {
  readonly items: ReadonlyArray<A>
  /** The cursor of the next page; undefined when this page is the last one. */
  readonly next: string | undefined
}

/** A sort column: its expression in the query and its type, for the cursor. */
export interface Key {
  readonly column: string
  readonly kind: "int" | "text"
}

/** The rowid, the arrival order of the tables that declare it (`ddl`'s `t.rowid`). */
export const arrival: ReadonlyArray<Key> = [{ column: "rowid", kind: "int" }]

export class BadCursor extends Error {
  override readonly name = "BadCursor"
}

const encode = (values: ReadonlyArray<unknown>): string => Buffer.from(JSON.stringify(values), "utf8").toString("base64url")

const decode = (cursor: string, keys: ReadonlyArray<Key>): ReadonlyArray<string | number> => {
  let values: unknown
  try {
    values = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"))
  } catch {
    values = undefined
  }
  const valid =
    Array.isArray(values) &&
    values.length === keys.length &&
    values.every((v, i) => (keys[i]!.kind === "int" ? Number.isSafeInteger(v) : typeof v === "string"))
  if (!valid) throw new BadCursor(`cursor '${cursor.slice(0, 80)}' is not one this list gave out: pass the 'next' of the previous page`)
  return values as ReadonlyArray<string | number>
}

/** `(a, b) > (x, y)` spelled out (a > x OR a = x AND b > y), for both dialects. */
const beyond = (keys: ReadonlyArray<Key>, values: ReadonlyArray<unknown>, order: Order) => {
  const op = order === "asc" ? ">" : "<"
  const terms = keys.map((k, i) => `(${[...keys.slice(0, i).map((e) => `${e.column} = ?`), `${k.column} ${op} ?`].join(" AND ")})`)
  return { sql: `(${terms.join(" OR ")})`, params: keys.flatMap((_, i) => values.slice(0, i + 1)) }
}

/** Parses `?limit=&order=&cursor=` with the list's default order and its bounds. */
export const request = (params: URLSearchParams, defaults: { readonly order: Order; readonly limit: number; readonly maxLimit: number }): Request => {
  const order = params.get("order") ?? defaults.order
  if (order !== "asc" && order !== "desc") throw new BadCursor(`order must be asc (oldest first) or desc (newest first), got '${order}'`)
  const limit = Math.min(defaults.maxLimit, Math.max(1, Math.floor(Number(params.get("limit") ?? defaults.limit)) || defaults.limit))
  const cursor = params.get("cursor") ?? undefined
  return { order, limit, ...(cursor === undefined || cursor === "" ? {} : { cursor }) }
}

/**
 * One page of `SELECT <select> FROM <from> WHERE <where>` in the order of `keys`: `limit` rows past
 * the cursor, and the next cursor when more rows follow.
 */
export const page = async (
  store: Store,
  spec: { readonly select: string; readonly from: string; readonly where?: ReadonlyArray<string>; readonly params?: ReadonlyArray<unknown>; readonly keys: ReadonlyArray<Key> },
  req: Request
): Promise<Page<Row>> => {
  const { keys } = spec
  const after = req.cursor === undefined ? undefined : beyond(keys, decode(req.cursor, keys), req.order)
  const where = [...(spec.where ?? []), ...(after === undefined ? [] : [after.sql])]
  const dir = req.order === "asc" ? "ASC" : "DESC"
  const text = `SELECT ${spec.select}, ${keys.map((k, i) => `${k.column} AS page_key_${i}`).join(", ")} FROM ${spec.from}${where.length === 0 ? "" : ` WHERE ${where.join(" AND ")}`} ORDER BY ${keys.map((k) => `${k.column} ${dir}`).join(", ")} LIMIT ?`
  const rows = await store.run(store.query(text).all(...(spec.params ?? []), ...(after?.params ?? []), req.limit + 1))
  const items = rows.slice(0, req.limit)
  const last = items.at(-1)
  return {
    items,
    next: rows.length > req.limit && last !== undefined ? encode(keys.map((k, i) => (k.kind === "int" ? Number(last[`page_key_${i}`]) : String(last[`page_key_${i}`])))) : undefined
  }
}
