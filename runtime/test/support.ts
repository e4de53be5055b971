/** Test harness: a real runtime on ephemeral ports, real MQTT clients, an event collector. */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { Socket } from "node:net"
import mqtt, { type MqttClient } from "mqtt"
import { afterAll, beforeAll } from "vitest"
import { Envelope, Log } from "@baton/core"
import { Process, Sessions } from "@baton/testkit"
import { fromEnv, type Config } from "../src/Config.ts"
import * as Runtime from "../src/Runtime.ts"

/** Property runs per integration property; raise for a soak run. */
export const propertyRuns = Number(process.env.BATON_PROPERTY_RUNS ?? 4)

export const startRuntime = async (overrides: Partial<Config> = {}, options: Runtime.Options = {}) => {
  const dataDir = mkdtempSync(join(tmpdir(), "baton-test-"))
  const config: Config = {
    // BATON_TEST_FRONT through `fromEnv`, so that an override of the mode wins.
    ...fromEnv(Process.testFront(overrides.databaseUrl !== undefined || overrides.brokerUrl !== undefined)),
    mqttPort: 0,
    wsPort: 0,
    httpPort: 0,
    dataDir,
    instance: `t${Math.random().toString(36).slice(2, 10)}`,
    restartDelayMs: 10,
    ...overrides
  }
  const logger = Log.memory(process.env.BATON_TEST_LOG === "1" ? Log.console : Log.silent)
  const runtime = await Runtime.start(config, { logger, ...options })
  return {
    runtime,
    config,
    logger,
    url: config.brokerUrl ?? `${config.tls === undefined ? "mqtt" : "mqtts"}://127.0.0.1:${runtime.mqttPort}`,
    stop: async () => {
      await runtime.stop()
      if (config.brokerUrl !== undefined) await Sessions.purge(config.brokerUrl, runtime.sessions)
      rmSync(dataDir, { recursive: true, force: true })
    }
  }
}

export const connect = async (url: string): Promise<MqttClient> => {
  const client = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clean: true })
  ;(client.stream as Partial<Socket>).setNoDelay?.(true)
  return client
}

export interface Received {
  readonly topic: string
  readonly envelope: Envelope.Envelope
}

/** Collects every envelope on the given topics and waits for conditions on them. */
export const collect = async (client: MqttClient, topics: ReadonlyArray<string>) => {
  const received: Array<Received> = []
  const waiters = new Set<() => void>()
  client.on("message", (topic, payload) => {
    received.push({ topic, envelope: JSON.parse(payload.toString()) as Envelope.Envelope })
    for (const w of waiters) w()
  })
  await client.subscribeAsync([...topics], { qos: 1 })
  const until = (done: (all: ReadonlyArray<Received>) => boolean, timeoutMs = 20_000, what = "condition") =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (!done(received)) return
        clearTimeout(timer)
        waiters.delete(check)
        resolve()
      }
      const timer = setTimeout(() => {
        waiters.delete(check)
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; received ${received.length} messages`))
      }, timeoutMs)
      waiters.add(check)
      check()
    })
  return { received, until }
}

/** Publishes at QoS 1; true when acknowledged, false when the broker refused (it disconnects the client). */
export const tryPublish = async (client: MqttClient, topic: string, payload = "{}"): Promise<boolean> => {
  const closed = new Promise<boolean>((r) => client.once("close", () => r(false)))
  return Promise.race([client.publishAsync(topic, payload, { qos: 1 }).then(() => true), closed, new Promise<boolean>((r) => setTimeout(() => r(false), 3000))])
}

/** Subscribes; false when the SUBACK refused the filter (0x80). */
export const trySubscribe = (client: MqttClient, filter: string): Promise<boolean> =>
  client.subscribeAsync(filter, { qos: 1 }).then(
    (granted) => granted.every((g) => g.qos !== 128),
    (error: Error) => {
      if (/Subscribe error/.test(error.message)) return false
      throw error
    }
  )

export type Harness = Awaited<ReturnType<typeof startRuntime>>
export type Collector = Awaited<ReturnType<typeof collect>>

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** Polls `ok` every 10 ms until it holds; fails naming `what` after `timeoutMs`. */
export const until = async (what: string, ok: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`)
    await sleep(10)
  }
}

export const getJson = async (port: number, path: string): Promise<{ status: number; body: any }> => {
  const res = await fetch(`http://127.0.0.1:${port}${path}`)
  return { status: res.status, body: await res.json() }
}

/** Starts a runtime, a client and a collector on `events/#` and `errors/#` around a describe block. */
export const useRuntime = (overrides: Partial<Config> | (() => Promise<Partial<Config>>) = {}, options: Runtime.Options = {}, clientUrl?: string) => {
  const ctx = {} as { h: Harness; client: MqttClient; events: Collector }
  beforeAll(async () => {
    // Overrides computed before the start (a fresh PostgreSQL schema, say) come as a function.
    ctx.h = await startRuntime(typeof overrides === "function" ? await overrides() : overrides, options)
    ctx.client = await connect(clientUrl ?? ctx.h.url)
    ctx.events = await collect(ctx.client, ["events/#", "errors/#"])
  })
  afterAll(async () => {
    await ctx.client?.endAsync()
    await ctx.h?.stop()
  })
  return ctx
}
