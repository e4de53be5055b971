/**
 * `outgoingId` names a client's message as aedes-persistence-level keys it (`outgoingByIdKey`
 * without its `outgoing-id:` prefix): the client id encoded, a colon, the message id padded to 16
 * digits. Its client part is cached by client id; for all client ids (unicode, colons, lone
 * surrogates, which `encodeURIComponent` refuses) and message ids, asked in any order and again,
 * it is the library's formula.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { EmbeddedBroker } from "@baton/broker-aedes"

/** aedes-persistence-level 9.2's key, as its `outgoingByIdKey` and `padId` write it. */
const reference = (clientId: string, messageId: number | undefined): string => `${encodeURIComponent(clientId)}:${messageId?.toString().padStart(16, "0")}`
const outcome = (f: () => string): string => {
  try {
    return f()
  } catch (error) {
    return `threw ${(error as Error).name}`
  }
}

describe("outgoingId", () => {
  it("for all client and message ids, asked in any order and again: the key aedes-persistence-level writes", () => {
    const clientId = fc.oneof(fc.string(), fc.string({ unit: "grapheme" }), fc.string({ unit: "binary" }), fc.constantFrom("", "a:b", "mqttjs_1", "\uD800"))
    const messageId = fc.oneof(fc.integer({ min: 0, max: 65535 }), fc.nat(), fc.maxSafeNat(), fc.constant(undefined))
    fc.assert(
      fc.property(fc.array(fc.tuple(clientId, messageId), { minLength: 1, maxLength: 20 }), (asks) => {
        for (const [c, m] of [...asks, ...asks]) expect(outcome(() => EmbeddedBroker.outgoingId(c, m))).toBe(outcome(() => reference(c, m)))
      }),
      { numRuns: 2000 }
    )
  })
})
