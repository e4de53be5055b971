/**
 * The killed external broker of the shutdown tests (fixtures/externalBroker.ts: Baton's EmbeddedBroker,
 * sessions on disk, no `beforeAck`) must keep every QoS 1 message it acknowledged for a persistent
 * session: SIGKILLed right after the publisher got its PUBACKs, restarted on the same directory, the
 * session gets them all. Stock Aedes writes a QoS 1 PUBACK before it stores the message
 * (docs/platform-facts.md); with several publishes of one connection in flight, the acknowledged
 * ones not yet stored were lost (the relay's window, shutdown.int.test.ts).
 */
import { afterEach, describe, expect, it } from "vitest"
import { spawn, type ChildProcess } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import mqtt from "mqtt"
import { Ports, Process } from "@baton/testkit"
import { sleep } from "./support.ts"

const brokerScript = fileURLToPath(new URL("./fixtures/externalBroker.ts", import.meta.url))
const children: Array<ChildProcess> = []
const dirs: Array<string> = []
afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})

const startBroker = async (port: number, dir: string): Promise<ChildProcess> => {
  const child = spawn(process.execPath, [...Process.nodeOptions, brokerScript, String(port), dir], { stdio: ["ignore", "pipe", "pipe"] })
  children.push(child)
  let output = ""
  child.stdout!.on("data", (b: Buffer) => (output += b.toString()))
  child.stderr!.on("data", (b: Buffer) => (output += b.toString()))
  const until = Date.now() + 15_000
  while (!/listening \d+/.test(output)) {
    if (Date.now() > until || child.exitCode !== null) throw new Error(`broker did not start:\n${output}`)
    await sleep(20)
  }
  return child
}

const killed = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    child.once("exit", () => resolve())
    child.kill("SIGKILL")
  })

/** Publishes `n` QoS 1 messages with `inFlight` of them unacknowledged at once; resolves once all were acknowledged. */
const publishAll = async (client: mqtt.MqttClient, n: number, inFlight: number) => {
  let next = 0
  const lane = async () => {
    while (next < n) {
      const i = next++
      await client.publishAsync(`t/${i}`, String(i), { qos: 1 })
    }
  }
  await Promise.all(Array.from({ length: inFlight }, lane))
}

describe("the external broker fixture, SIGKILLed right after the PUBACKs", () => {
  for (const inFlight of [256, 1])
    it(`keeps every acknowledged QoS 1 message for a persistent session (${inFlight} in flight)`, async () => {
      const port = await Ports.freePort()
      const dir = mkdtempSync(join(tmpdir(), "baton-ext-durable-"))
      dirs.push(dir)
      let broker = await startBroker(port, dir)
      const url = `mqtt://127.0.0.1:${port}`
      const sub = await mqtt.connectAsync(url, { protocolVersion: 4, clientId: "sub", clean: false, reconnectPeriod: 0 })
      await sub.subscribeAsync("t/#", { qos: 1 })
      await sub.endAsync()
      const pub = await mqtt.connectAsync(url, { protocolVersion: 4, clientId: "pub", reconnectPeriod: 0 })
      pub.on("error", () => {})
      const n = 500
      await publishAll(pub, n, inFlight)
      await killed(broker)
      pub.end(true)

      broker = await startBroker(port, dir)
      const got = new Set<string>()
      const again = await mqtt.connectAsync(url, { protocolVersion: 4, clientId: "sub", clean: false, reconnectPeriod: 0 })
      again.on("message", (_topic, payload) => got.add(payload.toString()))
      const until = Date.now() + 10_000
      while (got.size < n && Date.now() < until) await sleep(50)
      await again.endAsync()
      expect(got.size, `${n - got.size} acknowledged messages lost`).toBe(n)
    }, 60_000)
})
