/** One log line per refusal (issue #19): the guard's line, not the broker's error report as well. */
import { describe, expect, it } from "vitest"
import mqtt from "mqtt"
import { sleep, trySubscribe, tryPublish, useRuntime } from "./support.ts"

describe("a refusal is logged in one line", () => {
  const ctx = useRuntime()
  const linesOf = (clientId: string) => ctx.h.logger.lines.filter((l) => l.includes(`client=${clientId} `))
  const fresh = (what: string) => `${what}-${crypto.randomUUID().slice(0, 8)}`

  it("a refused publish: one line, and the client is disconnected", async () => {
    const clientId = fresh("refused-pub")
    const client = await mqtt.connectAsync(ctx.h.url, { protocolVersion: 4, clientId, reconnectPeriod: 0 })
    expect(await tryPublish(client, "events/order-created")).toBe(false)
    await sleep(300)
    expect(linesOf(clientId)).toEqual([expect.stringMatching(/WARN  publish refused .*may not publish on 'events\/order-created'/)])
    await client.endAsync(true)
  })

  it("a refused connection: one line", async () => {
    const clientId = "not a valid id"
    const before = ctx.h.logger.lines.filter((l) => l.includes(`client="${clientId}"`)).length
    await expect(mqtt.connectAsync(ctx.h.url, { protocolVersion: 4, clientId, reconnectPeriod: 0 })).rejects.toThrow(/Identifier rejected/)
    await sleep(300)
    const lines = ctx.h.logger.lines.filter((l) => l.includes(`client="${clientId}"`))
    expect(lines.slice(before)).toEqual([expect.stringMatching(/WARN  connect refused /)])
  })

  it("a refused subscription: one line, and the client stays connected", async () => {
    const clientId = fresh("refused-sub")
    const client = await mqtt.connectAsync(ctx.h.url, { protocolVersion: 4, clientId, reconnectPeriod: 0 })
    expect(await trySubscribe(client, "$SYS/#")).toBe(false)
    await sleep(300)
    expect(linesOf(clientId)).toEqual([expect.stringMatching(/WARN  subscribe refused /)])
    expect(client.connected).toBe(true)
    await client.endAsync()
  })
})
