/**
 * A PUBACK of the runtime's embedded broker means stored, also for a publish the ingress does not
 * take (a `service` client's on a non-initiating topic): the runtime (a real process, sessions on
 * disk, the default) is SIGKILLed right after a publisher got the PUBACKs of its QoS 1 publishes
 * to a topic another client's persistent session subscribes to; after the restart that session
 * gets every acknowledged message.
 *
 * Before the embedded broker acknowledged a QoS 1 publish after its store (`ackStored`, on by
 * default; the Aedes patch, lib/handlers/publish.js), Aedes wrote the PUBACK first and the kill
 * lost the messages not stored yet (docs/platform-facts.md): 59 and 120 of 400 in two runs here,
 * but none in another with one-digit payloads (review: red 1 run of 2); with 8 KB payloads the
 * mutation (ackStored off) lost the last 2-6 in each of 3 runs. (Publishes one at a
 * time, each awaited, were not lost in 3 runs before the fix: the store took less than the kill.
 * Their order across the restart is not asserted for a burst: Aedes handles one read's publishes
 * side by side, see Relay.window.aedes.int.test.ts.)
 */
import { describe, expect, it } from "vitest"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import mqtt from "mqtt"
import { Users } from "@baton/auth"
import { Process } from "@baton/testkit"

const password = "correct horse"
const topic = "telemetry/readings"

const login = (url: string, clientId: string, clean: boolean) => mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, username: "svc", password, clientId, clean })

/** Reconnects the session and collects the numbers of what the broker kept for it, in arrival order. */
const drainSession = async (url: string, clientId: string, expected: number): Promise<Array<number>> => {
  const got: Array<number> = []
  const client = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, username: "svc", password, clientId, clean: false, manualConnect: true })
  // The handler before the CONNACK: the stored messages follow it at once.
  client.on("message", (_t, payload) => got.push(Number(payload.toString().trim())))
  client.connect()
  const until = Date.now() + 20_000
  while (new Set(got).size < expected && Date.now() < until) await new Promise((r) => setTimeout(r, 50))
  await client.endAsync()
  return got
}

describe("a QoS 1 PUBACK of the runtime's broker, for a publish the ingress does not take, across SIGKILL", () => {
  it("400 publishes in one burst: none acknowledged and lost", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "baton-ackstored-"))
    const usersFile = join(dataDir, "users.json")
    Users.save(usersFile, await Users.addUser({ users: {}, tokens: {} }, "svc", password, ["service"]))
    const env = { BATON_AUTH_FILE: usersFile }
    const watcher = `watcher-${Math.random().toString(36).slice(2, 8)}`
    let first: Process.Running | undefined
    let second: Process.Running | undefined
    try {
      first = await Process.startProcess(dataDir, env)
      const url1 = `mqtt://127.0.0.1:${first.mqttPort}`
      const sub = await login(url1, watcher, false)
      await sub.subscribeAsync(topic, { qos: 1 })
      await sub.endAsync()
      const publisher = await login(url1, `pub-${watcher}`, true)
      const n = 400
      const numbers = Array.from({ length: n }, (_, i) => i)
      await Promise.all(numbers.map((i) => publisher.publishAsync(topic, String(i).padEnd(8192), { qos: 1 })))
      // Every PUBACK is in: killed at once.
      expect(await first.kill("SIGKILL")).toBe("SIGKILL")
      publisher.end(true)

      second = await Process.startProcess(dataDir, env)
      const got = await drainSession(`mqtt://127.0.0.1:${second.mqttPort}`, watcher, n)
      const received = new Set(got)
      expect(numbers.filter((i) => !received.has(i)), "acknowledged and lost").toEqual([])
    } finally {
      await first?.kill("SIGKILL")
      await second?.kill("SIGKILL")
      rmSync(dataDir, { recursive: true, force: true })
    }
  }, 90_000)
})
