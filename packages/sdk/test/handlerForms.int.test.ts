// `prepare` and `handle` written as generator functions (no `Effect.fnUntraced`, no annotation) on
// the real runtime, through the testkit: the handler's writes commit with what it announces, and a
// `Rejected` it fails with takes the error path with nothing written.
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Testkit } from "@baton/sdk/testkit"
import { Baton, Effect, Rejected, Schema, SqlClient } from "../src/index.ts"

const Deposit = Baton.initiating("gen-deposit", Schema.Struct({ account: Schema.NonEmptyString, amount: Schema.Int }), { key: (d) => d.account })
const Deposited = Baton.event("gen-deposited", Schema.Struct({ account: Schema.String, balance: Schema.Int, fee: Schema.Int }))

const deposits = Baton.processor({
  name: "gen-deposits",
  on: Deposit,
  prepareReadsOnly: true,
  prepare: function* (event) {
    const fee = yield* Effect.succeed(event.data.amount >= 100 ? 0 : 1)
    return { fee }
  },
  handle: function* (event, prepared) {
    if (event.data.amount <= 0) return yield* Effect.fail(new Rejected(`amount ${event.data.amount} is not positive`))
    const sql = yield* SqlClient.SqlClient
    yield* sql`INSERT INTO gen_deposits (id, account, amount) VALUES (${event.id}, ${event.data.account}, ${event.data.amount - prepared.fee})`
    const rows = yield* sql<{ readonly balance: number }>`SELECT SUM(amount) AS balance FROM gen_deposits WHERE account = ${event.data.account}`
    return [Deposited.make({ account: event.data.account, balance: Number(rows[0]!.balance), fee: prepared.fee })]
  }
})

const app = Baton.app({
  name: "gen-deposits",
  initiating: [Deposit],
  events: [Deposited],
  migrations: [{ name: "gen-deposits-1", sql: "CREATE TABLE gen_deposits (id TEXT PRIMARY KEY, account TEXT NOT NULL, amount INTEGER NOT NULL)" }],
  processors: [deposits]
})

describe("prepare and handle as generator functions, on the runtime", () => {
  let kit: Awaited<ReturnType<typeof Testkit.start>>
  beforeAll(async () => {
    kit = await Testkit.start(app)
  })
  afterAll(async () => kit?.stop())

  it("commits the handler's rows with the events it announces, with what prepare computed", async () => {
    const account = `acc-${crypto.randomUUID()}`
    const first = await kit.flow(await kit.publish(Deposit, { account, amount: 10 }), { until: Deposited.type })
    expect(first.data(Deposited)).toEqual([{ account, balance: 9, fee: 1 }])
    const second = await kit.flow(await kit.publish(Deposit, { account, amount: 100 }), { until: Deposited.type })
    expect(second.data(Deposited)).toEqual([{ account, balance: 109, fee: 0 }])
    const rows = await kit.query("SELECT amount FROM gen_deposits WHERE account = ? ORDER BY amount", account)
    expect(rows.map((r) => Number(r.amount))).toEqual([9, 100])
  })

  it("a Rejected the generator fails with takes the error path, nothing written", async () => {
    const account = `acc-${crypto.randomUUID()}`
    const flow = await kit.flow(await kit.publish(Deposit, { account, amount: -3 }))
    expect(flow.has(Deposited)).toBe(false)
    expect(flow.rejections.map((r) => r.reason).join("\n")).toContain("amount -3 is not positive")
    expect(await kit.query("SELECT id FROM gen_deposits WHERE account = ?", account)).toEqual([])
  })
})
