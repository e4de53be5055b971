/**
 * A persistent session's restore first reads its stored messages once for the ids they kept
 * (Aedes patch, connect.js keptIds). That read failing, the client leaving during it, or another
 * connection taking the session over during it: no hang, no crash, nothing lost.
 */
import { Readable } from "node:stream"
import { afterAll, describe, expect, it } from "vitest"
import mqtt from "mqtt"
import type { Aedes } from "aedes"
import { aedesBroker, aedesPersistence, aedesPublish } from "./sessions.ts"
import { until, within } from "./waits.ts"

const cleanup: Array<() => unknown> = []
afterAll(async () => {
  for (const c of cleanup) await c()
})

const kinds = ["memory", "disk"] as const

const broker = async (kind: (typeof kinds)[number]) => {
  const { aedes, url, clients, close } = await aedesBroker({ persistence: aedesPersistence(kind, cleanup) })
  // The kept ids' read of the next persistent connection (the second call of the store's
  // outgoingStream from now: the restore's stream is opened first) is replaced by `next`.
  const store = (aedes as unknown as { persistence: { outgoingStream: (c: unknown) => AsyncIterable<unknown> } }).persistence
  const original = store.outgoingStream.bind(store)
  let next: ((orig: AsyncIterable<unknown>) => Readable) | null = null
  let calls = 0
  store.outgoingStream = (c) => {
    if (next === null || ++calls < 2) return original(c)
    const f = next
    next = null
    return f(original(c))
  }
  const onNextRead = (f: (orig: AsyncIterable<unknown>) => Readable) => {
    next = f
    calls = 0
  }
  const intercepted = () => next === null
  return { aedes, url, clients, close, onNextRead, intercepted }
}

const opts = { protocolVersion: 4 as const, reconnectPeriod: 0, clean: false, clientId: "kept-read" }

const receiving = (url: string, clients: Array<mqtt.MqttClient>) => {
  const client = mqtt.connect(url, opts)
  clients.push(client)
  const got: Array<string> = []
  client.on("message", (_t, p, packet) => {
    if (packet.qos > 0) got.push(p.toString())
  })
  return { client, got }
}

const setup = async (aedes: Aedes, url: string) => {
  const first = await mqtt.connectAsync(url, opts)
  await first.subscribeAsync("k/#", { qos: 1 })
  await first.endAsync()
  for (let i = 0; i < 10; i++) await aedesPublish(aedes, `m${i}`, 1)
}

const all = Array.from({ length: 10 }, (_, k) => `m${k}`)

describe.each(kinds)("a %s session's first read of its kept ids at a restore", (kind) => {
  it("failing: the connection ends, a QoS 0 publish to it completes, the next connection gets every stored message", async () => {
    const { aedes, url, clients, close, onNextRead, intercepted } = await broker(kind)
    const errors: Array<unknown> = []
    const onRejection = (e: unknown) => errors.push(e)
    process.on("unhandledRejection", onRejection)
    try {
      await setup(aedes, url)
      onNextRead(() => new Readable({ objectMode: true, read() { this.destroy(new Error("store read failed")) } }))
      const a = receiving(url, clients)
      await new Promise((r) => a.client.once("connect", r))
      await within(aedesPublish(aedes, "q0", 0), 3_000, "QoS 0 publish")
      await until(() => a.client.stream.destroyed, 3_000)
      expect(a.client.stream.destroyed).toBe(true)
      const b = receiving(url, clients)
      await until(() => b.got.length >= 10, 5_000)
      expect({ got: b.got, errors, intercepted: intercepted() }).toEqual({ got: all, errors: [], intercepted: true })
    } finally {
      process.off("unhandledRejection", onRejection)
      await close()
    }
  }, 20_000)

  it.each(["the client leaves", "another connection takes the session over"] as const)("%s during it: publishes complete, the messages the new connection acknowledged are not sent again, none is lost", async (how) => {
    const { aedes, url, clients, close, onNextRead, intercepted } = await broker(kind)
    try {
      await setup(aedes, url)
      let open!: () => void
      const gate = new Promise<void>((r) => (open = r))
      onNextRead((orig) => Readable.from((async function* () {
        await gate
        yield* orig
      })()))
      const a = receiving(url, clients)
      await new Promise((r) => a.client.once("connect", r))
      const q0 = aedesPublish(aedes, "q0", 0)
      let b: ReturnType<typeof receiving> | undefined
      if (how === "the client leaves") {
        a.client.stream.destroy()
        await new Promise((r) => setTimeout(r, 100))
        open()
      } else {
        // b takes over while a reads; b gets and acknowledges all 10; then a's read goes on.
        b = receiving(url, clients)
        await until(() => b!.got.length >= 10, 5_000)
        await new Promise((r) => setTimeout(r, 200))
        open()
        await new Promise((r) => setTimeout(r, 300))
        await b.client.endAsync()
      }
      await within(q0, 3_000, "QoS 0 publish held during the read")
      await within(aedesPublish(aedes, "m10", 1), 3_000, "QoS 1 publish after")
      const c = receiving(url, clients)
      await until(() => c.got.includes("m10"), 5_000)
      await new Promise((r) => setTimeout(r, 200))
      expect({ b: b?.got, c: c.got, intercepted: intercepted() }).toEqual(how === "the client leaves" ? { b: undefined, c: [...all, "m10"], intercepted: true } : { b: all, c: ["m10"], intercepted: true })
    } finally {
      await close()
    }
  }, 20_000)
})
