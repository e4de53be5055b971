// `handle` and `prepare` in both forms: a generator function (typed from the spec, made into an
// Effect function once, when the processor is declared) and a function returning an Effect.
// The `@ts-expect-error` lines are the type-level test (`pnpm typecheck` covers this file): each
// fails the typecheck ("unused directive") when `event` or `prepared` is not typed from the spec.
import { describe, expect, it } from "vitest"
import { Context, Effect, Exit } from "effect"
import { Baton, Schema, SqlClient, type Processor, type RawEnvelope } from "../src/index.ts"

const Order = Baton.initiating("order", Schema.Struct({ orderId: Schema.String, total: Schema.Number }))
const Accepted = Baton.event("accepted", Schema.Struct({ orderId: Schema.String, total: Schema.Number, note: Schema.String }))

const envelope = (id: string, data: unknown): RawEnvelope => ({ id, type: "order", correlationId: id, causationId: id, key: "k", occurredAt: "2026-01-01T00:00:00.000Z", data })

/** The generator form: no annotation, `event` and `prepared` typed from `on` and `prepare`. */
export const direct = Baton.processor({
  name: "direct",
  on: Order,
  prepare: function* (event) {
    // @ts-expect-error `orderId` is a string (an `any` event would take this)
    const wrong: number = event.data.orderId
    void wrong
    const n = yield* Effect.succeed(event.data.total * 2)
    return { doubled: n }
  },
  handle: function* (event, prepared) {
    // @ts-expect-error no such field in the schema
    void event.data.nope
    // @ts-expect-error `prepared` is what `prepare` returned
    void prepared.nope
    const total: number = prepared.doubled
    return [Accepted.make({ orderId: event.data.orderId, total, note: "direct" })]
  }
})

/** The Effect-returning form, typed the same way. */
export const returning = Baton.processor({
  name: "returning",
  on: Order,
  prepare: (event) => Effect.succeed({ doubled: event.data.total * 2 }),
  handle: (event, prepared) => {
    // @ts-expect-error no such field in the schema
    void event.data.nope
    // @ts-expect-error `prepared` is what `prepare` returned
    void prepared.nope
    return Effect.succeed([Accepted.make({ orderId: event.data.orderId, total: prepared.doubled, note: "returning" })])
  }
})

// What a handler returns and needs is checked in the generator form too.
Baton.processor({
  name: "wrong-return",
  on: Order,
  // @ts-expect-error returns a number, not the events to announce
  handle: function* (event) {
    yield* Effect.succeed(event.data.total)
    return 1
  }
})
class Other extends Context.Service<Other, { readonly x: number }>()("Other") {}
Baton.processor({
  name: "wrong-service",
  on: Order,
  // @ts-expect-error a handler gets SqlClient, not any other service
  handle: function* () {
    yield* Other
    return []
  }
})
Baton.processor({
  name: "sql",
  on: Order,
  handle: function* (event) {
    const sql = yield* SqlClient.SqlClient
    yield* sql`SELECT ${event.data.orderId}`
    return []
  }
})

const run = <A>(e: Effect.Effect<A, unknown, any>): Promise<A> => Effect.runPromise(e as Effect.Effect<A, unknown>)

const handleOnce = async (p: Processor<any>, id: string, data: unknown): Promise<unknown> => {
  const event = envelope(id, data)
  const prepared = p.prepare === undefined ? undefined : await run(p.prepare(event))
  return run(p.handle(event, prepared) as Effect.Effect<unknown, unknown, any>)
}

describe("handle and prepare as generator functions", () => {
  it("both forms give the same events, with the prepared value", async () => {
    for (const [p, note] of [[direct, "direct"], [returning, "returning"]] as const) {
      const out = (await handleOnce(p, "o1", { orderId: "o1", total: 3 })) as ReadonlyArray<{ readonly type: string; readonly data: unknown }>
      expect(out.map((n) => [n.type, n.data])).toEqual([["accepted", { orderId: "o1", total: 6, note }]])
    }
  })

  it("a generator function is told apart once, when the processor is declared, not per message", async () => {
    let looked = 0
    let called = 0
    const body = function* (event: { readonly data: { readonly orderId: string } }) {
      const id = yield* Effect.succeed(event.data.orderId)
      return [Accepted.make({ orderId: id, total: 0, note: "" })]
    }
    // Counts each look at its prototype (the generator-function test) and each call.
    const watched = new Proxy(body, {
      getPrototypeOf: (target) => (looked++, Reflect.getPrototypeOf(target)),
      apply: (target, self, args) => (called++, Reflect.apply(target, self, args))
    })
    const p = Baton.processor({ name: "watched", on: Order, handle: watched })
    expect(looked).toBe(1)
    for (let i = 0; i < 5; i++) await handleOnce(p, `w${i}`, { orderId: `w${i}`, total: 1 })
    expect([looked, called]).toEqual([1, 5])
  })

  it("a plain function returning a generator object runs it; one returning neither an Effect nor a generator fails the message, saying so", async () => {
    const body = function* (id: string) {
      const got = yield* Effect.succeed(id)
      return [Accepted.make({ orderId: got, total: 0, note: "indirect" })]
    }
    const indirect = Baton.processor({ name: "indirect", on: Order, handle: (event) => body(event.data.orderId) })
    expect(await handleOnce(indirect, "i1", { orderId: "i1", total: 0 })).toEqual([Accepted.make({ orderId: "i1", total: 0, note: "indirect" })])
    const broken = Baton.processor({ name: "broken", on: Order, handle: (() => [Accepted.make({ orderId: "b", total: 0, note: "" })]) as never })
    const exit = await Effect.runPromiseExit(broken.handle(envelope("b1", { orderId: "b1", total: 0 }), undefined) as Effect.Effect<unknown, unknown>)
    expect(Exit.isFailure(exit) && String(exit.cause)).toContain("processor 'broken': handle returned object, neither an Effect nor a generator")
  })

  it("data that does not decode is rejected before a generator handler runs", async () => {
    const exit = await Effect.runPromiseExit(direct.handle(envelope("bad", { orderId: 1 }), { doubled: 0 }) as Effect.Effect<unknown, unknown>)
    expect(Exit.isFailure(exit) && String(exit.cause)).toContain("orderId")
  })
})
