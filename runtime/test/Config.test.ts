import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { appNames, ConfigError, defaultApps, fromEnv, parseApps, type AppName } from "../src/Config.ts"

const names = fc.subarray([...appNames])
const union = (...lists: ReadonlyArray<ReadonlyArray<AppName>>) => [...new Set(lists.flat())]

describe("BATON_APP", () => {
  it("unset: the defaults", () => {
    expect(parseApps(undefined)).toEqual(["order-entry", "customer"])
    expect(fromEnv({}).apps).toEqual(defaultApps)
  })

  it("+name adds to the defaults: +order-stats keeps customer", () => {
    expect(fromEnv({ BATON_APP: "+order-stats" }).apps).toEqual(["order-entry", "customer", "order-stats"])
    expect(parseApps("order-entry,order-stats")).toEqual(["order-entry", "order-stats"])
    expect(parseApps("all")).toEqual([...appNames])
    expect(parseApps("+all")).toEqual([...appNames])
  })

  it("for any lists: plain names replace the defaults, +names are added, each app once", () => {
    fc.assert(
      fc.property(names, names, (plain, added) => {
        const raw = [...plain, ...added.map((a) => `+${a}`)].join(" , ")
        if (raw === "") return
        expect(parseApps(raw)).toEqual(union(plain.length === 0 ? defaultApps : plain, added))
      }),
      { numRuns: 200 }
    )
  })

  it("refuses unknown apps and an empty list with the names and the + form", () => {
    expect(() => parseApps("order-entry,+stats")).toThrow(ConfigError)
    expect(() => parseApps("order-entry,+stats")).toThrow(/unknown stats/)
    expect(() => parseApps("+")).toThrow(/\+name adds one to the defaults, order-entry,customer/)
    expect(() => parseApps(",")).toThrow(ConfigError)
  })
})
