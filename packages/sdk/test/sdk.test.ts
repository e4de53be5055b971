import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { Effect, Exit, Result } from "effect"
import { Envelope, isAppModule, Rejected, type AppContext } from "@baton/core"
import { Baton, Schema, type RawEnvelope } from "../src/index.ts"

const envelope = (type: string, data: unknown, version?: number): RawEnvelope => ({
  id: "e1",
  type,
  correlationId: "e1",
  causationId: "e1",
  key: "k",
  occurredAt: "2026-01-01T00:00:00.000Z",
  ...(version === undefined ? {} : { version }),
  data
})

/** What a `Next` becomes on the wire: the envelope the runtime builds from it, through JSON. */
const wire = (next: { readonly type: string; readonly data: unknown; readonly version?: number }): RawEnvelope =>
  JSON.parse(Envelope.encode(Envelope.next(envelope("cause", null), next))) as RawEnvelope

describe("Event versions", () => {
  it("for all chains of upcasters and every stored version: read upcasts through each once, in order, then decodes", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: -1000, max: 1000 }), { maxLength: 6 }), fc.integer({ min: -1e6, max: 1e6 }), fc.nat(), (offsets, value, pick) => {
        const current = offsets.length + 1
        // Version v's data is `{ v<v>: n }`; the upcaster from v renames the field and adds offsets[v-1].
        const upcast = Object.fromEntries(offsets.map((o, i) => [i + 1, (d: Record<string, number>) => ({ [`v${i + 2}`]: d[`v${i + 1}`]! + o })]))
        const E = Baton.event("counted", Schema.Struct({ [`v${current}`]: Schema.Int }), { version: current, upcast })
        const from = 1 + (pick % current)
        const stored = value - offsets.slice(from - 1).reduce((a, b) => a + b, 0)
        const read = E.read(wire({ type: "counted", data: { [`v${from}`]: stored }, ...(from === 1 ? {} : { version: from }) }))
        expect(read).toEqual(Result.succeed({ [`v${current}`]: value }))
      }),
      { numRuns: 300 }
    )
  })

  it("for all data: make then read returns it (encoded on the wire, decoded back), at any version", () => {
    const Data = Schema.Struct({ id: Schema.String, amount: Schema.FiniteFromString, tags: Schema.Array(Schema.String), note: Schema.optionalKey(Schema.String) })
    const data = fc.record(
      { id: fc.string(), amount: fc.double({ noNaN: true, noDefaultInfinity: true }), tags: fc.array(fc.string(), { maxLength: 4 }), note: fc.string() },
      { requiredKeys: ["id", "amount", "tags"] }
    )
    fc.assert(
      fc.property(data, fc.integer({ min: 1, max: 4 }), (d, version) => {
        const upcast = Object.fromEntries(Array.from({ length: version - 1 }, (_, i) => [i + 1, () => { throw new Error("current data is never upcast") }]))
        const E = Baton.event("priced", Data, { version, upcast })
        const next = E.make(d, { key: "k1" })
        expect(next.key).toBe("k1")
        expect(typeof (next.data as { amount: unknown }).amount).toBe("string")
        const on = wire(next)
        expect(on.version).toBe(version === 1 ? undefined : version)
        expect(E.read(on)).toEqual(Result.succeed(Object.is(d.amount, -0) ? { ...d, amount: 0 } : d))
      }),
      { numRuns: 300 }
    )
  })

  it("make refuses what the schema's encode refuses: a struct's or an array's check runs on the data given, not on its copy", () => {
    // Checks that look beyond the declared fields (an undeclared key, an array's own property).
    const noExtra = Schema.makeFilter((o: object) => !Object.hasOwn(o, "extra") || "no key 'extra'")
    const Line = Schema.Struct({ sku: Schema.String }).check(noExtra)
    const E = Baton.event("lined", Schema.Struct({ lines: Schema.Array(Line).check(noExtra) }))
    const lines = Object.assign([{ sku: "a" }], { extra: true })
    for (const data of [{ lines: [{ sku: "a", extra: 1 }] }, { lines }]) {
      expect(() => Schema.encodeSync(E.schema)(data)).toThrow("no key 'extra'")
      expect(() => E.make(data)).toThrow("no key 'extra'")
    }
    expect(E.make({ lines: [{ sku: "a" }] }).data).toStrictEqual({ lines: [{ sku: "a" }] })
  })

  it("a version below the current one without its upcaster fails at declaration, naming it", () => {
    expect(() => Baton.event("x", Schema.Struct({}), { version: 3, upcast: { 1: (d) => d } })).toThrow(
      "event 'x' is at version 3 but declares no upcaster from version 2 to 3"
    )
    expect(() => Baton.event("x", Schema.Struct({}), { version: 0 })).toThrow("version must be a whole number from 1, got 0")
    expect(() => Baton.initiating("y", Schema.Struct({}), { version: 2 })).toThrow("event 'y' is at version 2 but declares no upcaster from version 1 to 2")
  })

  it("a newer version than the reader's, and a throwing upcaster, are readable failures", () => {
    const E = Baton.event("x", Schema.Struct({ a: Schema.String }), { version: 2, upcast: { 1: (d: { readonly b?: string }) => ({ a: d.b!.toUpperCase() }) } })
    expect(E.read(envelope("x", { a: "s" }, 3))).toEqual(Result.fail("'x' version 3 is newer than the version 2 this app reads: deploy the app that declares version 3"))
    const r = E.read(envelope("x", {}))
    expect(Result.isFailure(r) && r.failure).toMatch(/^'x' could not be upcast from version 1 to 2: .*toUpperCase/)
  })
})

