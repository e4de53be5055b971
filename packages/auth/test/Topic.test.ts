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

/** MQTT 3.1.1's matching, written as a regular expression: the model `matches` is checked against. */
const model = (f: string, t: string): boolean => {
  const levels = f.split("/")
  if (t.startsWith("$") && (levels[0] === "#" || levels[0] === "+")) return false
  const hash = levels.at(-1) === "#"
  const body = (hash ? levels.slice(0, -1) : levels).map((l) => (l === "+" ? "[^/]*" : l.replace(/[$]/g, "\\$"))).join("/")
  const source = hash ? (levels.length === 1 ? ".*" : `${body}(?:/.*)?`) : body
  return new RegExp(`^${source}$`).test(t)
}

const anyLevel = fc.constantFrom("a", "b", "", "x1", "$SYS", "$baton")
const anyTopic = fc.array(anyLevel, { minLength: 1, maxLength: 5 }).map((ls) => ls.join("/"))
const anyFilter = fc.array(fc.oneof(anyLevel, fc.constant("+")), { minLength: 1, maxLength: 4 }).chain((ls) =>
  fc.boolean().map((hash) => [...ls, ...(hash ? ["#"] : [])].join("/"))
)

/** A grant and a filter narrower than it: a `+` kept or made a level, a `#` kept, cut or made levels. */
const narrowed = filter.chain((g) =>
  fc
    .tuple(
      ...g
        .split("/")
        .map((l): fc.Arbitrary<ReadonlyArray<string>> =>
          l === "+"
            ? fc.constantFrom(["+"], ["a"], ["b"])
            : l === "#"
              ? fc.tuple(fc.array(fc.constantFrom("a", "b", "+"), { maxLength: 3 }), fc.boolean()).map(([rest, hash]) => [...rest, ...(hash ? ["#"] : [])])
              : fc.constant([l])
        )
    )
    .map((parts) => ({ grant: g, sub: parts.flat().join("/") }))
)

describe("Topic, against the standard", () => {
  it("matches exactly the topics MQTT 3.1.1 says, for all filters and topics (including $ topics and empty levels)", () => {
    fc.assert(
      fc.property(anyFilter, anyTopic, (f, t) => {
        expect(Topic.matches(f, t), `${f} against ${t}`).toBe(model(f, t))
      }),
      { numRuns: 2000 }
    )
  })

  it("a topic as a filter is covered exactly when it is matched, for all grants and topics", () => {
    fc.assert(
      fc.property(anyFilter, anyTopic, (g, t) => {
        expect(Topic.covers(g, t), `${g} covers ${t}`).toBe(Topic.matches(g, t))
      }),
      { numRuns: 2000 }
    )
  })

  it("covers every filter narrower than the grant, and every filter covers itself", () => {
    fc.assert(
      fc.property(narrowed, ({ grant, sub }) => {
        expect(Topic.covers(grant, sub), `${grant} covers ${sub}`).toBe(true)
        expect(Topic.covers(sub, sub)).toBe(true)
      }),
      { numRuns: 1000 }
    )
  })

  it("does not cover a wider filter", () => {
    for (const [grant, sub] of [
      ["a/+", "a/#"],
      ["a/b", "a/+"],
      ["a", "a/b"],
      ["a/b", "a"],
      ["a/+/c", "a/+"],
      ["#", "$SYS/#"],
      ["+/#", "$baton/x"]
    ] as const)
      expect(Topic.covers(grant, sub), `${grant} covers ${sub}`).toBe(false)
    expect(Topic.covers("$baton/#", "$baton/x/+")).toBe(true)
  })

  it("refuses wildcards, NUL and the empty topic in a publish topic; counts levels", () => {
    for (const t of ["", "a/+", "a/#", "#", "a+b", "a\u0000b"]) expect(Topic.isValidTopic(t), JSON.stringify(t)).toBe(false)
    for (const t of ["a", "a/b", "/", "$baton/x"]) expect(Topic.isValidTopic(t), t).toBe(true)
    expect([Topic.depth("a"), Topic.depth("a/b/c"), Topic.depth("/")]).toEqual([1, 3, 2])
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

  it("gives each role its grants: observers and operators only watch, services reach every channel", () => {
    for (const role of ["observer", "operator"] as const) {
      expect(Acl.mayPublish([role], "o", "initiate/place-order"), role).toBe(false)
      expect(Acl.mayPublish([role], "o", "events/x"), role).toBe(false)
      expect(Acl.maySubscribe([role], "o", "events/#"), role).toBe(true)
      expect(Acl.maySubscribe([role], "o", "errors/place-order"), role).toBe(true)
      expect(Acl.maySubscribe([role], "o", "reply/o/#"), role).toBe(false)
      expect(Acl.maySubscribe([role], "o", "initiate/#"), role).toBe(false)
    }
    expect(Acl.maySubscribe(["client"], "ann", "errors/#")).toBe(true)
    expect(Acl.maySubscribe(["client"], "ann", "events/#")).toBe(true)
    expect(Acl.maySubscribe(["client"], "ann", "initiate/#")).toBe(false)
    expect(Acl.mayPublish(["service"], "s", "events/order-created")).toBe(true)
    expect(Acl.mayPublish(["service"], "s", "$baton/cluster/s")).toBe(true)
    expect(Acl.maySubscribe(["service"], "s", "#")).toBe(true)
    expect(Acl.maySubscribe(["service"], "s", "$baton/#")).toBe(true)
    expect(Acl.mayPublish(["service"], "s", "a/+")).toBe(false)
    expect(Acl.mayPublish([], "s", "initiate/x")).toBe(false)
    expect(Acl.maySubscribe([], "s", "events/#")).toBe(false)
    expect(Acl.maySubscribe(["observer", "client"], "ann", "reply/ann/1")).toBe(true)
  })

  it("names the roles, and who may read, operate and submit over HTTP", () => {
    expect(Acl.allRoles.filter(Acl.isRole)).toEqual(["client", "observer", "operator", "service"])
    for (const s of ["admin", "", "Client", "roles"]) expect(Acl.isRole(s), s).toBe(false)
    const table = Object.fromEntries(Acl.allRoles.map((r) => [r, (["read", "operate", "submit"] as const).filter((a) => Acl.mayHttp([r], a))]))
    expect(table).toEqual({ client: ["submit"], observer: ["read"], operator: ["read", "operate"], service: ["read", "submit"] })
    expect(Acl.mayHttp([], "read")).toBe(false)
  })
})
