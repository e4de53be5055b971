import { describe, expect, it, beforeAll, afterAll } from "vitest"
import { execFileSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import mqtt from "mqtt"
import { Users } from "@baton/auth"
import { ConfigError, fromEnv } from "../src/Config.ts"
import { startRuntime, tryPublish, trySubscribe, until, type Harness } from "./support.ts"

const dir = mkdtempSync(join(tmpdir(), "baton-sec-"))
const authFile = join(dir, "users.json")
const password = "correct horse"

/** Connects with credentials; resolves with the client, or rejects with the CONNACK's reason. */
const login = (url: string, username: string | undefined, options: mqtt.IClientOptions = {}) =>
  mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, ...(username === undefined ? {} : { username, password }), ...options })

describe("security", () => {
  let h: Harness
  let url: string
  let token: string
  let observerToken: string

  beforeAll(async () => {
    let file = await Users.addUser({ users: {}, tokens: {} }, "ann", password, ["client"])
    file = await Users.addUser(file, "eve", password, ["observer"])
    file = await Users.addUser(file, "svc", password, ["service"])
    const added = Users.addToken(file, "ann")
    token = added.token
    const observer = Users.addToken(added.file, "eve")
    observerToken = observer.token
    Users.save(authFile, observer.file)
    h = await startRuntime({ authFile, maxTopicDepth: 5, maxClientIdLength: 20, maxPayloadBytes: 2048 })
    url = h.url
  })
  afterAll(async () => {
    await h?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it("refuses wrong or missing credentials with CONNACK 'not authorized', and never logs the password", async () => {
    const wrong = "Wr0ng-Secret-77"
    await expect(login(url, "ann", { password: wrong })).rejects.toThrow(/Not authorized/i)
    await expect(login(url, "nobody")).rejects.toThrow(/Not authorized/i)
    await expect(login(url, undefined)).rejects.toThrow(/Not authorized/i)
    // Waited for: on the front thread (BATON_FRONT=thread) its lines cross to main's logger after the CONNACK.
    await until("three connect refused lines", () => h.logger.lines.filter((l) => l.includes("connect refused")).length >= 3)
    expect(h.logger.lines.join("\n")).not.toContain(password)
    expect(h.logger.lines.join("\n")).not.toContain(wrong)
  })

  const matrix: ReadonlyArray<{ user: string; publish: Record<string, boolean>; subscribe: Record<string, boolean> }> = [
    {
      user: "ann",
      publish: { "initiate/place-order": true, "events/order-created": false, "errors/x": false, "accepted/place-order": false, "reply/ann/1": false, "$SYS/x": false },
      subscribe: { "events/#": true, "events/order-created": true, "errors/#": true, "reply/ann-c/#": true, "reply/bob/#": false, "reply/+/#": false, "#": false, "accepted/#": false, "initiate/#": false, "$SYS/#": false }
    },
    {
      user: "eve",
      publish: { "initiate/place-order": false, "events/order-created": false },
      subscribe: { "events/#": true, "errors/#": true, "reply/eve-c/#": false, "#": false, "initiate/#": false }
    },
    {
      user: "svc",
      publish: { "initiate/place-order": true, "events/order-created": true, "accepted/place-order": true, "$baton/x": true, "$SYS/x": false, "$other/x": false },
      subscribe: { "#": true, "accepted/#": true, "reply/anyone/#": true, "$baton/#": true, "$SYS/#": false, "$other/#": false, "+/x": true }
    }
  ]

  for (const row of matrix) {
    it(`applies the ACL of ${row.user} through real MQTT connections`, async () => {
      for (const [topic, allowed] of Object.entries(row.publish)) {
        const client = await login(url, row.user, { clientId: `${row.user}-c` })
        expect(await tryPublish(client, topic, topic.startsWith("initiate/") ? "not json" : "{}"), `${row.user} publish ${topic}`).toBe(allowed)
        client.end(true)
      }
      const client = await login(url, row.user, { clientId: `${row.user}-c` })
      for (const [filter, allowed] of Object.entries(row.subscribe)) expect(await trySubscribe(client, filter), `${row.user} subscribe ${filter}`).toBe(allowed)
      client.end(true)
    })
  }

  it("counts and logs refusals, and a refused publish never reaches a processor", async () => {
    const inbox = async () => Number((await h.runtime.store.run(h.runtime.store.query("SELECT COUNT(*) AS n FROM inbox").get()))?.n)
    const before = await inbox()
    const eve = await login(url, "eve", { clientId: "eve-1" })
    expect(await tryPublish(eve, "initiate/place-order", JSON.stringify({ customerId: "e", email: "e@example.com", items: [{ sku: "BOOK-1", qty: 1, price: 1 }], payment: { card: "4242424242424242" } }))).toBe(false)
    eve.end(true)
    await new Promise((r) => setTimeout(r, 200))
    expect(await inbox()).toBe(before)
    const errors = await fetch(`http://127.0.0.1:${h.runtime.httpPort}/errors`, { headers: { authorization: `Bearer ${observerToken}` } })
    const body = (await errors.json()) as { security: Record<string, number> }
    expect(body.security["publish-refused"]).toBeGreaterThan(0)
    expect(body.security["subscribe-refused"]).toBeGreaterThan(0)
    expect(body.security["connect-refused"]).toBeGreaterThan(0)
    expect(h.logger.lines.some((l) => l.includes("publish refused") && l.includes("client=") && l.includes("reason="))).toBe(true)
  })

  it("enforces the limits on client ids, topic depth and payload size, and reports them", async () => {
    // [MQTT-3.1.3-9]: CONNACK 2 (identifier rejected).
    await expect(login(url, "ann", { clientId: "x".repeat(21) })).rejects.toThrow(/Identifier rejected/i)
    await expect(login(url, "ann", { clientId: "bad/id" })).rejects.toThrow(/Identifier rejected/i)
    // Another user's client id would take over that user's session and its queued replies.
    await expect(login(url, "eve", { clientId: "ann-c" })).rejects.toThrow(/Not authorized/i)
    expect(h.logger.lines.some((l) => l.includes("does not belong to user 'eve'"))).toBe(true)
    const svc = await login(url, "svc")
    expect(await tryPublish(svc, "events/a/b/c/d/e")).toBe(false)
    const svc2 = await login(url, "svc")
    expect(await tryPublish(svc2, "events/big", "x".repeat(4096))).toBe(false)
    svc2.end(true)
    const lines = h.logger.lines.join("\n")
    expect(lines).toContain("more than 5 levels")
    expect(lines).toContain("exceeds the limit of 2048 bytes")
    expect(lines).toContain("client id longer than 20 characters")
  })

  it("requires a bearer token on every HTTP endpoint but /healthz", async () => {
    const base = `http://127.0.0.1:${h.runtime.httpPort}`
    expect((await fetch(`${base}/healthz`)).status).toBe(200)
    const none = await fetch(`${base}/errors`)
    expect(none.status).toBe(401)
    expect(((await none.json()) as { reason: string }).reason).toContain("Bearer")
    expect((await fetch(`${base}/errors`, { headers: { authorization: "Bearer 0000.nope" } })).status).toBe(401)
    expect((await fetch(`${base}/errors`, { headers: { authorization: `Bearer ${observerToken}` } })).status).toBe(200)
    // A client's token names its user, but reading every rejection needs the observer role or above.
    const client = await fetch(`${base}/errors`, { headers: { authorization: `Bearer ${token}` } })
    expect(client.status).toBe(403)
    expect(((await client.json()) as { reason: string }).reason).toMatch(/user 'ann' \(roles client\) may not read rejections: that needs the observer or operator or service role/)
    expect((await fetch(`${base}/nope`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(404)
  })
})

describe("secure defaults", () => {
  it("refuses to listen on another address than loopback without authentication", () => {
    expect(() => fromEnv({ BATON_HOST: "0.0.0.0" })).toThrow(ConfigError)
    expect(() => fromEnv({ BATON_HOST: "0.0.0.0" })).toThrow(/without authentication: set BATON_AUTH_FILE/)
    expect(fromEnv({ BATON_HOST: "0.0.0.0", BATON_AUTH_FILE: "/x" }).host).toBe("0.0.0.0")
    expect(fromEnv({}).host).toBe("127.0.0.1")
  })

  it("lets anonymous local clients in with the client role, with one warning line", async () => {
    const h = await startRuntime()
    try {
      expect(h.logger.lines.filter((l) => l.includes("anonymous clients allowed"))).toHaveLength(1)
      const client = await login(h.url, undefined)
      expect(await trySubscribe(client, "events/#")).toBe(true)
      expect(await trySubscribe(client, "#")).toBe(false)
      expect(await tryPublish(client, "events/order-created")).toBe(false)
    } finally {
      await h.stop()
    }
  })
})

describe("TLS", () => {
  it("serves MQTT, MQTT over WebSocket and HTTP over TLS from certificate and key paths", { timeout: 20_000 }, async () => {
    const tls = mkdtempSync(join(tmpdir(), "baton-tls-"))
    const certFile = join(tls, "cert.pem")
    const keyFile = join(tls, "key.pem")
    execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", keyFile, "-out", certFile, "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], { stdio: "ignore" })
    const h = await startRuntime({ tls: { certFile, keyFile } })
    try {
      const ca = readFileSync(certFile)
      const mqtts = await mqtt.connectAsync(`mqtts://127.0.0.1:${h.runtime.mqttPort}`, { protocolVersion: 4, reconnectPeriod: 0, ca })
      expect(await trySubscribe(mqtts, "events/#")).toBe(true)
      mqtts.end(true)
      const wss = await mqtt.connectAsync(`wss://127.0.0.1:${h.runtime.wsPort}`, { protocolVersion: 4, reconnectPeriod: 0, ca })
      expect(await trySubscribe(wss, "events/#")).toBe(true)
      wss.end(true)
      // A plain MQTT client gets no CONNACK from the TLS listener.
      const plain = mqtt.connect(`mqtt://127.0.0.1:${h.runtime.mqttPort}`, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 1000 })
      const connected = await new Promise<boolean>((r) => {
        plain.once("connect", () => r(true))
        setTimeout(() => r(false), 1500)
      })
      plain.end(true)
      expect(connected).toBe(false)
      const https = await import("node:https")
      const status = await new Promise<number>((resolve, reject) =>
        https.get(`https://127.0.0.1:${h.runtime.httpPort}/healthz`, { ca }, (res) => resolve(res.statusCode ?? 0)).on("error", reject)
      )
      expect(status).toBe(200)
    } finally {
      await h.stop()
      rmSync(tls, { recursive: true, force: true })
    }
  })
})
