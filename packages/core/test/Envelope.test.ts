import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { Result } from "effect"
import { Envelope } from "@baton/core"
import vm from "node:vm"
import { Worker } from "node:worker_threads"

const json: fc.Arbitrary<unknown> = fc.jsonValue()

const envelope = fc.record(
  {
    id: fc.uuid(),
    type: fc.stringMatching(/^[a-z]+(-[a-z]+){0,2}$/),
    correlationId: fc.uuid(),
    causationId: fc.uuid(),
    key: fc.string(),
    replyTo: fc.stringMatching(/^reply\/[a-z0-9]{1,8}$/),
    occurredAt: fc.date({ noInvalidDate: true, min: new Date(0), max: new Date(4e12) }).map((d) => d.toISOString()),
    data: json
  },
  { requiredKeys: ["id", "type", "correlationId", "causationId", "key", "occurredAt", "data"] }
)

const names = ["id", "type", "correlationId", "causationId", "key", "replyTo", "occurredAt", "traceparent", "version", "data"] as const
const field = fc.oneof(fc.uuid(), fc.constant(""), fc.string(), fc.integer(), fc.double(), fc.constant(null), fc.boolean(), fc.constant(undefined), json)

/**
 * For valid inputs, each with one field changed to anything or removed, inputs of the envelope's
 * fields with values of any shape, and anything at all: a hand-written decode (`fast`) gives what
 * `schema`'s decode gives, the same value with its fields in the same order, or the same issues.
 */
const decodesAsSchema = (fast: (input: unknown) => Result.Result<object, ReadonlyArray<Envelope.Issue>>, schema: Parameters<typeof Envelope.decode>[0], valid: fc.Arbitrary<object>, numRuns: number) => {
  const full = Envelope.decode(schema)
  const shaped = fc.record(
    { id: field, type: field, correlationId: field, causationId: field, key: field, replyTo: field, occurredAt: field, traceparent: field, version: fc.oneof(fc.integer(), fc.double(), field), data: json, extra: json },
    { requiredKeys: [] }
  )
  const corrupted = fc.tuple(valid, fc.constantFrom(...names), fc.option(field, { nil: undefined }), fc.boolean()).map(([e, name, value, remove]) => {
    const copy: Record<string, unknown> = { ...e }
    if (remove) delete copy[name]
    else copy[name] = value
    return copy
  })
  fc.assert(
    fc.property(fc.oneof(valid, corrupted, shaped, fc.anything()), (input) => {
      const decoded = fast(input)
      const slow = full(input)
      expect(decoded).toStrictEqual(slow)
      if (Result.isSuccess(decoded) && Result.isSuccess(slow)) expect(Object.keys(decoded.success)).toEqual(Object.keys(slow.success as object))
    }),
    { numRuns }
  )
}

