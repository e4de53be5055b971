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
    expect(() => parseApps("+")).toThrow(/\+entry adds one to the defaults, order-entry,customer/)
    expect(() => parseApps("shop")).toThrow(/paths of app modules \(\.\/src\/app\.ts\).*: unknown shop$/)
    expect(() => parseApps(",")).toThrow(ConfigError)
  })

  it("takes app modules by path beside names, in the order given, each once", () => {
    expect(parseApps("./app.ts,ping,/abs/shop.mjs,+lib/other.js,./app.ts")).toEqual(["./app.ts", "ping", "/abs/shop.mjs", "lib/other.js"])
    expect(parseApps("+./app.ts")).toEqual(["order-entry", "customer", "./app.ts"])
    expect(parseApps("../shop,all")).toEqual(["../shop", ...appNames])
    expect(fromEnv({ BATON_APP: "./shop/src/app.ts" }).apps).toEqual(["./shop/src/app.ts"])
  })

  it("for any names and paths: each once, in the order listed", () => {
    const path = fc.constantFrom("./a.ts", "/srv/b.ts", "../c", "d/e.mjs")
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.constantFrom(...appNames), path), { minLength: 1, maxLength: 8 }), (entries) => {
        expect(parseApps(entries.join(","))).toEqual([...new Set(entries)])
      }),
      { numRuns: 200 }
    )
  })
})

describe("BATON_HTTP_MAX_CONCURRENT", () => {
  it("defaults to 256 and takes a positive whole number only", () => {
    expect(fromEnv({}).httpMaxConcurrent).toBe(256)
    expect(fromEnv({ BATON_HTTP_MAX_CONCURRENT: "3" }).httpMaxConcurrent).toBe(3)
    for (const bad of ["0", "-1", "2.5", "many"]) expect(() => fromEnv({ BATON_HTTP_MAX_CONCURRENT: bad }), bad).toThrow(/BATON_HTTP_MAX_CONCURRENT must be a positive whole number/)
  })
})

describe("BATON_MAX_INFLIGHT", () => {
  it("defaults to 10,000 and takes 1 to 65,535: a client has no more packet ids [MQTT-2.3.1-1]", () => {
    expect(fromEnv({}).maxInflight).toBe(10_000)
    expect(fromEnv({ BATON_MAX_INFLIGHT: "65535" }).maxInflight).toBe(65_535)
    expect(fromEnv({ BATON_MAX_INFLIGHT: "1" }).maxInflight).toBe(1)
    for (const bad of ["65536", "1000000"]) expect(() => fromEnv({ BATON_MAX_INFLIGHT: bad }), bad).toThrow(/BATON_MAX_INFLIGHT must be at most 65535 \(the packet ids of one client\), got '\d+'/)
    for (const bad of ["0", "-1", "many"]) expect(() => fromEnv({ BATON_MAX_INFLIGHT: bad }), bad).toThrow(/BATON_MAX_INFLIGHT must be a positive whole number/)
  })
})

describe("BATON_TICK_STUCK_MS", () => {
  it("defaults to ten dead-after periods, at least 30 s, and must outlast BATON_DEAD_AFTER_MS", () => {
    expect(fromEnv({}).tickStuckMs).toBe(30_000)
    expect(fromEnv({ BATON_DEAD_AFTER_MS: "5000" }).tickStuckMs).toBe(50_000)
    expect(fromEnv({ BATON_TICK_STUCK_MS: "4000" }).tickStuckMs).toBe(4000)
    expect(() => fromEnv({ BATON_TICK_STUCK_MS: "3000" })).toThrow(ConfigError)
    expect(() => fromEnv({ BATON_TICK_STUCK_MS: "3000" })).toThrow(/BATON_TICK_STUCK_MS \(3000\) must be longer than BATON_DEAD_AFTER_MS \(3000\)/)
  })
})

describe("BATON_IDLE_SPIN_US", () => {
  it("is 500 us with the embedded broker on SQLite, 0 with PostgreSQL or an external broker; a value given wins", () => {
    expect(fromEnv({}).idleSpinUs).toBe(500)
    expect(fromEnv({ BATON_FRONT: "thread" }).idleSpinUs).toBe(500)
    expect(fromEnv({ BATON_DATABASE_URL: "postgres://localhost/x" }).idleSpinUs).toBe(0)
    expect(fromEnv({ BATON_BROKER_URL: "mqtt://localhost:1883" }).idleSpinUs).toBe(0)
    expect(fromEnv({ BATON_IDLE_SPIN_US: "0" }).idleSpinUs).toBe(0)
    expect(fromEnv({ BATON_IDLE_SPIN_US: "200" }).idleSpinUs).toBe(200)
    expect(fromEnv({ BATON_IDLE_SPIN_US: "100", BATON_DATABASE_URL: "postgres://localhost/x" }).idleSpinUs).toBe(100)
    expect(fromEnv({ BATON_IDLE_SPIN_US: "0", BATON_BROKER_URL: "mqtt://localhost:1883" }).idleSpinUs).toBe(0)
  })

  it("refuses what is not 0-10,000 whole microseconds, and polling with an external broker", () => {
    for (const bad of ["-1", "1.5", "abc", "10001"])
      expect(() => fromEnv({ BATON_IDLE_SPIN_US: bad })).toThrow(new ConfigError(`BATON_IDLE_SPIN_US must be a whole number of microseconds from 0 to 10000, got '${bad}'`))
    expect(() => fromEnv({ BATON_IDLE_SPIN_US: "50", BATON_BROKER_URL: "mqtt://localhost:1883" })).toThrow(/BATON_IDLE_SPIN_US .* needs the embedded broker/)
  })
})

describe("BATON_FRONT", () => {
  it("is off by default, log or thread when asked; the backlog bound 8,192 by default", () => {
    expect(fromEnv({}).front).toBe("off")
    expect(fromEnv({ BATON_FRONT: "off" }).front).toBe("off")
    expect(fromEnv({ BATON_FRONT: "log" }).front).toBe("log")
    expect(fromEnv({ BATON_FRONT: "thread" }).front).toBe("thread")
    expect(fromEnv({}).frontBacklog).toBe(8_192)
    expect(fromEnv({ BATON_FRONT_BACKLOG: "64" }).frontBacklog).toBe(64)
    expect(() => fromEnv({ BATON_FRONT_BACKLOG: "0" })).toThrow(/BATON_FRONT_BACKLOG/)
  })

  it("refuses any other value, saying which are taken", () => {
    expect(() => fromEnv({ BATON_FRONT: "on" })).toThrow(new ConfigError("BATON_FRONT must be off, log or thread, got 'on'"))
  })

  it.each(["log", "thread"])("refuses %s with PostgreSQL or an external broker, saying why", (mode) => {
    expect(() => fromEnv({ BATON_FRONT: mode, BATON_DATABASE_URL: "postgres://localhost/baton" })).toThrow(new RegExp(`BATON_FRONT=${mode} needs the embedded SQLite store.*unset BATON_DATABASE_URL or BATON_FRONT`))
    expect(() => fromEnv({ BATON_FRONT: mode, BATON_BROKER_URL: "mqtt://localhost:1883" })).toThrow(new RegExp(`BATON_FRONT=${mode} needs the embedded broker.*unset BATON_BROKER_URL or BATON_FRONT`))
    // Off, both are fine.
    expect(fromEnv({ BATON_DATABASE_URL: "postgres://localhost/baton", BATON_BROKER_URL: "mqtt://localhost:1883" }).front).toBe("off")
  })
})
