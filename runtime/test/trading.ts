/** Generated trades for the workflow event pattern, and how to resolve and check them. */
import fc from "fast-check"
import { expect } from "vitest"
import type { MqttClient } from "mqtt"
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
    expect(got, `executed trades of ${account}`).toEqual(expectedOrder(trades, account))
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

