import { describe, expect, it } from "vitest"
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
})
