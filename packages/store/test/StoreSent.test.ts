/**
 * `sent` on PostgreSQL (Consumer's end of a chain's turns): in a transaction, it waits for every
 * statement issued before it and fails when one failed, whether its failure is known yet (a write
 * held back, PgPool's `queue`) or was caught (the transaction is aborted). The last write held
 * back is the statement it waits for (no statement of its own); its `SELECT 1` goes out only when
 * none is held back and the transaction is aborted. What it carried out is committed.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import { Effect, Exit } from "effect"
import { freshSchema } from "@baton/testkit/postgres"
import { Postgres, sent, type Store } from "@baton/store"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 50)

describe("sent (PostgreSQL)", () => {
  let store: Store
  let drop: () => Promise<void>
  beforeAll(async () => {
    const schema = await freshSchema()
    drop = schema.drop
    store = await Postgres.open({ url: schema.url })
    await store.migrate([{ name: "test/sent", sql: "CREATE TABLE s (k INTEGER PRIMARY KEY)" }])
    await store.run(store.query("INSERT INTO s (k) VALUES (0)").run())
  })
  afterAll(async () => {
    await store?.close()
    await drop?.()
  })

  it("for all statements before it (writes held back or not, failing or not, failures caught): it fails iff one failed, sends a statement of its own only when none is held back and one failed, and what it carried out commits", async () => {
    const insert = store.query("INSERT INTO s (k) VALUES (?)")
    const returning = store.query("INSERT INTO s (k) VALUES (?) RETURNING k")
    const read = store.query("SELECT k FROM s WHERE k = ?")
    const select = store.query("SELECT 1")
    let next = 0
    await fc.assert(
      fc.asyncProperty(fc.array(fc.constantFrom("write", "dup", "read", "caught"), { maxLength: 6 }), async (ops) => {
        let failedSoFar = false
        // The BEGIN is held back too, until the first statement sent.
        let unsent = 1
        const written: Array<number> = []
        const steps = ops.map((op) => {
          if (op === "write" || op === "dup") unsent++
          else unsent = 0
          if (op === "dup" || op === "caught") failedSoFar = true
          if (op === "write") written.push(++next)
          return Effect.ignore(op === "write" ? insert.run(next) : op === "dup" ? insert.run(0) : op === "read" ? read.get(0) : returning.run(0))
        })
        let statements = -1
        let exit: Exit.Exit<void, unknown> | undefined
        // An aborted transaction fails at its COMMIT too: what counts is `sent`'s own outcome.
        await store
          .transaction(
            Effect.gen(function* () {
              for (const step of steps) yield* step
              const before = store.statements()
              exit = yield* Effect.exit(sent(select))
              statements = store.statements() - before
            })
          )
          .catch(() => undefined)
        expect(exit !== undefined && Exit.isFailure(exit)).toBe(failedSoFar)
        expect(statements).toBe(unsent === 0 && failedSoFar ? 1 : 0)
        const present = await store.run(Effect.forEach(written, (k) => read.get(k)))
        expect(present.filter((row) => row !== undefined).length).toBe(failedSoFar ? 0 : written.length)
      }),
      { numRuns: runs }
    )
  })
})
