import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Mosquitto } from "@baton/testkit"
import { orderFlowProperty } from "./orders.ts"
import { getJson, useRuntime } from "./support.ts"

/** The Mosquitto that runs on this machine (and in CI); override with BATON_TEST_MOSQUITTO_URL. */
const url = process.env.BATON_TEST_MOSQUITTO_URL ?? "mqtt://127.0.0.1:1883"

describe("broker topology through BATON_BROKER_URL (external Mosquitto)", () => {
  // Mosquitto in turns with the other tests that run a runtime on it (testkit's Mosquitto.ts):
  // taken before the runtime starts, released after it stopped (after-hooks run in reverse).
  let release: (() => void) | undefined
  beforeAll(async () => {
    release = await Mosquitto.acquire()
  }, 900_000)
  afterAll(() => release?.())
  const ctx = useRuntime({ brokerUrl: url }, {}, url)

  it("runs no embedded broker", async () => {
    expect(ctx.h.runtime.mqttPort).toBeUndefined()
    expect((await getJson(ctx.h.runtime.httpPort, "/healthz")).status).toBe(200)
  })

  it("runs the whole order chain for generated orders", async () => {
    await orderFlowProperty(ctx.h, ctx.client, ctx.events)
  })
})
