import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { Sqlite, Rejections } from "@baton/store"
import * as Http from "../src/Http.ts"

describe("Http", () => {
  it("answers /healthz 503 while starting or stopping and 200 when ready; JSON errors elsewhere", async () => {
    let phase: Http.Phase = "starting"
    const http = await Http.start({ host: "127.0.0.1", port: 0, rejections: await Rejections.make(await Sqlite.open({ path: ":memory:" })), status: { phase: () => phase, detail: async () => ({}) } })
    const get = (path: string, method = "GET") => fetch(`http://127.0.0.1:${http.port}${path}`, { method })
    try {
      expect((await get("/healthz")).status).toBe(503)
      phase = "ready"
      expect((await get("/healthz")).status).toBe(200)
      phase = "stopping"
      const stopping = await get("/healthz")
      expect(stopping.status).toBe(503)
      expect(await stopping.json()).toEqual({ status: "stopping" })
      const missing = await get("/nope")
      expect(missing.status).toBe(404)
      expect(((await missing.json()) as { reason: string }).reason).toContain("/nope")
      expect((await get("/healthz", "POST")).status).toBe(405)
      expect((await (await get("/errors")).json())).toEqual({ counts: {}, security: {}, recent: [] })
    } finally {
      await http.close()
    }
  })

  it("for any bound and any number of held requests: min(bound, n) in progress, the rest 503 with Retry-After, /healthz still 200, then served again", async () => {
    const rejections = await Rejections.make(await Sqlite.open({ path: ":memory:" }))
    const runs = Number(process.env.BATON_PROPERTY_RUNS ?? 15)
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 0, max: 10 }), async (bound, n) => {
        let release!: () => void
        const gate = new Promise<void>((resolve) => (release = resolve))
        let entered = 0
        const route = async () => {
          entered++
          await gate
          return { status: 200, body: {} }
        }
        const http = await Http.start({ host: "127.0.0.1", port: 0, rejections, maxConcurrent: bound, routes: { "POST /hold": route }, status: { phase: () => "ready", detail: async () => ({}) } })
        const post = () => fetch(`http://127.0.0.1:${http.port}/hold`, { method: "POST", signal: AbortSignal.timeout(10_000) })
        try {
          const held = Array.from({ length: Math.min(bound, n) }, post)
          for (let t = 0; entered < held.length; t++) {
            if (t > 400) throw new Error(`${entered} of ${held.length} requests in progress`)
            await new Promise((r) => setTimeout(r, 5))
          }
          const over = await Promise.all(Array.from({ length: Math.max(0, n - bound) }, post))
          for (const res of over) {
            expect(res.status).toBe(503)
            expect(res.headers.get("retry-after")).toBe("1")
            expect(((await res.json()) as { error: string }).error).toBe("service unavailable")
          }
          expect((await fetch(`http://127.0.0.1:${http.port}/healthz`)).status).toBe(200)
          expect(entered).toBe(Math.min(bound, n))
          release()
          for (const res of await Promise.all(held)) expect(res.status).toBe(200)
          expect((await post()).status).toBe(200)
          const errors = (await (await fetch(`http://127.0.0.1:${http.port}/errors`)).json()) as { security: Record<string, number> }
          expect(errors.security["http-busy-refused"]).toBe(Math.max(0, n - bound))
        } finally {
          release()
          await http.close()
        }
      }),
      { numRuns: runs }
    )
  }, 60_000)
})
