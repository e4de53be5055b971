import { describe, expect, it } from "vitest"
import { Trace } from "@baton/core"
import { ConfigError, fromEnv } from "../src/Config.ts"
import * as Observability from "../src/Observability.ts"

describe("observability configuration", () => {
  it("reads BATON_OTLP_URL, BATON_LOG_FORMAT and BATON_LOG_LEVEL, refusing bad values clearly", () => {
    const d = fromEnv({})
    expect([d.otlpUrl, d.logFormat, d.logLevel, d.otlpIntervalMs]).toEqual([undefined, "text", "info", 1000])
    const c = fromEnv({ BATON_OTLP_URL: "http://localhost:4318/v1/traces", BATON_LOG_FORMAT: "json", BATON_LOG_LEVEL: "debug", BATON_OTLP_INTERVAL_MS: "250" })
    expect([c.otlpUrl, c.logFormat, c.logLevel, c.otlpIntervalMs]).toEqual(["http://localhost:4318/v1/traces", "json", "debug", 250])
    expect(() => fromEnv({ BATON_OTLP_URL: "localhost:4318" })).toThrow(/BATON_OTLP_URL must be an http/)
    expect(() => fromEnv({ BATON_LOG_FORMAT: "xml" })).toThrow(ConfigError)
    expect(() => fromEnv({ BATON_LOG_LEVEL: "trace" })).toThrow(/BATON_LOG_LEVEL must be one of debug, info, warn, error/)
  })

  it("without an OTLP endpoint, passes the trace context on: a child of the event's span, or a new trace", () => {
    const root = Observability.untraced.begin("ingress x", undefined, {})
    expect(Observability.untraced.enabled).toBe(false)
    const child = Observability.untraced.begin("p", root.traceparent, {})
    expect(child.traceId).toBe(root.traceId)
    expect(root.traceId).toBe(Trace.parse(root.traceparent)?.traceId)
    expect(Trace.parse(child.traceparent)?.spanId).not.toBe(Trace.parse(root.traceparent)?.spanId)
    child.end(new Error("nothing recorded"))
  })
})
