import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { Log } from "../src/index.ts"

const capture = (options: Parameters<typeof Log.stream>[0]) => {
  const lines: Array<{ level: Log.Level; line: string }> = []
  return { lines, logger: Log.stream({ ...options, write: (level, line) => lines.push({ level, line }) }) }
}

describe("log lines", () => {
  it("JSON: one object per line with time, level, event and every defined field, whatever the values", () => {
    fc.assert(
      fc.property(
        fc.constantFrom<Log.Level>(...Log.levels),
        fc.string(),
        fc.dictionary(fc.string(), fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.constant(undefined))),
        (level, event, fields) => {
          const { lines, logger } = capture({ format: "json", threshold: "debug" })
          logger.log(level, event, fields)
          expect(lines).toHaveLength(1)
          expect(lines[0]!.line).not.toContain("\n")
          const o = JSON.parse(lines[0]!.line) as Record<string, unknown>
          expect(o.level).toBe(level)
          expect(o.event).toBe(event)
          expect(Number.isNaN(Date.parse(o.time as string))).toBe(false)
          for (const [k, v] of Object.entries(fields)) {
            const key = ["time", "level", "event"].includes(k) ? `${k}_` : k
            if (v === undefined) expect(Object.hasOwn(o, key) && !["time", "level", "event"].includes(key)).toBe(false)
            else expect(Object.hasOwn(o, key) ? o[key] : "missing").toBe(v)
          }
        }
      )
    )
  })

  it("JSON: a field named like a built-in or a reserved key stays a plain field", () => {
    const o = JSON.parse(Log.formatJson("info", "e", JSON.parse('{"__proto__": 1, "time": "x", "constructor": true}') as Log.Fields)) as Record<string, unknown>
    expect(Object.entries(o).filter(([k]) => k !== "time")).toEqual([["level", "info"], ["event", "e"], ["__proto__", 1], ["time_", "x"], ["constructor", true]])
  })

  it("writes only lines at or above the threshold, and says which levels are enabled", () => {
    for (const threshold of Log.levels) {
      const { lines, logger } = capture({ threshold })
      for (const level of Log.levels) logger.log(level, "e", { a: 1 })
      expect(lines.map((l) => l.level)).toEqual(Log.levels.slice(Log.levels.indexOf(threshold)))
      expect(Log.enabled(logger, "debug")).toBe(threshold === "debug")
      expect(Log.enabled(Log.masked(logger), "debug")).toBe(threshold === "debug")
    }
    // A logger without a threshold (tests' memory logger) writes info and up: no debug line is built for it.
    expect(Log.enabled(Log.memory(), "debug")).toBe(false)
    expect(Log.enabled(Log.memory(), "info")).toBe(true)
  })

  it("text stays the readable format, card numbers masked in either", () => {
    const { lines, logger } = capture({})
    Log.masked(logger).log("info", "paid", { card: "4242424242424242", n: 2 })
    expect(lines[0]!.line).toMatch(/^\S+ INFO  paid card=\S+ n=2$/)
    expect(lines[0]!.line).not.toContain("4242424242424242")
    const json = capture({ format: "json" })
    Log.masked(json.logger).log("warn", "paid", { card: "4242424242424242" })
    expect(json.lines[0]!.line).not.toContain("4242424242424242")
  })
})

describe("Log.reason", () => {
  it("an Error reads as its message, another failure as its JSON, a cycle or a primitive as its text", () => {
    expect(Log.reason(new Error("down"))).toBe("down")
    expect(Log.reason({ code: 503, service: "pricing" })).toBe(`{"code":503,"service":"pricing"}`)
    const cycle: Record<string, unknown> = {}
    cycle.self = cycle
    expect(Log.reason(cycle)).toBe("[object Object]")
    expect(Log.reason("plain")).toBe("plain")
    expect(Log.reason(undefined)).toBe("undefined")
  })
})

describe("Log.streak", () => {
  it("for any run of failures and successes: an error line where a streak starts or its reason changes, an info line at the first success after one, nothing else", () => {
    const outcome = fc.oneof(fc.constant(undefined), fc.constantFrom("a", "b", "c"))
    fc.assert(
      fc.property(fc.array(outcome, { maxLength: 40 }), (outcomes) => {
        const logger = Log.memory()
        const streak = Log.streak(logger, "failed", "back")
        const expected: Array<string> = []
        let last: string | undefined
        for (const o of outcomes) {
          if (o === undefined) {
            streak.succeeded()
            if (last !== undefined) expected.push("INFO  back")
            last = undefined
          } else {
            streak.failed(new Error(o))
            if (o !== last) expected.push(`ERROR failed reason=${o}`)
            last = o
          }
        }
        expect(logger.lines.map((l) => l.slice(l.indexOf(" ") + 1))).toEqual(expected)
      })
    )
  })
})
