/**
 * Found by a review (2026-12-02): `mainStatementOf` misreads valid PostgreSQL whose main statement is a SELECT,
 * so `isBlindWrite` holds it back and the caller gets no rows (the server's answer is dropped).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import pg from "pg"
import { freshSchema } from "@baton/testkit/postgres"
import { isBlindWrite } from "../src/PgPool.ts"
import { Postgres, type Store } from "../src/index.ts"

const selects = {
  "nested block comment": "WITH s AS (SELECT 1 AS n) /* a /* b */ UPDATE */ SELECT n FROM s",
  "dollar tag with a digit": "WITH s AS (SELECT $f1$ ) UPDATE $f1$ AS n) SELECT n FROM s",
  "E'' string with a backslash-escaped quote": "WITH s AS (SELECT E'\\'' AS n, ') UPDATE' AS m) SELECT n FROM s",
  "CTE named by an unreserved keyword": "WITH update AS (SELECT 1 AS n) SELECT n FROM update"
}

describe("PgPool.isBlindWrite on SELECTs a first scanner misread", () => {
  let schema: Awaited<ReturnType<typeof freshSchema>>
  let client: pg.Client
  let store: Store
  beforeAll(async () => {
    schema = await freshSchema()
    client = new pg.Client({ connectionString: schema.url })
    await client.connect()
    store = await Postgres.open({ url: schema.url, poolSize: 2 })
  })
  afterAll(async () => {
    await store?.close()
    await client?.end()
    await schema?.drop()
  })
  for (const [name, sql] of Object.entries(selects))
    it(`${name}: the server answers a row, and a transaction reading it gets that row`, async () => {
      const answered = await client.query(sql)
      expect(answered.rows.length, "the server answers one row").toBe(1)
      expect(isBlindWrite(sql), "not a blind write").toBe(false)
      const rows = await store.transaction(store.query(sql).all())
      expect(rows.length).toBe(1)
    })
  it("still held back: a WITH with a column list whose main statement is a write; not: a SEARCH clause (not scanned)", () => {
    expect(isBlindWrite("WITH s (a) AS (UPDATE w SET v = 'x' WHERE k = $1) UPDATE w SET v = 'y' WHERE k = $2")).toBe(true)
    expect(isBlindWrite("WITH s AS MATERIALIZED (DELETE FROM w WHERE k = $1), t AS (SELECT 1) INSERT INTO w (k, v) VALUES ($2, $3)")).toBe(true)
    expect(isBlindWrite("WITH RECURSIVE t (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 3) SEARCH DEPTH FIRST BY n SET o SELECT n FROM t")).toBe(false)
  })
})
