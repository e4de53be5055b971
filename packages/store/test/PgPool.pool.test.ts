/**
 * `PgPool`'s own pool on a real PostgreSQL server: a client is lent to one borrower at a time, no
 * more than `poolSize` are open, one whose backend died is never lent again, every borrower gets
 * one, and a client comes back to its next borrower as new: a write its last borrower queued and
 * never sent (`Pipelined.queue`) does not go out with the next borrower's statements.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import { Effect, Exit } from "effect"
import { freshSchema, query, serverUrl } from "@baton/testkit/postgres"
import { make, type Pipelined } from "../src/PgPool.ts"
import { squash } from "../src/Store.ts"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 30)

/** What a borrower does with its client: waits, leaves a write queued, fails, or has its backend killed. */
interface Borrower {
  readonly delayMs: number
  readonly leavesWrite: boolean
  readonly fails: boolean
  readonly killsBackend: boolean
}
const borrower: fc.Arbitrary<Borrower> = fc.record({
  delayMs: fc.integer({ min: 0, max: 4 }),
  leavesWrite: fc.boolean(),
  fails: fc.boolean(),
  killsBackend: fc.integer({ min: 0, max: 9 }).map((n) => n < 3)
})

describe("PgPool's pool", () => {
  let schema: Awaited<ReturnType<typeof freshSchema>>
  beforeAll(async () => {
    schema = await freshSchema()
    await query(schema.url, "CREATE TABLE left_behind (k int4)")
  })
  afterAll(() => schema?.drop())

  it("for all concurrent borrowers: one borrower per client at a time, at most poolSize open, a dead client never lent again, nothing a borrower left queued sent for the next", () =>
    fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 3 }), fc.array(borrower, { minLength: 1, maxLength: 12 }), async (poolSize, borrowers) => {
        await query(schema.url, "TRUNCATE left_behind")
        const holders = new Map<number, number>()
        const dead = new Set<number>()
        let most = 0
        const outcomes = await Effect.runPromise(
          Effect.scoped(
            Effect.gen(function* () {
              const { exclusive } = yield* make({ url: schema.url, poolSize })
              const pidOf = (conn: Pipelined) => Effect.map(conn.execute("SELECT pg_backend_pid() AS pid", [], undefined), (rows) => Number(rows[0]!.pid))
              const lend = (b: Borrower, i: number) =>
                exclusive((c) =>
                  Effect.gen(function* () {
                    const conn = c as Pipelined
                    const pid = yield* pidOf(conn)
                    expect(dead.has(pid)).toBe(false)
                    expect(holders.get(pid)).toBeUndefined()
                    holders.set(pid, i)
                    most = Math.max(most, holders.size)
                    yield* Effect.promise(() => new Promise((r) => setTimeout(r, b.delayMs)))
                    expect(holders.get(pid)).toBe(i)
                    holders.delete(pid)
                    if (b.killsBackend) {
                      dead.add(pid)
                      yield* Effect.exit(conn.execute("SELECT pg_terminate_backend(pg_backend_pid())", [], undefined))
                    }
                    if (b.leavesWrite) conn.queue("INSERT INTO left_behind (k) VALUES ($1)", [i])
                    if (b.fails) return yield* Effect.fail(new Error(`borrower ${i} fails`))
                    return pid
                  })
                )
              return yield* Effect.forEach(borrowers, (b, i) => Effect.exit(lend(b, i)), { concurrency: "unbounded" })
            })
          )
        )
        for (const [i, exit] of outcomes.entries()) {
          if (Exit.isSuccess(exit)) expect(borrowers[i]!.fails).toBe(false)
          // Only its own failure: never a client's that another borrower broke.
          else expect(String(squash(exit.cause))).toContain(`borrower ${i} fails`)
        }
        expect(most).toBeLessThanOrEqual(poolSize)
        expect(await query(schema.url, "SELECT count(*)::int AS n FROM left_behind")).toEqual([{ n: 0 }])
      }),
      { numRuns: runs }
    ), 120_000)

  it("a database refusing connections fails every borrower waiting, more borrowers than clients, each of its own attempt: none waits forever", async () => {
    const name = `baton_t_refuse_${Math.random().toString(36).slice(2, 8)}`
    await query(serverUrl, `CREATE DATABASE ${name}`)
    const url = new URL(serverUrl)
    url.pathname = `/${name}`
    try {
      await Effect.runPromise(
        Effect.scoped(
          Effect.gen(function* () {
            const { exclusive } = yield* make({ url: url.toString(), poolSize: 1 })
            yield* Effect.promise(() => query(serverUrl, `ALTER DATABASE ${name} ALLOW_CONNECTIONS false`))
            // Its one client dies: every borrower after it needs a new one, which the server refuses.
            yield* exclusive((c) => Effect.exit(c.execute("SELECT pg_terminate_backend(pg_backend_pid())", [], undefined)))
            const exits = yield* Effect.forEach([1, 2, 3, 4], () => Effect.exit(exclusive((c) => c.execute("SELECT 1 AS one", [], undefined))), { concurrency: "unbounded" })
            for (const exit of exits) expect(Exit.isFailure(exit)).toBe(true)
            // Connections allowed again: the pool opens a new client.
            yield* Effect.promise(() => query(serverUrl, `ALTER DATABASE ${name} ALLOW_CONNECTIONS true`))
            expect(yield* exclusive((c) => c.execute("SELECT 1 AS one", [], undefined))).toEqual([{ one: 1 }])
          })
        )
      )
    } finally {
      await query(serverUrl, `ALTER DATABASE ${name} ALLOW_CONNECTIONS true`)
      await query(serverUrl, `DROP DATABASE ${name} WITH (FORCE)`)
    }
  }, 30_000)
})
