/**
 * The broker's id orders a session's queued messages in the disk store across restarts
 * (EmbeddedBroker.brokerId): a later start's id sorts after an earlier one's, and after any UUID
 * (Aedes' own id, in a store written before).
 */
import { randomUUID } from "node:crypto"
import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { EmbeddedBroker } from "@baton/broker-aedes"

describe("the broker id", () => {
  it("for all start times t1 < t2: the id of t1 sorts before the id of t2, and every UUID before both", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 47 }), fc.integer({ min: 1, max: 2 ** 40 }), fc.uuid(), (t1, d, uuid) => {
        const a = EmbeddedBroker.brokerId(t1)
        const b = EmbeddedBroker.brokerId(t1 + d)
        expect(a < b).toBe(true)
        expect(uuid < a).toBe(true)
        // No ':' (the store's key separator) in it.
        expect(b.includes(":")).toBe(false)
      }),
      { numRuns: 500 }
    )
    expect(randomUUID() < EmbeddedBroker.brokerId()).toBe(true)
  })
})
