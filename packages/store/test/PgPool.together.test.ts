/**
 * Strands side by side on one connection (`Pipelined.together`) in a transaction block, on a real
 * PostgreSQL server: the statements that go out in one write carry one Sync between them (the
 * server answers each Sync with a ReadyForQuery and a send() of its own), and each statement still
 * answers its own rows, or fails with the transaction's first failure, blamed on the strand whose
 * statement it was (a write held back goes out with another strand's statement), and carrying the
 * tag that strand's statements were issued under (`Pipelined.tag`: a chain's, runtime's Consumer).
 */
import net from "node:net"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import fc from "fast-check"
import { Effect } from "effect"
import { SqlError } from "effect/sql"
import { freshSchema, query } from "@baton/testkit/postgres"
import { blamed, make, taggedBy, type Pipelined } from "../src/PgPool.ts"

const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 50)

/** A step of a strand: a SELECT it waits for (failing on a zero divisor), or a write held back (failing its CHECK when negative). */
type Step = { readonly kind: "select"; readonly v: number; readonly fails: boolean } | { readonly kind: "write"; readonly k: number }
const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant("select" as const), v: fc.integer({ min: 0, max: 1000 }), fails: fc.integer({ min: 0, max: 5 }).map((n) => n === 0) }),
  fc.record({ kind: fc.constant("write" as const), k: fc.integer({ min: -1, max: 20 }) })
)
/** A strand's steps, ending with a SELECT (its writes are then sent before it ends). */
const strand = fc.tuple(fc.array(step, { maxLength: 3 }), fc.integer({ min: 0, max: 1000 })).map(([steps, v]): ReadonlyArray<Step> => [...steps, { kind: "select", v, fails: false }])
const failing = (s: Step) => (s.kind === "select" ? s.fails : s.k < 0)

const sqlState = (error: unknown): string | undefined => ((SqlError.isSqlError(error) ? (error.reason as { readonly cause?: unknown }).cause : error) as { readonly code?: string } | undefined)?.code

/** The Syncs ('S', length 4) among the frontend messages of one write. */
const syncsIn = (bytes: Buffer): number => {
  let n = 0
  for (let at = 0; at + 5 <= bytes.length; at += 1 + bytes.readInt32BE(at + 1)) if (bytes[at] === 0x53 && bytes.readInt32BE(at + 1) === 4) n++
  return n
}

describe("PgPool: strands side by side in a transaction", () => {
  let schema: Awaited<ReturnType<typeof freshSchema>>
  beforeAll(async () => {
    schema = await freshSchema()
    await query(schema.url, "CREATE TABLE t_log (k int4 NOT NULL CHECK (k >= 0))")
  })
  afterAll(async () => schema?.drop())

  it("for any strands: one Sync a write; each statement its own rows, or the first failure blamed on its strand (and tagged with its tag); a strand with a failing statement never succeeds", () =>
    fc.assert(
      fc.asyncProperty(fc.array(strand, { minLength: 1, maxLength: 4 }), fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }), async (strands, tagging) => {
        // Some strands issue their statements under a tag of their own (as a chain's run does), the others under none.
        const tags = tagging.map((t, i) => (t ? { strand: i } : undefined))
        // Every write to the server meanwhile, as its bytes.
        const writes: Array<Buffer> = []
        const sockets = net.Socket.prototype as unknown as Record<"_write" | "_writev", (this: net.Socket, ...args: Array<unknown>) => void>
        const originals = { _write: sockets._write, _writev: sockets._writev }
        const outcomes = await Effect.runPromise(
          Effect.scoped(
            Effect.gen(function* () {
              const { client } = yield* make({ url: schema.url, poolSize: 1 })
              const conn = (yield* client.reserve) as Pipelined
              yield* conn.execute("SELECT 1", [], undefined)
              conn.queue("BEGIN", [])
              for (const name of ["_write", "_writev"] as const)
                sockets[name] = function (this: net.Socket, ...args: Array<unknown>) {
                  if (this.remotePort === 5432) writes.push(name === "_write" ? Buffer.from(args[0] as Buffer) : Buffer.concat((args[0] as ReadonlyArray<{ readonly chunk: Buffer }>).map((c) => c.chunk)))
                  return originals[name].apply(this, args)
                }
              strands.forEach((_, i) => (conn.ownedBy(i).tag = tags[i]))
              const side = conn.together(strands.length)
              const run = (steps: ReadonlyArray<Step>, i: number) =>
                Effect.exit(
                  Effect.forEach(
                    steps,
                    (s) =>
                      s.kind === "write"
                        ? conn.ownedBy(i).execute("INSERT INTO t_log (k) VALUES ($1)", [s.k], undefined)
                        : Effect.map(conn.ownedBy(i).execute("SELECT $1::int4 AS v, 10 / $2::int4 AS q", [s.v, s.fails ? 0 : 1], undefined), (rows) => expect(rows).toEqual([{ v: s.v, q: 10 }])),
                    { discard: true }
                  )
                ).pipe(Effect.ensuring(Effect.sync(side.ended)))
              const exits = yield* Effect.forEach(strands, run, { concurrency: "unbounded" }).pipe(
                Effect.ensuring(
                  Effect.sync(() => {
                    side.close()
                    Object.assign(sockets, originals)
                  })
                )
              )
              yield* Effect.ignore(conn.execute("ROLLBACK", [], undefined))
              return exits
            })
          ).pipe(Effect.ensuring(Effect.sync(() => Object.assign(sockets, originals))))
        )
        // One Sync a write (a write without a statement has none).
        for (const w of writes) expect(syncsIn(w)).toBeLessThanOrEqual(1)
        const failers = new Set(strands.flatMap((steps, i) => (steps.some(failing) ? [i] : [])))
        outcomes.forEach((exit, i) => {
          if (exit._tag === "Success") return expect(failers.has(i), `strand ${i} succeeded with a failing statement`).toBe(false)
          const error = exit.cause.reasons[0]?._tag === "Fail" ? exit.cause.reasons[0].error : exit.cause.reasons[0]?._tag === "Die" ? exit.cause.reasons[0].defect : undefined
          // A row that was not its statement's fails the strand with the assertion's error.
          expect(["22012", "23514"]).toContain(sqlState(error))
          expect(failers.has(blamed(error)!), `strand ${i} failed, blamed on ${blamed(error)}`).toBe(true)
          expect(taggedBy(error), `strand ${i} failed, tagged as the strand it is blamed on`).toBe(tags[blamed(error)!])
        })
        if (failers.size === 0) expect(outcomes.every((exit) => exit._tag === "Success")).toBe(true)
      }),
      { numRuns: runs }
    ))
})
