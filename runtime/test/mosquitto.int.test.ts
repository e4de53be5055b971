import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { MqttClient } from "mqtt"
import { orderFlowProperty } from "./orders.ts"
import { collect, connect, getJson, startRuntime, type Collector, type Harness } from "./support.ts"

/** The Mosquitto that runs on this machine (and in CI); override with BATON_TEST_MOSQUITTO_URL. */
const url = process.env.BATON_TEST_MOSQUITTO_URL ?? "mqtt://127.0.0.1:1883"

describe("broker topology through BATON_BROKER_URL (external Mosquitto)", () => {
  let h: Harness
  let client: MqttClient
  let events: Collector

  beforeAll(async () => {
    h = await startRuntime({ brokerUrl: url })
    client = await connect(url)
    events = await collect(client, ["events/#", "errors/#"])
  })
  afterAll(async () => {
    await client?.endAsync()
    await h?.stop()
  })

  it("runs no embedded broker", async () => {
    expect(h.runtime.mqttPort).toBeUndefined()
    expect((await getJson(h.runtime.httpPort, "/healthz")).status).toBe(200)
  })

  it("runs the whole order chain for generated orders", async () => {
    await orderFlowProperty(h, client, events)
  })
})