describe("Envelope", () => {
  it("round-trips through its JSON encoding for all envelopes", () => {
    fc.assert(
      fc.property(envelope, (e) => {
        const decoded = Envelope.decodeEnvelope(JSON.parse(Envelope.encode(e)))
        expect(Result.isSuccess(decoded)).toBe(true)
        if (Result.isSuccess(decoded)) expect(decoded.success).toEqual(JSON.parse(JSON.stringify(e)))
      })
    )
  })

  it("makes ids that are UUIDs of version 7 and sort by the millisecond they were made in, for all times and random parts", () => {
    const v7 = /^([0-9a-f]{8})-([0-9a-f]{4})-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/
    const ms = fc.integer({ min: 0, max: 2 ** 48 - 1 })
    fc.assert(
      fc.property(ms, ms, fc.uuid({ version: 4 }), fc.uuid({ version: 4 }), (t1, t2, r1, r2) => {
        const [a, b] = [Envelope.uuidV7(t1, r1), Envelope.uuidV7(t2, r2)]
        const m = v7.exec(a)
        expect(m).not.toBeNull()
        expect(parseInt(m![1]! + m![2]!, 16)).toBe(t1)
        // The random part is the v4 UUID's, but for its version digit.
        expect(a.slice(15)).toBe(r1.slice(15))
        if (t1 < t2) expect(a < b).toBe(true)
        // The same millisecond again (its prefix formatted once), and back: the same ids.
        expect([Envelope.uuidV7(t2, r2), Envelope.uuidV7(t1, r1), Envelope.uuidV7(t1, r2).slice(0, 15)]).toEqual([b, a, a.slice(0, 15)])
      })
    )
    const ids = Array.from({ length: 2000 }, () => Envelope.systemClock.newId())
    for (const id of ids) expect(id).toMatch(v7)
    expect(new Set(ids).size).toBe(ids.length)
    expect(ids.map((id) => id.slice(0, 13))).toEqual(ids.map((id) => id.slice(0, 13)).sort())
  })

  it("makes ids from its random pool that are UUIDs of version 7, sort by their millisecond and differ within one, for all times", () => {
    const v7 = /^([0-9a-f]{8})-([0-9a-f]{4})-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/
    const ms = fc.integer({ min: 0, max: 2 ** 48 - 1 })
    fc.assert(
      fc.property(ms, ms, fc.integer({ min: 1, max: 5 }), (t1, t2, n) => {
        // Several of one millisecond, another's, then the first's again (its prefix written anew).
        const ids = [...Array.from({ length: n }, () => Envelope.newUuidV7(t1)), Envelope.newUuidV7(t2), Envelope.newUuidV7(t1)]
        for (const [i, id] of ids.entries()) {
          const m = v7.exec(id)
          expect(m).not.toBeNull()
          expect(parseInt(m![1]! + m![2]!, 16)).toBe(i === n ? t2 : t1)
        }
        if (t1 < t2) expect(ids[0]! < ids[n]!).toBe(true)
        if (t2 < t1) expect(ids[n]! < ids[0]!).toBe(true)
        expect(new Set(ids).size).toBe(ids.length)
      })
    )
    // Every random digit takes every value, and the variant's every one of 8, 9, a and b: its 74 bits are drawn, none fixed.
    const seen = Array.from({ length: 36 }, () => new Set<string>())
    for (let i = 0; i < 4000; i++) [...Envelope.newUuidV7(1_700_000_000_000)].forEach((c, at) => seen[at]!.add(c))
    for (const at of [15, 16, 17, 20, 21, 22, ...Array.from({ length: 12 }, (_, k) => 24 + k)]) expect(seen[at]!.size).toBe(16)
    expect([...seen[19]!].sort()).toEqual(["8", "9", "a", "b"])
  })

  it("gives every processing event a new id, the initiating correlation and its cause's id", () => {
    fc.assert(
      fc.property(json, fc.array(fc.stringMatching(/^[a-z]+$/), { minLength: 1, maxLength: 6 }), (data, chain) => {
        const first = Envelope.initiate("place-order", data)
        expect(first.correlationId).toBe(first.id)
        expect(first.causationId).toBe(first.id)
        let cause = first
        const ids = new Set([first.id])
        for (const type of chain) {
          const next = Envelope.next(cause, { type, data: null })
          expect(ids.has(next.id)).toBe(false)
          expect(next.correlationId).toBe(first.id)
          expect(next.causationId).toBe(cause.id)
          expect(next.key).toBe(cause.key)
          ids.add(next.id)
          cause = next
        }
      })
    )
  })

  it("decodes every input as the envelope's schema does: the same value, fields and their order, or the same issues", () => {
    const valid = fc.tuple(envelope, fc.option(fc.string(), { nil: undefined }), fc.option(fc.integer(), { nil: undefined }), fc.option(json, { nil: undefined })).map(([e, traceparent, version, extra]) => ({
      ...e,
      ...(traceparent === undefined ? {} : { traceparent }),
      ...(version === undefined ? {} : { version }),
      ...(extra === undefined ? {} : { extra })
    }))
    decodesAsSchema(Envelope.decodeEnvelope, Envelope.Envelope, valid, 2000)
  })

  it("decodes every client's initiating envelope as its schema does: the same value, fields and their order, or the same issues", () => {
    // Only `id`, `type` and `data` required: any subset of the other fields, valid, in any order.
    const optional: ReadonlyArray<string> = names.slice(2, 9)
    const valid = fc
      .tuple(envelope, fc.option(fc.string(), { nil: undefined }), fc.option(fc.integer(), { nil: undefined }), fc.option(json, { nil: undefined }), fc.subarray([...optional]), fc.boolean())
      .map(([e, traceparent, version, extra, kept, reversed]) => {
        const all: Record<string, unknown> = { ...e, ...(traceparent === undefined ? {} : { traceparent }), ...(version === undefined ? {} : { version }), ...(extra === undefined ? {} : { extra }) }
        const keys = Object.keys(all).filter((k) => !optional.includes(k) || kept.includes(k))
        return Object.fromEntries((reversed ? keys.reverse() : keys).map((k) => [k, all[k]]))
      })
    decodesAsSchema(Envelope.decodeInitiatingInput, Envelope.InitiatingInput, valid, 3000)
  })

  it("builds a processing event's fields in the one order of its JSON, each optional one only when set", () => {
    const order = ["id", "type", "correlationId", "causationId", "key", "replyTo", "occurredAt", "traceparent", "version", "data"]
    const opt = <A>(a: fc.Arbitrary<A>) => fc.option(a, { nil: undefined })
    const spec = fc.record({ type: fc.stringMatching(/^[a-z]+$/), data: json, key: opt(fc.string()), id: opt(fc.uuid()), replyTo: opt(fc.string({ minLength: 1 })), version: opt(fc.integer({ min: 1, max: 3 })) })
    fc.assert(
      fc.property(envelope, spec, opt(fc.string()), (cause, raw, traceparent) => {
        const event = Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== undefined)) as unknown as Envelope.Next
        const out = Envelope.next(cause, event, Envelope.systemClock, traceparent)
        const expected = [
          "id", "type", "correlationId", "causationId", "key",
          ...(event.replyTo === undefined ? [] : ["replyTo"]),
          "occurredAt",
          ...(traceparent === undefined ? [] : ["traceparent"]),
          ...(event.version === undefined || event.version === 1 ? [] : ["version"]),
          "data"
        ]
        expect(Object.keys(out)).toEqual(expected)
        expect(expected.map((k) => order.indexOf(k))).toEqual([...expected.map((k) => order.indexOf(k))].sort((a, b) => a - b))
        expect(out).toMatchObject({ type: event.type, key: event.key ?? cause.key, correlationId: cause.correlationId, causationId: cause.id, ...(event.id === undefined ? {} : { id: event.id }) })
        expect(out.data).toBe(event.data)
      })
    )
  })

  it("keeps a vouch on the value and on the envelope built from it, never on a copy, its JSON or its equality, for all envelopes and tokens", () => {
    const token = fc.oneof(fc.object(), fc.string({ minLength: 1 }), fc.integer(), fc.func(fc.anything()))
    const how = fc.constantFrom("plain", "frozen", "sealed", "preventExtensions")
    fc.assert(
      fc.property(envelope, fc.record({ type: fc.stringMatching(/^[a-z]+$/), data: json }), token, token, how, (cause, spec, by, other, made) => {
        const event: Envelope.Next = { ...spec }
        const plain = { ...spec }
        if (made === "frozen") Object.freeze(event)
        if (made === "sealed") Object.seal(event)
        if (made === "preventExtensions") Object.preventExtensions(event)
        expect(Envelope.vouchedBy(event)).toBeUndefined()
        expect(Envelope.vouch(event, by)).toBe(event)
        expect(Envelope.vouchedBy(event)).toBe(by)
        // Invisible to everything but `vouchedBy`: keys, JSON, deep equality, copies.
        expect(Object.keys(event)).toEqual(Object.keys(plain))
        expect(JSON.stringify(event)).toBe(JSON.stringify(plain))
        expect(event).toStrictEqual(plain)
        expect(Envelope.vouchedBy({ ...event })).toBeUndefined()
        expect(Envelope.vouchedBy(Object.assign({}, event))).toBeUndefined()
        expect(Envelope.vouchedBy(structuredClone(event))).toBeUndefined()
        expect(Envelope.vouchedBy(JSON.parse(JSON.stringify(event)) as object)).toBeUndefined()
        // Carried to the envelope built from it, and only to that one.
        const out = Envelope.next(cause, event)
        expect(Envelope.vouchedBy(out)).toBe(by)
        expect(Envelope.vouchedBy({ ...out })).toBeUndefined()
        expect(Envelope.vouchedBy(Envelope.next(cause, { ...event }))).toBeUndefined()
        expect(JSON.parse(Envelope.encode(out))).toStrictEqual(JSON.parse(Envelope.encode({ ...out })))
        // Vouched again: the last token.
        Envelope.vouch(out, other)
        expect(Envelope.vouchedBy(out)).toBe(other)
        expect(Envelope.vouchedBy(cause)).toBeUndefined()
      })
    )
  })

  it("keeps a vouch on an object frozen after it (vouched again too) and on one of another realm; not on one sent to a worker and back", async () => {
    const event = Envelope.vouch({ type: "a", data: 1 }, "one")
    Object.freeze(event)
    expect(Envelope.vouchedBy(event)).toBe("one")
    Envelope.vouch(event, "two")
    expect(Envelope.vouchedBy(event)).toBe("two")
    for (const theirs of [vm.runInNewContext("({ type: 'a', data: 1 })") as object, vm.runInNewContext("Object.freeze({ type: 'a', data: 1 })") as object]) {
      expect(Envelope.vouchedBy(theirs)).toBeUndefined()
      expect(Envelope.vouchedBy(Envelope.vouch(theirs, "one"))).toBe("one")
    }
    const worker = new Worker("require('node:worker_threads').parentPort.on('message', (m) => require('node:worker_threads').parentPort.postMessage(m))", { eval: true })
    try {
      const back = await new Promise<object>((resolve) => {
        worker.once("message", resolve)
        worker.postMessage(Envelope.vouch({ type: "a", data: 1 }, "one"))
      })
      expect(back).toStrictEqual({ type: "a", data: 1 })
      expect(Envelope.vouchedBy(back)).toBeUndefined()
    } finally {
      await worker.terminate()
    }
  })

  it("formats a time once per millisecond as Date does, for all runs of milliseconds (repeated, back and forth)", () => {
    const ms = fc.integer({ min: -8.64e15, max: 8.64e15 })
    const run = fc.array(fc.oneof(ms, fc.integer({ min: 1_700_000_000_000, max: 1_700_000_000_003 })), { minLength: 1, maxLength: 30 })
    fc.assert(
      fc.property(run, (times) => {
        for (const t of times) expect(Envelope.isoAt(t)).toBe(new Date(t).toISOString())
      }),
      { numRuns: 500 }
    )
    const at = Date.now()
    expect(Date.parse(Envelope.next(Envelope.initiate("a", {}), { type: "b", data: {} }).occurredAt)).toBeGreaterThanOrEqual(at)
    const now = Date.parse(Envelope.isoNow())
    expect(now).toBeGreaterThanOrEqual(at)
    expect(now).toBeLessThanOrEqual(Date.now())
  })

  it("reports every issue of an invalid envelope with its path", () => {
    const r = Envelope.decodeEnvelope({ id: "", type: 3, correlationId: "c", key: "k", occurredAt: "t" })
    expect(Result.isFailure(r)).toBe(true)
    if (Result.isFailure(r)) {
      const paths = r.failure.map((i) => i.path).sort()
      expect(paths).toEqual(["causationId", "data", "id", "type"])
    }
  })
})
