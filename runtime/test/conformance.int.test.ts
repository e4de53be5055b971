/**
 * MQTT 3.1.1 conformance of the embedded broker with the runtime's guard (issue #19), through real
 * MQTT connections.
 */
import { describe, expect, it, beforeAll, afterAll } from "vitest"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import mqtt, { type MqttClient } from "mqtt"
import { Users } from "@baton/auth"
import { startRuntime, tryPublish, trySubscribe, type Harness } from "./support.ts"

const password = "correct horse"

const login = (url: string, username: string | undefined, options: mqtt.IClientOptions = {}) =>
  mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, ...(username === undefined ? {} : { username, password }), ...options })

/** True once the broker closed the client's connection, false if it is still open after two seconds. */
const closedSoon = (client: MqttClient) =>
  new Promise<boolean>((r) => {
    if (!client.connected) return r(true)
    client.once("close", () => r(true))
    setTimeout(() => r(false), 2000)
  })

describe("MQTT 3.1.1 conformance, with a users file", () => {
  const dir = mkdtempSync(join(tmpdir(), "baton-conf-"))
  let h: Harness

  beforeAll(async () => {
    let file = await Users.addUser({ users: {}, tokens: {} }, "ann", password, ["client"])
    file = await Users.addUser(file, "svc", password, ["service"])
    Users.save(join(dir, "users.json"), file)
    h = await startRuntime({ authFile: join(dir, "users.json"), maxClientIdLength: 20 })
  })
  afterAll(async () => {
    await h?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  // The old connection's disconnection is reported after the new one was authenticated: state kept
  // by client id would be the new connection's, and it would lose its roles.
  for (const [user, clean] of [["ann", true], ["ann", false], ["svc", true]] as const) {
    it(`a second connection of ${user} with the same client id (clean ${clean}) closes the first and keeps its own rights [MQTT-3.1.4-2]`, async () => {
      const clientId = `${user}-takeover-${clean}`
      const first = await login(h.url, user, { clientId, clean })
      const firstClosed = closedSoon(first)
      const second = await login(h.url, user, { clientId, clean })
      try {
        expect(await firstClosed, "the first connection is closed").toBe(true)
        expect(await trySubscribe(second, "events/#"), "SUBSCRIBE events/#").toBe(true)
        if (user === "svc") expect(await trySubscribe(second, "#"), "SUBSCRIBE # as a service").toBe(true)
        expect(await tryPublish(second, "initiate/place-order", "not json"), "PUBLISH initiate/place-order").toBe(true)
        expect(second.connected).toBe(true)
      } finally {
        second.end(true)
        first.end(true)
      }
    })
  }
})

describe("MQTT 3.1.1 conformance, anonymous", () => {
  let h: Harness
  beforeAll(async () => {
    h = await startRuntime()
  })
  afterAll(async () => {
    await h?.stop()
  })

  it("a second connection with the same client id closes the first and keeps its rights [MQTT-3.1.4-2]", async () => {
    const first = await login(h.url, undefined, { clientId: "anon-1" })
    const firstClosed = closedSoon(first)
    const second = await login(h.url, undefined, { clientId: "anon-1" })
    try {
      expect(await firstClosed).toBe(true)
      expect(await trySubscribe(second, "reply/anon-1/#")).toBe(true)
      expect(await tryPublish(second, "initiate/place-order", "not json")).toBe(true)
    } finally {
      second.end(true)
      first.end(true)
    }
  })
})
