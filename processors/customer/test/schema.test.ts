// @ts-nocheck
import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { Result } from "effect"
import { Envelope as E } from "@baton/core"
import { RegisterCustomer, Unsubscribe, UpdateProfile } from "@baton/customer"

const pathsOf = (schema: unknown, input: unknown) => Result.match(E.decode(schema)(input), { onSuccess: () => [], onFailure: (issues) => [...new Set(issues.map((i) => i.path))].sort() })
const part = fc.stringMatching(/^[a-z0-9]{1,12}$/)
const email = fc.tuple(part, part, part).map(([a, b, c]) => `${a}@${b}.${c}`)
const customerId = fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/)
const valid = { customerId: "c-1", name: "Ann", email: "ann@example.com" }
const badIds = ["", "a".repeat(65), "a b", "a/b", "é", "a.b", "x\n"]
const badEmails = ["nope", "ann@example", "@example.com", "ann@.com", "ann@example.", "a nn@example.com", "ann@example.com and more", "x ann@example.com"]

describe("customer: the register, update-profile and unsubscribe schemas", () => {
  it("for any id of 1-64 letters, digits, '-' or '_', a name and an address: each accepted as given", () => {
    fc.assert(
      fc.property(fc.record({ customerId, name: fc.string({ minLength: 1 }), email }), (c) => {
        expect(Result.getOrThrow(E.decode(RegisterCustomer)(c))).toEqual(c)
        expect(Result.getOrThrow(E.decode(UpdateProfile)(c))).toEqual(c)
        expect(Result.getOrThrow(E.decode(UpdateProfile)({ customerId: c.customerId }))).toEqual({ customerId: c.customerId })
        expect(Result.getOrThrow(E.decode(Unsubscribe)({ customerId: c.customerId }))).toEqual({ customerId: c.customerId })
      })
    )
    expect(pathsOf(RegisterCustomer, { ...valid, customerId: "a".repeat(64) })).toEqual([])
  })

  it("refuses each broken field at its path", () => {
    for (const schema of [RegisterCustomer, UpdateProfile, Unsubscribe])
      for (const id of badIds) expect(pathsOf(schema, { ...valid, customerId: id }), `customerId ${JSON.stringify(id)}`).toEqual(["customerId"])
    for (const schema of [RegisterCustomer, UpdateProfile]) {
      for (const e of badEmails) expect(pathsOf(schema, { ...valid, email: e }), e).toEqual(["email"])
      expect(pathsOf(schema, { ...valid, name: "" })).toEqual(["name"])
    }
    expect(Result.getFailure(E.decode(RegisterCustomer)({ ...valid, email: "nope", customerId: "a b" }))).toMatchObject({
      value: [{ path: "customerId", message: "must be 1-64 letters, digits, '-' or '_'" }, { path: "email", message: "must be an e-mail address" }]
    })
    expect(pathsOf(RegisterCustomer, {})).toEqual(["customerId", "email", "name"])
    expect(pathsOf(UpdateProfile, {})).toEqual(["customerId"])
  })
})
