/**
 * The trading advisor (docs/concepts.md, section 4), written with the public API only
 * (`@baton/sdk`): trades of one account must execute in the order they were placed. The trade
 * processor validates strictly and executes in per-account order, announcing `trade-executed`
 * with a per-account sequence number. A malformed trade goes to the workflow processor: some are
 * repaired (a quantity sent as a numeric string, a lower-case symbol, a known alias), others (an
 * unknown account, a negative quantity) go to the dashboard; meanwhile the account's later trades
 * are parked and other accounts keep trading.
 */
import { Baton, ddl, Effect, Rejected, Schema } from "@baton/sdk"
import { Result } from "effect"

export const accounts: ReadonlyArray<string> = Array.from({ length: 9 }, (_, i) => `ACC-${i + 1}`)
/** Reference prices: a market order executes at the symbol's price, a limit order at its limit. */
export const quotes: Readonly<Record<string, number>> = { AAPL: 190.5, MSFT: 415.25, GOOG: 172.1, AMZN: 185.4 }
export const aliases: Readonly<Record<string, string>> = { GOOGL: "GOOG", ALPHABET: "GOOG", APPLE: "AAPL", MICROSOFT: "MSFT", AMAZON: "AMZN" }

const Side = Schema.Literals(["buy", "sell"])

/**
 * What the door accepts: the shape, loosely (a quantity may come as a string), so that a
 * malformed trade reaches the trade processor and the workflow processor, not the error path.
 */
export const PlaceTradeData = Schema.Struct({
  account: Schema.NonEmptyString,
  symbol: Schema.NonEmptyString,
  side: Side,
  quantity: Schema.Union([Schema.Finite, Schema.String]),
  limitPrice: Schema.optionalKey(Schema.Finite.check(Schema.isGreaterThan(0)))
})
export type PlaceTrade = typeof PlaceTradeData.Type
export const PlaceTrade = Baton.initiating("place-trade", PlaceTradeData, { key: (t) => t.account })

/** A valid trade. */
export const TradeData = Schema.Struct({
  account: Schema.String,
  symbol: Schema.String,
  side: Side,
  quantity: Schema.Int,
  limitPrice: Schema.optionalKey(Schema.Finite)
})
export type Trade = typeof TradeData.Type

export const TradeExecutedData = Schema.Struct({
  ...TradeData.fields,
  /** The trade's id: the id of the initiating `place-trade` event. */
  tradeId: Schema.String,
  /** 1, 2, 3, … per account, in execution order. */
  seq: Schema.Int,
  price: Schema.Finite
})
export type TradeExecuted = typeof TradeExecutedData.Type
export const TradeExecuted = Baton.event("trade-executed", TradeExecutedData)

export const names = { placeTrade: PlaceTrade.type, tradeExecuted: TradeExecuted.type } as const

/** Everything wrong with a trade, or the valid trade. */
export const validate = (t: PlaceTrade, known: (account: string) => boolean): { readonly trade: Trade } | { readonly problems: ReadonlyArray<string> } => {
  const problems: Array<string> = []
  if (!known(t.account)) problems.push(`unknown account ${t.account}`)
  if (quotes[t.symbol] === undefined) problems.push(`unknown symbol ${JSON.stringify(t.symbol)}`)
  if (typeof t.quantity !== "number") problems.push(`quantity must be a number, got ${JSON.stringify(t.quantity)}`)
  else if (!Number.isInteger(t.quantity) || t.quantity <= 0) problems.push(`quantity must be a positive whole number, got ${t.quantity}`)
  if (problems.length > 0 || typeof t.quantity !== "number") return { problems }
  return { trade: { account: t.account, symbol: t.symbol, side: t.side, quantity: t.quantity, ...(t.limitPrice === undefined ? {} : { limitPrice: t.limitPrice }) } }
}

/**
 * The repair: fixes what it can recognise, and only when the result is a valid trade; otherwise
 * it cannot tell what is wrong, and a person must look (the dashboard).
 */