describe("Event.command", () => {
  it("a workflow command of the event: its type, its version, its data built from the workflow's and encoded", () => {
    const E = Baton.event("priced", Schema.Struct({ amount: Schema.FiniteFromString }), { version: 2, upcast: { 1: (d) => d } })
    const c = E.command({ name: "price", channel: "pricing", data: (w) => ({ amount: Number(w.input.n) * 2 }), timeoutMs: 5 })
    expect(c).toMatchObject({ name: "price", channel: "pricing", type: "priced", version: 2, timeoutMs: 5 })
    const data = c.data({ input: { n: 4 }, results: {} })
    expect(data).toEqual({ amount: "8" })
    expect(E.read(wire({ type: c.type, data, version: c.version! }))).toEqual(Result.succeed({ amount: 8 }))
  })
})

describe("Baton.processor", () => {
  const Line = Schema.Struct({ sku: Schema.String, qty: Schema.Int })
  const Order = Baton.event("order", Schema.Struct({ name: Schema.String, items: Schema.Array(Line) }))
  const Shipped = Baton.event("shipped", Schema.Struct({ count: Schema.Int }))

  it("for all bad data: rejected with every issue's path, and the handler never runs", () => {
    const line = fc.record({ sku: fc.string(), qty: fc.integer() })
    const bad = fc.oneof(fc.string(), fc.constant(1.5), fc.constant(null))
    fc.assert(
      fc.property(fc.array(fc.tuple(line, fc.option(bad, { nil: undefined })), { minLength: 1, maxLength: 6 }), fc.option(fc.integer(), { nil: undefined }), (lines, badName) => {
        const items = lines.map(([l, b]) => (b === undefined ? l : { ...l, qty: b }))
        const paths = [...(badName === undefined ? [] : ["name"]), ...lines.flatMap(([, b], i) => (b === undefined ? [] : [`items[${i}].qty`]))]
        let ran = false
        const p = Baton.processor({ name: "ship", on: Order, handle: (e) => Effect.sync(() => { ran = true; return [Shipped.make({ count: e.data.items.length })] }) })
        const exit = Effect.runSyncExit(p.handle(envelope("order", { name: badName ?? "n", items }), undefined) as Effect.Effect<unknown, unknown>)
        if (paths.length === 0) {
          expect(exit).toEqual(Exit.succeed([{ type: "shipped", data: { count: items.length } }]))
          return
        }
        expect(ran).toBe(false)
        const error = Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail")?.error : undefined
        expect(error).toBeInstanceOf(Rejected)
        const message = (error as Rejected).message
        expect(message).toMatch(/^'order' data does not match its schema: /)
        for (const path of paths) expect(message).toContain(`${path}: `)
        expect(message.split("; ")).toHaveLength(paths.length)
        // The same issues for the rejection's record, with their path in the envelope.
        expect((error as Rejected).issues.map((i) => i.path).sort()).toEqual(paths.map((p) => `data.${p}`).sort())
      }),
      { numRuns: 200 }
    )
  })

  it("for all sets of hooks besides handle: each hook of a message gets the event handle gets, read once", () => {
    const hooks = ["prepare", "lockKeys", "reply", "committed"] as const
    fc.assert(
      fc.property(fc.subarray([...hooks], { minLength: 1 }), fc.integer({ min: 1, max: 3 }), (used, attempts) => {
        // Version 2 over stored version 1: each read of the envelope runs the upcaster once.
        let reads = 0
        const Versioned = Baton.event("order", Order.schema, { version: 2, upcast: { 1: (d) => { reads++; return d } } })
        const seen: Array<unknown> = []
        const saw = (e: unknown) => void seen.push(e)
        const p = Baton.processor({
          name: "ship",
          on: Versioned,
          handle: (e) => Effect.sync(() => { saw(e); return [] }),
          ...(used.includes("prepare") ? { prepare: (e) => Effect.sync(() => saw(e)) } : {}),
          ...(used.includes("lockKeys") ? { lockKeys: (e) => { saw(e); return [] } } : {}),
          ...(used.includes("reply") ? { reply: (e) => saw(e) } : {}),
          ...(used.includes("committed") ? { committed: (e) => saw(e) } : {})
        })
        const message = envelope("order", { name: "n", items: [{ sku: "a", qty: 1 }] })
        // A retried message: its hooks again, the same envelope.
        for (let i = 0; i < attempts; i++) {
          if (p.prepare !== undefined) Effect.runSync(p.prepare(message) as Effect.Effect<unknown>)
          p.lockKeys?.(message)
          Effect.runSync(p.handle(message, undefined) as Effect.Effect<unknown>)
          p.reply?.(message, [])
          void p.committed?.(message, undefined)
        }
        expect(seen).toHaveLength(attempts * (1 + used.length))
        expect(new Set(seen).size).toBe(1)
        expect(reads).toBe(1)
      }),
      { numRuns: 100 }
    )
  })

  it("ownRows and lockKeys together fail at declaration, naming the processor", () => {
    expect(() => Baton.processor({ name: "stock", on: Order, ownRows: true, lockKeys: (e) => e.data.items.map((l) => `stock/${l.sku}`), handle: () => Effect.succeed([]) })).toThrow(
      "processor 'stock' says both ownRows (it locks only its message's own rows) and lockKeys (it locks shared rows): keep the one that is true"
    )
    expect(() => Baton.processor({ name: "stock", on: Order, ownRows: false, lockKeys: () => [], handle: () => Effect.succeed([]) })).not.toThrow()
  })

  it("an event type it does not declare is rejected, naming what it reads", () => {
    const p = Baton.processor({ name: "ship", on: Order, handle: () => Effect.succeed([]) })
    const exit = Effect.runSyncExit(p.handle(envelope("other", {}), undefined) as Effect.Effect<unknown, unknown>)
    expect(Exit.isFailure(exit) && String(exit.cause.reasons[0]?._tag === "Fail" ? (exit.cause.reasons[0].error as Error).message : "")).toBe(
      "processor 'ship' does not declare events of type 'other' (it reads order)"
    )
  })
})

