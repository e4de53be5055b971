/** Generated trades for the workflow event pattern, and how to resolve and check them. */
import fc from "fast-check"
import { expect } from "vitest"
import type { MqttClient } from "mqtt"
import type { Store } from "@baton/store"
import { getJson, sleep } from "./support.ts"

export type Kind = "ok" | "string-quantity" | "lower-symbol" | "alias" | "negative" | "unknown-symbol"
export const repairable: ReadonlyArray<Kind> = ["string-quantity", "lower-symbol", "alias"]
export const unrepairable: ReadonlyArray<Kind> = ["negative", "unknown-symbol"]

export interface GeneratedTrade {
  readonly id: string
  readonly account: string
  readonly kind: Kind
  /** For an unrepairable trade: what the operator does with its dashboard entry. */
  readonly resolution: "resubmit" | "discard"
}

export const tradeArb = (accounts: ReadonlyArray<string>) =>
  fc.record({
    account: fc.constantFrom(...accounts),
    kind: fc.constantFrom<Kind>("ok", "ok", "ok", "ok", "string-quantity", "lower-symbol", "alias", "negative", "unknown-symbol"),
    resolution: fc.constantFrom<"resubmit" | "discard">("resubmit", "discard")
  })

export const withIds = (trades: ReadonlyArray<Omit<GeneratedTrade, "id">>): ReadonlyArray<GeneratedTrade> => trades.map((t) => ({ ...t, id: crypto.randomUUID() }))

export const data = (t: GeneratedTrade, n: number): Record<string, unknown> => {
  const base = { account: t.account, symbol: "MSFT", side: n % 2 === 0 ? "buy" : "sell", quantity: 1 + (n % 9) }
  switch (t.kind) {
    case "ok":
      return base
    case "string-quantity":
      return { ...base, quantity: String(base.quantity) }
    case "lower-symbol":
      return { ...base, symbol: "msft" }
    case "alias":
      return { ...base, symbol: "GOOGL" }
    case "negative":
      return { ...base, quantity: -base.quantity }
    case "unknown-symbol":
      return { ...base, symbol: "XYZQ" }
  }
}

/** The corrected data an operator resubmits. */
export const corrected = (t: GeneratedTrade, n: number): Record<string, unknown> => ({ ...data({ ...t, kind: "ok" }, n) })

export const envelope = (t: GeneratedTrade, n: number): string => JSON.stringify({ id: t.id, type: "place-trade", data: data(t, n) })

/** The trade ids an account must show, in order: everything it was sent but the discarded ones. */
export const expectedOrder = (trades: ReadonlyArray<GeneratedTrade>, account: string): ReadonlyArray<string> =>
  trades.filter((t) => t.account === account && !(unrepairable.includes(t.kind) && t.resolution === "discard")).map((t) => t.id)

/** Trades of an account up to (not including) its first unrepairable one: they never wait. */
export const unblocked = (trades: ReadonlyArray<GeneratedTrade>, account: string): ReadonlyArray<string> => {
  const mine = trades.filter((t) => t.account === account)
  const first = mine.findIndex((t) => unrepairable.includes(t.kind))
  return (first === -1 ? mine : mine.slice(0, first)).map((t) => t.id)
}

export const checkExecuted = (executed: (account: string) => ReadonlyArray<string>, trades: ReadonlyArray<GeneratedTrade>) => {
  for (const account of new Set(trades.map((t) => t.account))) {
    const ids = new Set(trades.map((t) => t.id))
    const got = executed(account).filter((id) => ids.has(id))
    expect(got, `each trade of ${account} executes once, in submitted order (the discarded ones left out)`).toEqual(expectedOrder(trades, account))
  }
}

/** The rule on the way, not only at the end: what executed so far is in submitted order. */
export const checkOrderSoFar = (executed: (account: string) => ReadonlyArray<string>, trades: ReadonlyArray<GeneratedTrade>) => {
  for (const account of new Set(trades.map((t) => t.account))) {
    const ids = new Set(trades.map((t) => t.id))
    const got = executed(account).filter((id) => ids.has(id))
    expect(got, `the trades of ${account} executed so far are in submitted order`).toEqual(expectedOrder(trades, account).filter((id) => got.includes(id)))
  }
}

/**
 * The parking rule: a released key's parked trades drain, oldest first, before anything newer; so
 * once the runtime is idle, only a held key has parked trades.
 */
export const checkDrained = async (store: Store) => {
  const stuck = await store.run(
    store
      .query(
        "SELECT key, envelope_id FROM inbox WHERE processor = 'trade-execution' AND status = 'parked' AND key NOT IN (SELECT key FROM held_keys WHERE processor = 'trade-execution') ORDER BY rowid"
      )
      .all()
  )
  expect(
    stuck.map((r) => `${String(r.key)} ${String(r.envelope_id)}`),
    "a released account's parked trades drain, oldest first (none may stay parked once the runtime is idle)"
  ).toEqual([])
}

/**
 * Waits for `done`; returns early once the runtime is idle and `progress` has stopped changing (a
 * stall), so that the caller's assertions name the rule that broke instead of timing out.
 */
export const settle = async (idle: () => Promise<void>, progress: () => Promise<unknown>, done: () => Promise<boolean>, timeoutMs = 15_000) => {
  const until = Date.now() + timeoutMs
  let last = JSON.stringify(await progress())
  let unchanged = 0
  while (!(await done()) && Date.now() < until && unchanged < 5) {
    await idle()
    await sleep(50)
    const now = JSON.stringify(await progress())
    unchanged = now === last ? unchanged + 1 : 0
    last = now
  }
}

export const post = async (port: number, path: string, body?: unknown) => {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { method: "POST", ...(body === undefined ? {} : { body: JSON.stringify(body) }) })
  return { status: res.status, body: (await res.json()) as Record<string, any> }
}

export interface Entry {
  readonly id: string
  readonly trail: ReadonlyArray<string>
  readonly error: string
  readonly key: string
}

export const openEntries = async (port: number): Promise<ReadonlyArray<Entry>> => (await getJson(port, "/dashboard?limit=1000")).body.entries

export const waitFor = async (done: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000) => {
  const until = Date.now() + timeoutMs
  while (!(await done())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

/** Publishes in order, each after the previous one's PUBACK: the submitted order is the order of arrival. */
export const publishInOrder = async (client: MqttClient, trades: ReadonlyArray<GeneratedTrade>, from = 0) => {
  let n = from
  for (const t of trades) await client.publishAsync("initiate/place-trade", envelope(t, n++), { qos: 1 })
}

