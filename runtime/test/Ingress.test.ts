import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { Result } from "effect"
import { Envelope, type App } from "@baton/core"
import { Sqlite } from "@baton/store"
import orderEntry from "@baton/order-entry/app"
import * as Apps from "../src/Apps.ts"
import * as Ingress from "../src/Ingress.ts"

const app: App = await orderEntry.make(Apps.context(await Sqlite.open({ path: ":memory:" })))
const contracts = Ingress.contractsOf([app])
const order = { customerId: "c-1", email: "ann@example.com", items: [{ sku: "BOOK-1", qty: 2, price: 12.5 }], payment: { card: "4242424242424242" } }
const judge = (topic: string, payload: string | Buffer, max = 1024) =>
  Ingress.judge(contracts, { topic, payload: typeof payload === "string" ? Buffer.from(payload) : payload }, max)

describe("Ingress.judge", () => {
  it("wraps a bare object in a new envelope keyed by customer", () => {
    const v = judge("initiate/place-order", JSON.stringify(order))
    expect(v._tag).toBe("Accepted")
    if (v._tag !== "Accepted") return
    expect(v.envelope).toMatchObject({ type: "place-order", key: "c-1", data: order })
    expect(v.envelope.correlationId).toBe(v.envelope.id)
    expect(v.envelope.causationId).toBe(v.envelope.id)
  })

  it("keeps the id, key and replyTo of a full envelope", () => {
    const v = judge("initiate/place-order", JSON.stringify({ id: "e-1", type: "place-order", key: "k", replyTo: "reply/me/1", data: order }))
    expect(v).toMatchObject({ _tag: "Accepted", envelope: { id: "e-1", correlationId: "e-1", causationId: "e-1", key: "k", replyTo: "reply/me/1" } })
  })

  it("stamps the initiating event's version on what it accepts, whatever a client's envelope says", () => {
    const ping = (version?: number) => Ingress.contractsOf([{ name: "p", processors: [], initiating: [{ name: "ping", decode: Result.succeed, ...(version === undefined ? {} : { version }) }] }])
    const judged = (version: number | undefined, payload: unknown) => Ingress.judge(ping(version), { topic: "initiate/ping", payload: Buffer.from(JSON.stringify(payload)) }, 1024)
    expect(judged(2, { n: 1 })).toMatchObject({ _tag: "Accepted", envelope: { version: 2, data: { n: 1 } } })
    expect(judged(3, { id: "e-1", type: "ping", version: 1, data: {} })).toMatchObject({ _tag: "Accepted", envelope: { version: 3 } })
    for (const v of [undefined, 1]) {
      const accepted = judged(v, { id: "e-1", type: "ping", version: 5, data: {} })
      expect(accepted._tag === "Accepted" && "version" in accepted.envelope).toBe(false)
    }
  })

  it("refuses each kind of bad input with a readable reason", () => {
    expect(judge("initiate/place-order", "{oops")).toMatchObject({ _tag: "Refused", kind: "malformed-json" })
    expect(judge("initiate/place-order", Buffer.from([0xff, 0xfe, 0x7b]))).toMatchObject({ _tag: "Refused", kind: "malformed-json", reason: expect.stringContaining("UTF-8") })
    expect(judge("initiate/cancel-order", JSON.stringify(order))).toMatchObject({ _tag: "Refused", kind: "unknown-topic", reason: expect.stringContaining("initiate/place-order") })
    expect(judge("initiate/place-order", "x".repeat(1025))).toMatchObject({ _tag: "Refused", kind: "oversized-payload", reason: expect.stringContaining("1025 bytes") })
    expect(judge("initiate/place-order", JSON.stringify({ id: "e", type: "other", data: order }))).toMatchObject({ _tag: "Refused", kind: "schema-violation" })
  })

  it("reports every schema issue with its path", () => {
    const v = judge("initiate/place-order", JSON.stringify({ customerId: "", email: "nope", items: [{ sku: "BOOK-1", qty: 0.5, price: -1 }], payment: {} }))
    expect(v._tag).toBe("Refused")
    if (v._tag !== "Refused") return
    expect(v.kind).toBe("schema-violation")
    expect(v.issues?.map((i) => i.path).sort()).toEqual(["customerId", "email", "items[0].price", "items[0].qty", "payment.card"])
    expect(v.reason).toContain("items[0].qty")
  })

  it("holds the order schema's bounds: quantities whole, positive and at most a million, prices not negative, 12 to 19 card digits", () => {
    const issuesOf = (changes: Record<string, unknown>, item: Record<string, unknown> = {}) => {
      const v = judge("initiate/place-order", JSON.stringify({ ...order, items: [{ ...order.items[0], ...item }], ...changes }))
      return v._tag === "Accepted" ? [] : (v.issues ?? []).map((i) => `${i.path}: ${i.message}`)
    }
    for (const qty of [0, -1]) expect(issuesOf({}, { qty }), `qty ${qty}`).toEqual([expect.stringMatching(/^items\[0\]\.qty: /)])
    expect(issuesOf({}, { qty: 0.5 })).toEqual([expect.stringContaining("must be a whole number")])
    expect(issuesOf({}, { qty: 1_000_001 })).toEqual(["items[0].qty: must be at most 1000000"])
    expect(issuesOf({}, { price: -0.01 })).toEqual([expect.stringMatching(/^items\[0\]\.price: /)])
    expect(issuesOf({}, { sku: "" })).toEqual([expect.stringMatching(/^items\[0\]\.sku: /)])
    expect(issuesOf({ items: [] })).toEqual(["items: must hold at least one item"])
    for (const card of ["42424242424", "42424242424242424242", "4242-4242-4242-4242", ""])
      expect(issuesOf({ payment: { card } }), card).toEqual(["payment.card: must be 12 to 19 digits"])
    for (const email of ["ann", "ann@example", "a n@example.com", "@example.com", "ann@@example.com", "ann@example.com and more"])
      expect(issuesOf({ email }), email).toEqual(["email: must be an e-mail address"])
    for (const accepted of [{ item: { qty: 1, price: 0 } }, { item: { qty: 1_000_000 } }, { changes: { payment: { card: "424242424242" } } }, { changes: { payment: { card: "4242424242424242424" } } }])
      expect(issuesOf(accepted.changes ?? {}, accepted.item ?? {})).toEqual([])
  })

  it("keeps what a full envelope says and fills in only what it leaves out", () => {
    const clock = { now: () => new Date("2026-01-02T03:04:05.000Z"), newId: () => "new-id" }
    const full = (e: Record<string, unknown>, clientId: string | null = null) => {
      const payload = Buffer.from(JSON.stringify({ id: "e-1", type: "place-order", data: order, ...e }))
      return Ingress.judge(contracts, { topic: "initiate/place-order", payload }, 4096, clock, payload.length, clientId)
    }
    expect(full({ correlationId: "c-9", causationId: "k-9", key: "own", occurredAt: "2025-12-31T00:00:00.000Z" })).toMatchObject({
      _tag: "Accepted",
      envelope: { id: "e-1", correlationId: "c-9", causationId: "k-9", key: "own", occurredAt: "2025-12-31T00:00:00.000Z" }
    })
    const filled = full({})
    expect(filled).toMatchObject({ _tag: "Accepted", envelope: { id: "e-1", correlationId: "e-1", causationId: "e-1", key: "c-1", occurredAt: "2026-01-02T03:04:05.000Z" } })
    expect(filled._tag === "Accepted" && "replyTo" in filled.envelope).toBe(false)
    expect(full({ replyTo: "reply/ann/1" }, "ann")).toMatchObject({ _tag: "Accepted", envelope: { replyTo: "reply/ann/1" } })
    expect(full({ replyTo: "reply/bob/1" }, "ann")).toMatchObject({
      _tag: "Refused",
      kind: "schema-violation",
      reason: "replyTo must start with reply/ann/ (your client id)",
      issues: [{ path: "replyTo", message: "must start with reply/ann/ (your client id)" }]
    })
    expect(full({ type: "other" })).toMatchObject({ reason: "envelope type 'other' does not match topic initiate/place-order", issues: [{ path: "type", message: 'Expected "place-order"' }] })
    expect(full({ id: 7 })).toMatchObject({ _tag: "Refused", kind: "schema-violation", reason: "invalid envelope" })
    // Inside an envelope, the data's paths say so.
    expect(full({ data: { ...order, email: "nope" } })).toMatchObject({
      _tag: "Refused",
      reason: "initiate/place-order does not match its schema: data.email: must be an e-mail address",
      issues: [{ path: "data.email" }]
    })
    expect(full({ data: 3 })).toMatchObject({ _tag: "Refused", reason: expect.stringMatching(/schema: data: /), issues: [{ path: "data" }] })
    // A bare array or an object without id, type and data is the data itself, in a new envelope.
    for (const bare of [[order], { type: "place-order", data: order }, { id: "e", data: order }, { id: "e", type: "place-order" }]) {
      const v = judge("initiate/place-order", JSON.stringify(bare))
      expect(v, JSON.stringify(bare)).toMatchObject({ _tag: "Refused", kind: "schema-violation", issues: expect.arrayContaining([expect.anything()]) })
      for (const i of v._tag === "Refused" ? (v.issues ?? []) : []) expect(i.path, JSON.stringify(bare)).not.toMatch(/^data/)
    }
    expect(judge("initiate/place-order", "null")).toMatchObject({ _tag: "Refused", reason: expect.stringContaining("(root): ") })
    const bare = Ingress.judge(contracts, { topic: "initiate/place-order", payload: Buffer.from(JSON.stringify(order)) }, 4096, clock)
    expect(bare).toMatchObject({ _tag: "Accepted", envelope: { id: "new-id", key: "c-1", occurredAt: "2026-01-02T03:04:05.000Z" } })
  })

  it("accepts a payload of exactly the limit and refuses one byte more, by the size the broker reports", () => {
    const payload = Buffer.from(JSON.stringify(order))
    const at = (max: number, size = payload.length) => Ingress.judge(contracts, { topic: "initiate/place-order", payload }, max, Envelope.systemClock, size)._tag
    expect([at(payload.length), at(payload.length - 1), at(payload.length, payload.length + 1)]).toEqual(["Accepted", "Refused", "Refused"])
    expect(Ingress.judge(contracts, { topic: "initiate/place-order", payload }, 10, Envelope.systemClock, 11)).toMatchObject({
      reason: "payload of 11 bytes exceeds the limit of 10 bytes"
    })
    expect(judge("place-order", JSON.stringify(order))).toMatchObject({
      kind: "unknown-topic",
      reason: "no initiating event is published on place-order; known topics: initiate/place-order"
    })
    expect(judge("initiate/place-order", "{oops")).toMatchObject({ reason: expect.stringMatching(/^payload is not valid JSON: .*JSON/) })
    expect(judge("initiate/place-order", Buffer.from([0xff]))).toMatchObject({ reason: "payload is not valid JSON: payload is not valid UTF-8" })
  })

  it("never throws, whatever arrives", () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)), fc.jsonValue().map((j) => Buffer.from(JSON.stringify(j) ?? "null"))), fc.constantFrom("initiate/place-order", "initiate/x"), (payload, topic) => {
        const v = judge(topic, payload)
        expect(["Accepted", "Refused"]).toContain(v._tag)
        if (v._tag === "Refused") expect(v.reason.length).toBeGreaterThan(0)
      })
    )
  })

  it("decodes what it accepts as a valid envelope", () => {
    const v = judge("initiate/place-order", JSON.stringify(order))
    if (v._tag !== "Accepted") throw new Error(`expected the order to be accepted: ${v.reason}`)
    expect(Envelope.decodeEnvelope(JSON.parse(Envelope.encode(v.envelope)))._tag).toBe("Success")
  })
})