describe("Baton.app", () => {
  const context = { migrate: async () => {} } as unknown as AppContext

  it("is an app module whose app lists its events with versions and JSON Schemas", async () => {
    const Ping = Baton.initiating("ping", Schema.Struct({ n: Schema.Int }), { version: 2, upcast: { 1: (d) => d } })
    const Pong = Baton.event("pong", Schema.Struct({ n: Schema.Int }))
    const module = Baton.app({ name: "p", initiating: [Ping], events: [Pong, Pong], processors: [] })
    expect(isAppModule(module)).toBe(true)
    const app = await module.make(context)
    expect(app.initiating[0]?.version).toBe(2)
    expect(app.events?.map((e) => [e.type, e.version])).toEqual([["ping", 2], ["pong", 1]])
    expect((app.events?.[1]?.schema as { schema: unknown }).schema).toMatchObject({ type: "object", properties: { n: { type: "integer" } }, required: ["n"] })
  })

  it("refuses an event declared twice at different versions", async () => {
    const A1 = Baton.event("a", Schema.Struct({}))
    const A2 = Baton.event("a", Schema.Struct({}), { version: 2, upcast: { 1: (d) => d } })
    await expect(Baton.app({ name: "twice", initiating: [], events: [A1, A2], processors: [] }).make(context)).rejects.toThrow(
      "app 'twice' declares event 'a' twice, at versions 1 and 2"
    )
  })
})
