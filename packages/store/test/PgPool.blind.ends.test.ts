/**
 * From a review (2026-12-02): a held-back WITH of two writes that fails, as the last statement of a
 * transaction, of a savepoint, or before a savepoint's rollback: its failure is never lost.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Effect, Exit } from "effect"
import { freshSchema } from "@baton/testkit/postgres"
import { Postgres, type Store } from "../src/index.ts"

describe("PgPool: a failing blind WITH at the end of a transaction or savepoint", () => {
  let schema: Awaited<ReturnType<typeof freshSchema>>
  let store: Store
  beforeAll(async () => {
    schema = await freshSchema()
    store = await Postgres.open({ url: schema.url, poolSize: 2 })
    await store.run(store.query("CREATE TABLE w (k int4 PRIMARY KEY, v text NOT NULL)").run())
  })
  afterAll(async () => {
    await store?.close()
    await schema?.drop()
  })
  const reset = () => store.transaction(Effect.andThen(store.query("DELETE FROM w").run(), store.query("INSERT INTO w (k, v) VALUES (1, 'one'), (2, 'two')").run()))
  const all = () => store.run(store.query("SELECT k, v FROM w ORDER BY k").all())
  const both = () => store.query("WITH a AS (UPDATE w SET v = ? WHERE k = 1) INSERT INTO w (k, v) VALUES (?, ?)")
  const other = () => store.query("INSERT INTO w (k, v) VALUES (?, ?)")
  const initial = [{ k: 1, v: "one" }, { k: 2, v: "two" }]

  it("the last statement before COMMIT: the transaction fails, nothing commits", async () => {
    await reset()
    const outcome = await store.transaction(Effect.asVoid(both().run("changed", 2, "dup"))).then(() => "committed", (e: unknown) => String(e))
    expect(outcome).toContain("duplicate key")
    expect(await all()).toEqual(initial)
  })
  it("the last statement of a savepoint: the savepoint fails, its writes roll back, the outer's commit", async () => {
    await reset()
    let inner: Exit.Exit<unknown, unknown> | undefined
    await store.transaction(
      Effect.gen(function* () {
        yield* other().run(5, "five")
        inner = yield* Effect.exit(store.sql.withTransaction(Effect.asVoid(both().run("changed", 2, "dup"))))
        yield* other().run(6, "six")
      })
    )
    expect(inner !== undefined && Exit.isFailure(inner)).toBe(true)
    expect(await all()).toEqual([...initial, { k: 5, v: "five" }, { k: 6, v: "six" }])
  })
  it("a savepoint that fails for its own reason after it: rolled back, the outer's commit", async () => {
    await reset()
    let inner: Exit.Exit<unknown, unknown> | undefined
    await store.transaction(
      Effect.gen(function* () {
        inner = yield* Effect.exit(store.sql.withTransaction(Effect.andThen(both().run("changed", 3, "three"), Effect.fail("own"))))
        yield* other().run(6, "six")
      })
    )
    expect(inner !== undefined && Exit.isFailure(inner)).toBe(true)
    expect(await all()).toEqual([...initial, { k: 6, v: "six" }])
  })
})