export const repair = (t: PlaceTrade, known: (account: string) => boolean): { readonly data: PlaceTrade; readonly changes: ReadonlyArray<string> } | undefined => {
  const changes: Array<string> = []
  let fixed: PlaceTrade = t
  if (typeof t.quantity === "string" && /^\s*\d+\s*$/.test(t.quantity)) {
    fixed = { ...fixed, quantity: Number(t.quantity) }
    changes.push(`quantity ${JSON.stringify(t.quantity)} -> ${Number(t.quantity)}`)
  }
  const upper = t.symbol.trim().toUpperCase()
  const symbol = aliases[upper] ?? upper
  if (symbol !== t.symbol && quotes[symbol] !== undefined) {
    fixed = { ...fixed, symbol }
    changes.push(`symbol ${JSON.stringify(t.symbol)} -> ${symbol}`)
  }
  if (changes.length === 0 || !("trade" in validate(fixed, known))) return undefined
  return { data: fixed, changes }
}

export const migrations = [
  {
    name: "trading/001-tables",
    sql: ddl(
      (t) => `
      CREATE TABLE trading_accounts (id TEXT PRIMARY KEY, next_seq ${t.int} NOT NULL DEFAULT 1${t.rowid});
      CREATE TABLE trades (account TEXT NOT NULL, seq ${t.int} NOT NULL, trade_id TEXT NOT NULL, envelope_id TEXT NOT NULL UNIQUE, symbol TEXT NOT NULL, side TEXT NOT NULL, quantity ${t.int} NOT NULL, price ${t.real} NOT NULL, executed_at TEXT NOT NULL, PRIMARY KEY (account, seq)${t.rowid});
      CREATE TABLE positions (account TEXT NOT NULL, symbol TEXT NOT NULL, quantity ${t.int} NOT NULL, PRIMARY KEY (account, symbol)${t.rowid});
      ${accounts.map((a) => `INSERT INTO trading_accounts (id) VALUES ('${a}');`).join("\n")}
    `
    )
  }
]

export default Baton.app("trading", (ctx) => {
  const account = ctx.query("SELECT next_seq FROM trading_accounts WHERE id = ?")
  /** Takes the account's next sequence number, atomically (instances may race on PostgreSQL). */
  const advance = ctx.query("UPDATE trading_accounts SET next_seq = next_seq + 1 WHERE id = ? RETURNING next_seq - 1 AS seq")
  const insert = ctx.query("INSERT INTO trades (account, seq, trade_id, envelope_id, symbol, side, quantity, price, executed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
  // Atomic in SQL: an upsert that adds to the position.
  const position = ctx.query(
    "INSERT INTO positions (account, symbol, quantity) VALUES (?, ?, ?) ON CONFLICT (account, symbol) DO UPDATE SET quantity = positions.quantity + excluded.quantity"
  )
  // The accounts, for the repairs (synchronous): the migration creates them all, nothing adds any.
  const knownAccounts = new Set(accounts)
  const known = (id: string) => knownAccounts.has(id)

  const trades = Baton.processor({
    name: "trade-execution",
    on: PlaceTrade,
    onFailure: "park",
    handle: function* (event) {
      const placed = event.data
      const exists = (yield* account.get(placed.account)) !== undefined
      const checked = validate(placed, (id) => id === placed.account && exists)
      if ("problems" in checked) return yield* Effect.fail(new Rejected(checked.problems.join("; ")))
      const t = checked.trade
      const next = yield* advance.get(t.account)
      if (next === undefined) return yield* Effect.fail(new Rejected(`unknown account ${t.account}`))
      const seq = Number(next.seq)
      const price = t.limitPrice ?? quotes[t.symbol]!
      yield* insert.run(t.account, seq, event.correlationId, event.id, t.symbol, t.side, t.quantity, price, ctx.clock.now().toISOString())
      yield* position.run(t.account, t.symbol, t.side === "buy" ? t.quantity : -t.quantity)
      return [TradeExecuted.make({ ...t, tradeId: event.correlationId, seq, price }, { key: t.account })]
    }
  })

  return {
    name: "trading",
    initiating: [PlaceTrade],
    events: [TradeExecuted],
    migrations,
    processors: [trades],
    // Data that does not read as a trade (the door let it in, so it should) is not guessed at: a person looks.
    repairs: { [PlaceTrade.type]: (message) => Result.match(PlaceTrade.read(message), { onSuccess: (t) => repair(t, known), onFailure: () => undefined }) }
  }
})
