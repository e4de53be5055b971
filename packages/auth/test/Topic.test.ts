import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { Acl, Topic } from "@baton/auth"

const level = fc.constantFrom("a", "b", "events", "initiate", "x1")
const topic = fc.array(level, { minLength: 1, maxLength: 4 }).map((ls) => ls.join("/"))
const filter = fc.array(fc.constantFrom("a", "b", "events", "initiate", "x1", "+"), { minLength: 1, maxLength: 4 }).chain((ls) =>
  fc.boolean().map((hash) => [...ls, ...(hash ? ["#"] : [])].join("/"))
)

describe("Topic", () => {
  it("matches as MQTT 3.1.1 says", () => {
    expect(Topic.matches("events/#", "events/order-created")).toBe(true)
    expect(Topic.matches("events/#", "events")).toBe(true)
    expect(Topic.matches("events/+", "events/a/b")).toBe(false)
    expect(Topic.matches("#", "$SYS/broker")).toBe(false)
    expect(Topic.matches("+/broker", "$SYS/broker")).toBe(false)
  })

  it("covers a filter only when every topic it matches is matched by the grant, for all filters and topics", () => {
    fc.assert(
      fc.property(filter, filter, topic, (grant, sub, t) => {
        if (Topic.covers(grant, sub) && Topic.matches(sub, t)) expect(Topic.matches(grant, t)).toBe(true)
      }),
      { numRuns: 2000 }
    )
  })
})

describe("Acl", () => {
  it("lets a client read its own replies and nobody else's", () => {
    expect(Acl.maySubscribe(["client"], "ann", "reply/ann/#")).toBe(true)
    expect(Acl.maySubscribe(["client"], "ann", "reply/ann/order-1")).toBe(true)
    expect(Acl.maySubscribe(["client"], "ann", "reply/bob/#")).toBe(false)
    expect(Acl.maySubscribe(["client"], "ann", "reply/+/#")).toBe(false)
    expect(Acl.maySubscribe(["client"], "ann", "#")).toBe(false)
    expect(Acl.mayPublish(["client"], "ann", "initiate/place-order")).toBe(true)
    expect(Acl.mayPublish(["client"], "ann", "events/order-created")).toBe(false)
    expect(Acl.mayPublish(["client"], "ann", "initiate/#")).toBe(false)
  })
})
