/**
 * MQTT 3.1.1 conformance of the embedded broker with the runtime's guard (issue #19), through real
 * MQTT connections. A CONNECT that mqtt.js refuses to send (an empty client id without a clean
 * session) is written byte by byte on a plain socket.
 */
import { describe, expect, it, beforeAll, afterAll } from "vitest"
import { mkdtempSync, rmSync } from "node:fs"
import { connect as tcp } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import mqtt, { type MqttClient } from "mqtt"
import { Users } from "@baton/auth"
import { startRuntime, tryPublish, trySubscribe, type Harness } from "./support.ts"

const password = "correct horse"

const login = (url: string, username: string | undefined, options: mqtt.IClientOptions = {}) =>
  mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, ...(username === undefined ? {} : { username, password }), ...options })

/** An MQTT string: two length bytes, then UTF-8 [MQTT-1.5.3]. */
const mqttString = (s: string) => {
  const bytes = Buffer.from(s, "utf8")
  return Buffer.concat([Buffer.from([bytes.length >> 8, bytes.length & 0xff]), bytes])
}

/**
 * Sends one MQTT 3.1.1 CONNECT [MQTT-3.1] and resolves with the CONNACK's return code and whether
 * the broker then closed the connection (within a second).
 */
const rawConnect = (url: string, options: { readonly clientId: string; readonly clean: boolean; readonly username?: string }) =>
  new Promise<{ readonly returnCode: number; readonly closed: boolean }>((resolve, reject) => {
    const flags = (options.clean ? 0x02 : 0) | (options.username === undefined ? 0 : 0xc0)
    const payload = [mqttString(options.clientId), ...(options.username === undefined ? [] : [mqttString(options.username), mqttString(password)])]
    const body = Buffer.concat([mqttString("MQTT"), Buffer.from([4, flags, 0, 60]), ...payload])
    if (body.length > 127) throw new Error("rawConnect writes a one-byte remaining length")
    const socket = tcp(Number(new URL(url).port), "127.0.0.1", () => socket.write(Buffer.concat([Buffer.from([0x10, body.length]), body])))
    let received = Buffer.alloc(0)
    let returnCode: number | undefined
    const timer = setTimeout(() => {
      socket.destroy()
      if (returnCode === undefined) reject(new Error("no CONNACK within a second"))
      else resolve({ returnCode, closed: false })
    }, 1000)
    socket.on("data", (chunk) => {
      received = Buffer.concat([received, chunk])
      // CONNACK: 0x20, remaining length 2, session present, return code [MQTT-3.2].
      if (returnCode === undefined && received.length >= 4 && received[0] === 0x20) returnCode = received[3]
    })
    socket.on("error", () => undefined)
    socket.on("close", () => {
      clearTimeout(timer)
      if (returnCode === undefined) reject(new Error("connection closed without a CONNACK"))
      else resolve({ returnCode, closed: true })
    })
  })

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

  it("refuses an empty client id without a clean session with CONNACK 2 and closes the connection [MQTT-3.1.3-8]", async () => {
    expect(await rawConnect(h.url, { clientId: "", clean: false, username: "ann" })).toEqual({ returnCode: 2, closed: true })
    expect(h.logger.lines.some((l) => l.includes("connect refused") && l.includes("an empty client id requires a clean session"))).toBe(true)
  })

  it("assigns a client id to an empty one with a clean session, whoever the user [MQTT-3.1.3-6]", async () => {
    expect(await rawConnect(h.url, { clientId: "", clean: true, username: "ann" })).toEqual({ returnCode: 0, closed: false })
    const client = await login(h.url, "ann", { clientId: "", clean: true })
    try {
      expect(await trySubscribe(client, "events/#")).toBe(true)
      expect(await tryPublish(client, "initiate/place-order", "not json")).toBe(true)
    } finally {
      client.end(true)
    }
  })

  it("refuses a client id with forbidden characters or too long with CONNACK 2, not 5 [MQTT-3.1.3-9]", async () => {
    for (const clientId of ["ann/1", "ann 1", "ann-" + "x".repeat(17)]) {
      expect(await rawConnect(h.url, { clientId, clean: true, username: "ann" }), clientId).toEqual({ returnCode: 2, closed: true })
      await expect(login(h.url, "ann", { clientId }), clientId).rejects.toThrow(/Identifier rejected/i)
    }
    // Wrong credentials and another user's client id stay "not authorized".
    expect(await rawConnect(h.url, { clientId: "svc-1", clean: true, username: "ann" })).toEqual({ returnCode: 5, closed: true })
    await expect(login(h.url, "ann", { clientId: "ann-1", password: "wrong" })).rejects.toThrow(/Not authorized/i)
  })
})

describe("MQTT 3.1.1 conformance, anonymous", () => {
  let h: Harness
  beforeAll(async () => {
    h = await startRuntime()
  })
  afterAll(async () => {
    await h?.stop()
  })

  it("refuses an empty client id without a clean session with CONNACK 2, and accepts one with a clean session [MQTT-3.1.3-8]", async () => {
    expect(await rawConnect(h.url, { clientId: "", clean: false })).toEqual({ returnCode: 2, closed: true })
    expect(await rawConnect(h.url, { clientId: "", clean: true })).toEqual({ returnCode: 0, closed: false })
    expect(await rawConnect(h.url, { clientId: "a#b", clean: true })).toEqual({ returnCode: 2, closed: true })
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
