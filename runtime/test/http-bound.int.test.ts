/**
 * Back-pressure at the HTTP port: at most `BATON_HTTP_MAX_CONCURRENT` requests in progress, on a
 * real runtime (ephemeral ports) with an app whose route can be held. Past the bound a request is
 * answered 503 with `Retry-After: 1` and counted; `/healthz` and `/metrics` still answer; once the
 * held requests finish, a new one is served. With a larger bound the same requests are all served.
 */
import { Ajv2020 } from "ajv/dist/2020.js"
import type { App } from "@baton/core"
import { describe, expect, it } from "vitest"
import { sleep, startRuntime } from "./support.ts"

const bound = 3

/** An app with one route, `POST /hold`, that answers only once `release` is called. */
const holding = () => {
  let release!: () => void
  const gate = new Promise<void>((resolve) => (release = resolve))
  let entered = 0
  const app: App = {
    name: "holding",
    initiating: [],
    processors: [],
    http: {
      "POST /hold": async () => {
        entered++
        await gate
        return { status: 200, body: { held: true } }
      }
    }
  }
  return { app, release: () => release(), entered: () => entered }
}

const waitUntil = async (condition: () => boolean, what: string) => {
  for (let t = 0; !condition(); t++) {
    if (t > 400) throw new Error(`timed out waiting for ${what}`)
    await sleep(25)
  }
}

describe("back-pressure: concurrent HTTP requests", () => {
  it(`answers 503 with Retry-After past BATON_HTTP_MAX_CONCURRENT (${bound}), keeps /healthz and /metrics answering, and serves again once the held requests finish`, async () => {
    const hold = holding()
    const h = await startRuntime({ httpMaxConcurrent: bound }, { apps: () => [hold.app] })
    const base = `http://127.0.0.1:${h.runtime.httpPort}`
    // Without the bound a request past it would be held too: it fails here instead of hanging.
    const post = () => fetch(`${base}/hold`, { method: "POST", body: "{}", signal: AbortSignal.timeout(20_000) })
    let refusal: unknown
    try {
      const held = Array.from({ length: bound }, post)
      await waitUntil(() => hold.entered() === bound, `${bound} requests in progress`)

      const refused = await post()
      expect(refused.status, "the request past the bound").toBe(503)
      expect(refused.headers.get("retry-after")).toBe("1")
      const body = (await refused.json()) as { error: string; reason: string }
      expect(body.error).toBe("service unavailable")
      expect(body.reason).toContain("BATON_HTTP_MAX_CONCURRENT")
      refusal = body
      // Another endpoint is bounded too: the bound is on requests, not on one route.
      expect((await fetch(`${base}/operations`)).status).toBe(503)
      // A burst of retries: every one refused, not one log line each.
      const burst = await Promise.all(Array.from({ length: 20 }, post))
      expect(burst.map((r) => r.status)).toEqual(burst.map(() => 503))
      await Promise.all(burst.map((r) => r.json()))
      expect(hold.entered(), "the refused requests never reached the route").toBe(bound)

      // Operators still see what is going on.
      expect((await fetch(`${base}/healthz`)).status).toBe(200)
      const metrics = await fetch(`${base}/metrics`)
      expect(metrics.status).toBe(200)
      // Prometheus counts the refusals too: the 22 so far.
      expect(await metrics.text()).toMatch(/^baton_http_refused_total 22$/m)
      const lines = h.logger.lines.filter((l) => l.includes("http busy")).length
      expect(lines, "logged").toBeGreaterThanOrEqual(1)
      expect(lines, "at most one line a second, not one per refusal").toBeLessThan(5)

      hold.release()
      for (const res of await Promise.all(held)) {
        expect(res.status).toBe(200)
        expect(await res.json()).toEqual({ held: true })
      }
      const again = await post()
      expect(again.status, "served again once the held requests finished").toBe(200)
      await again.json()
      const errors = (await (await fetch(`${base}/errors`)).json()) as { security: Record<string, number> }
      expect(errors.security["http-busy-refused"]).toBe(22)

      // The OpenAPI document has the 503 (with Retry-After) on the bounded operations, as answered, and not on the exempt ones.
      const doc = (await (await fetch(`${base}/openapi.json`)).json()) as any
      const busy = doc.paths["/hold"].post.responses["503"]
      expect(busy.headers["Retry-After"]).toBeDefined()
      const ajv = new Ajv2020({ strict: false, allErrors: true })
      ajv.addSchema({ ...doc, $id: "openapi" })
      const validate = ajv.getSchema("openapi#/paths/~1hold/post/responses/503/content/application~1json/schema")!
      expect(validate(refusal) ? [] : validate.errors).toEqual([])
      expect(doc.paths["/operations"].get.responses["503"]).toBeDefined()
      expect(doc.paths["/metrics"].get.responses["503"]).toBeUndefined()
      expect(doc.paths["/healthz"].get.responses["503"].description).toContain("starting or stopping")
    } finally {
      hold.release()
      await h.stop()
    }
  }, 60_000)

  it("serves the same requests when the bound is larger than them", async () => {
    const hold = holding()
    const h = await startRuntime({ httpMaxConcurrent: bound + 2 }, { apps: () => [hold.app] })
    const base = `http://127.0.0.1:${h.runtime.httpPort}`
    const post = () => fetch(`${base}/hold`, { method: "POST", body: "{}" })
    try {
      const held = Array.from({ length: bound + 1 }, post)
      await waitUntil(() => hold.entered() === bound + 1, `${bound + 1} requests in progress`)
      expect((await fetch(`${base}/operations`)).status).toBe(200)
      hold.release()
      for (const res of await Promise.all(held)) expect(res.status).toBe(200)
      const errors = (await (await fetch(`${base}/errors`)).json()) as { security: Record<string, number> }
      expect(errors.security["http-busy-refused"]).toBe(0)
    } finally {
      hold.release()
      await h.stop()
    }
  }, 60_000)
})
