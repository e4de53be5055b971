/** OrderPlacement: stores the order, gets its id from the database, announces `order-created`. */
import { Schema } from "effect"
import { Baton, Effect, Rejected, type Query } from "@baton/sdk"
import { events, names, OrderCreated, type Item, type PlaceOrder } from "./Contract.ts"
import type { Deps } from "./Deps.ts"

export const total = (items: ReadonlyArray<Item>): number =>
  Math.round(items.reduce((sum, i) => sum + i.qty * i.price * 100, 0)) / 100

export const unknownSkus = (items: ReadonlyArray<Item>, known: ReadonlySet<string>): ReadonlyArray<string> =>
  [...new Set(items.map((i) => i.sku).filter((sku) => !known.has(sku)))]

export const orderId = (seq: number): string => `ORD-${String(seq).padStart(6, "0")}`

/** The `order-created` among what a handler announced (encoded), read back. */
const createdIn = (announced: ReadonlyArray<{ readonly type: string; readonly data: unknown }>) => {
  const created = announced.find((n) => n.type === names.orderCreated)
  return created === undefined ? undefined : Schema.decodeUnknownSync(OrderCreated)(created.data)
}

export const make = ({ query, dialect, clock }: Deps) => {
  const catalogue = query("SELECT sku FROM catalogue")
  // The catalogue is seeded by the migration and never changes: read once, on the first order.
  let known: ReadonlySet<string> | undefined
  const existing = query("SELECT id, payment_token FROM orders WHERE correlation_id = ?")
  // Atomic against another instance placing the same order: the first insert wins, the other reads it.
  // The id made from the sequence number in the insert itself (as `orderId` makes it), so no
  // provisional id and no update after it. PostgreSQL: from the sequence. SQLite: the number its
  // AUTOINCREMENT would give (past the largest ever used, as `sqlite_sequence` keeps it, and past
  // the largest there), safe under its one writer (`BEGIN IMMEDIATE`); inserted, the number
  // becomes the largest ever used, as an AUTOINCREMENT's does. Against the provisional id and its
  // update, one statement less an order and no index entry of the id written and then removed
  // (the order flow side by side, `BATON_AB_DRAIN=1 ab.ts sqlite 3000 7`, load 5-6: statements an
  // order 34.2 -> 33.2, runtime CPU an order 0.96x, lower in 5 of 7 rounds).
  // (`WHERE true`: SQLite reads `ON CONFLICT` after a bare `SELECT ... FROM` as a join's `ON`.)
  const insertWithId = query(
    dialect === "pg"
      ? `INSERT INTO orders (seq, id, correlation_id, customer_id, email, total, payment_token, created_at) SELECT s.n, 'ORD-' || lpad(s.n::text, greatest(6, length(s.n::text)), '0'), ?, ?, ?, ?::double precision, ?, ? FROM (SELECT nextval(pg_get_serial_sequence('orders', 'seq')) AS n) AS s ON CONFLICT DO NOTHING RETURNING id`
      : `INSERT INTO orders (seq, id, correlation_id, customer_id, email, total, payment_token, created_at) SELECT s.n, printf('ORD-%06d', s.n), ?, ?, ?, ?, ?, ? FROM (SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'orders'), 0), coalesce((SELECT max(seq) FROM orders), 0)) + 1 AS n) AS s WHERE true ON CONFLICT DO NOTHING RETURNING id`
  )
  const insertItem = query("INSERT INTO order_items (order_id, line, sku, qty, price) VALUES (?, ?, ?, ?, ?)")
  const vault = query("INSERT INTO payment_vault (token, card) VALUES (?, ?)")
  // PostgreSQL: the order, its card in the vault and its lines in one statement (data-modifying
  // WITHs), the card and lines written only when the order row is (a redelivery inserts nothing):
  // 2 statements an order fewer than `insertWithId`, `vault` and `insertItem`, each a round of
  // Bind/Execute and an executor's start and end on the server. Its text per number of lines, made
  // once, for up to `placeAllLines` lines: a statement (and a prepared statement on each connection)
  // per line count would otherwise grow with whatever line counts clients send, and a very long
  // order could pass PostgreSQL's 65,535 parameters; a longer order takes the statements one by one.
  const placeAllLines = 16
  const placeAll = new Map<number, Query>()
  const placeFor = (lines: number): Query => {
    let q = placeAll.get(lines)
    if (q === undefined) {
      const rows = Array.from({ length: lines }, () => "(CAST(? AS BIGINT), CAST(? AS TEXT), CAST(? AS BIGINT), CAST(? AS DOUBLE PRECISION))").join(", ")
      placeAll.set(
        lines,
        (q = query(
          `WITH o AS (INSERT INTO orders (seq, id, correlation_id, customer_id, email, total, payment_token, created_at) SELECT s.n, 'ORD-' || lpad(s.n::text, greatest(6, length(s.n::text)), '0'), ?, ?, ?, ?::double precision, ?, ? FROM (SELECT nextval(pg_get_serial_sequence('orders', 'seq')) AS n) AS s ON CONFLICT DO NOTHING RETURNING id), ` +
            `v AS (INSERT INTO payment_vault (token, card) SELECT CAST(? AS TEXT), CAST(? AS TEXT) FROM o), ` +
            `i AS (INSERT INTO order_items (order_id, line, sku, qty, price) SELECT o.id, x.line, x.sku, x.qty, x.price FROM o, (VALUES ${rows}) AS x (line, sku, qty, price)) ` +
            `SELECT id FROM o`
        ))
      )
    }
    return q
  }
  /** `placeFor`'s parameters: the order's, the vault's, then each line's. */
  const placeParams = (correlationId: string, order: PlaceOrder, token: string, at: string): ReadonlyArray<unknown> => {
    const params: Array<unknown> = [correlationId, order.customerId, order.email, total(order.items), token, at, token, order.payment.card]
    order.items.forEach((item, line) => params.push(line, item.sku, item.qty, item.price))
    return params
  }

  const announce = (order: PlaceOrder, id: string, paymentToken: string) => [
    events.orderCreated.make(
      {
        orderId: id,
        customerId: order.customerId,
        email: order.email,
        items: order.items,
        total: total(order.items),
        paymentToken,
        cardLast4: order.payment.card.slice(-4)
      },
      { key: id }
    )
  ]

  return Baton.processor({
    name: "order-placement",
    on: events.placeOrder,
    // It only inserts rows of its own order (the order, its lines, its card under a new token; the
    // sequence takes no lock): a lane per message (Processor.ownRows).
    ownRows: true,
    // Request-reply: the order id, which the database assigned (docs/concepts.md, section 7).
    reply: (_event, announced) => {
      const created = createdIn(announced)
      return created === undefined ? undefined : { orderId: created.orderId, total: created.total }
    },
    handle: function* (event) {
      const order = event.data
      if (known === undefined) known = new Set((yield* catalogue.all()).map((r) => String(r.sku)))
      const unknown = unknownSkus(order.items, known)
      if (unknown.length > 0) return yield* Effect.fail(new Rejected(`unknown SKU ${unknown.join(", ")}`))
      // Quantities and prices the schema admits can still add up past any number: refused, not retried.
      if (!Number.isFinite(total(order.items))) return yield* Effect.fail(new Rejected("the order's total is too large to be an amount"))
      const token = `tok_${clock.newId()}`
      const at = clock.now().toISOString()
      // Inserted first (one statement in the usual case), with its id (`insertWithId`); on
      // PostgreSQL with its card and lines (`placeFor`).
      const together = dialect === "pg" && order.items.length <= placeAllLines
      const inserted = yield* (together
        ? placeFor(order.items.length).get(...placeParams(event.correlationId, order, token, at))
        : insertWithId.get(event.correlationId, order.customerId, order.email, total(order.items), token, at))
      if (inserted === undefined) {
        // A redelivered place-order, or another instance placed this order meanwhile (it committed
        // first): announce the order recorded, one order per event.
        const won = yield* existing.get(event.correlationId)
        if (won === undefined) return yield* Effect.die(new Error(`order ${event.correlationId} neither inserted nor found`))
        return announce(order, String(won.id), String(won.payment_token))
      }
      const id = String(inserted.id)
      if (!together) {
        yield* vault.run(token, order.payment.card)
        yield* Effect.forEach(order.items, (item, line) => insertItem.run(id, line, item.sku, item.qty, item.price), { discard: true })
      }
      return announce(order, id, token)
    }
  })
}
