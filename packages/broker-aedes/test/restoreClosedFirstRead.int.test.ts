/**
 * A persistent session's restore reads its stored messages' stream first (Aedes patch, connect.js
 * emptyQueue), then their kept ids, then restores. A connection closed during that first read
 * (its client left, or another connection took the session over) is not restored: its restore
 * read the store again, gave the stored messages ids of its own numbering in the store, and wrote
 * to a socket gone, on behalf of a connection that no longer was. Nothing is delivered to it or
 * changed in the store for it, and the next connection gets every stored message once.
 * A clean connection's discard of an earlier persistent session's stored messages is not a restore:
 * closed during it, it still clears them all, and a later persistent connection of the client id
 * (no session present) gets none of them.
 */
import { Readable } from "node:stream"
import { afterAll, describe, expect, it } from "vitest"
import mqtt from "mqtt"
import { aedesBroker, aedesPersistence, aedesPublish } from "./sessions.ts"
import { until, within } from "./waits.ts"

const cleanup: Array<() => unknown> = []
afterAll(async () => {
  for (const c of cleanup) await c()
})

type Store = Record<"outgoingStream" | "outgoingUpdate" | "outgoingClearMessageId" | "outgoingEnqueue", (client: unknown, ...rest: Array<unknown>) => unknown>

/**
 * The broker, its store watched: the next connection's first read (the store's next outgoingStream)
 * waits for `open`, and every store call made for that connection once it is closed is recorded.
 */
const broker = async (kind: "memory" | "disk") => {
  const b = await aedesBroker({ persistence: aedesPersistence(kind, cleanup) })
  const store = (b.aedes as unknown as { persistence: Store }).persistence
  let gated: { closed: boolean } | null = null
  let gate: Promise<void> | null = null
  let open = () => {}
  const afterClose: Array<string> = []
  for (const name of ["outgoingStream", "outgoingUpdate", "outgoingClearMessageId", "outgoingEnqueue"] as const) {
    const original = store[name].bind(store)
    store[name] = (client, ...rest) => {
      if (client === gated && gated!.closed) afterClose.push(name)
      if (name !== "outgoingStream" || gate === null) return original(client, ...rest)
      const wait = gate
      gate = null
      gated = client as { closed: boolean }
      const orig = original(client, ...rest) as AsyncIterable<unknown>
      return Readable.from((async function* () {
        await wait
        yield* orig
      })())
    }
  }
  const gateNextRead = () => {
    gate = new Promise<void>((r) => (open = r))
  }
  return { ...b, gateNextRead, open: () => open(), afterClose, gatedClosed: () => gated?.closed === true }
}

const opts = { protocolVersion: 4 as const, reconnectPeriod: 0, clean: false, clientId: "closed-first-read" }

const receiving = (url: string, clients: Array<mqtt.MqttClient>) => {
  const client = mqtt.connect(url, opts)
  clients.push(client)
  client.on("error", () => {})
  const got: Array<string> = []
  client.on("message", (_t, p, packet) => {
    if (packet.qos > 0) got.push(p.toString())
  })
  return { client, got }
}

const all = Array.from({ length: 10 }, (_, k) => `m${k}`)

/** The session subscribed, gone, `all` stored for it; the next connection's first read waits for `b.open`. */
const storeAll = async (b: Awaited<ReturnType<typeof broker>>) => {
  const first = await mqtt.connectAsync(b.url, opts)
  await first.subscribeAsync("k/#", { qos: 1 })
  await first.endAsync()
  for (const m of all) await aedesPublish(b.aedes, m, 1)
  b.gateNextRead()
}

describe.each(["memory", "disk"] as const)("a %s session's connection closed during its restore's first read", (kind) => {
  it.each(["the client leaves", "another connection takes the session over"] as const)("%s: no restore for it, the next connection gets every stored message once", async (how) => {
    const b = await broker(kind)
    try {
      await storeAll(b)
      const a = receiving(b.url, b.clients)
      await within(new Promise((r) => a.client.once("connect", r)), 5_000, "CONNACK")
      const q0 = aedesPublish(b.aedes, "q0", 0)
      let next: ReturnType<typeof receiving> | undefined
      if (how === "the client leaves") {
        a.client.stream.destroy()
        await until(b.gatedClosed, 3_000)
        b.open()
        await new Promise((r) => setTimeout(r, 300))
      } else {
        // The next connection takes over while a reads, gets and acknowledges all ten; then a's read goes on.
        next = receiving(b.url, b.clients)
        await until(() => next!.got.length >= 10, 5_000)
        await until(b.gatedClosed, 3_000)
        b.open()
        await new Promise((r) => setTimeout(r, 300))
      }
      await within(q0, 3_000, "QoS 0 publish held during the read")
      await within(aedesPublish(b.aedes, "m10", 1), 3_000, "QoS 1 publish after")
      // Then the next connection (after the one that took over, which got them all).
      const expected = how === "the client leaves" ? [...all, "m10"] : []
      if (next === undefined) next = receiving(b.url, b.clients)
      else {
        await until(() => next!.got.includes("m10"), 5_000)
        await new Promise((r) => setTimeout(r, 200))
        expect(next.got).toEqual([...all, "m10"])
        await next.client.endAsync()
        next = receiving(b.url, b.clients)
      }
      await new Promise((r) => next!.client.once("connect", r))
      await until(() => next!.got.length >= expected.length, 5_000)
      await new Promise((r) => setTimeout(r, 300))
      expect({ a: a.got, next: next.got, afterClose: b.afterClose }).toEqual({ a: [], next: expected, afterClose: [] })
    } finally {
      await b.close()
    }
  }, 20_000)
})

describe.each(["memory", "disk"] as const)("a %s store: a clean connection closed while it discards an earlier persistent session's stored messages", (kind) => {
  it("discards them all still: a later persistent connection of the client id gets none of them", async () => {
    const b = await broker(kind)
    try {
      await storeAll(b)
      const clean = mqtt.connect(b.url, { ...opts, clean: true })
      b.clients.push(clean)
      clean.on("error", () => {})
      await within(new Promise((r) => clean.once("connect", r)), 5_000, "CONNACK")
      clean.stream.destroy()
      await until(b.gatedClosed, 3_000)
      b.open()
      await new Promise((r) => setTimeout(r, 300))
      const next = receiving(b.url, b.clients)
      const present = await within(new Promise<boolean>((r) => next.client.once("connect", (connack) => r(connack.sessionPresent))), 5_000, "CONNACK")
      await new Promise((r) => setTimeout(r, 300))
      expect({ present, got: next.got }).toEqual({ present: false, got: [] })
    } finally {
      await b.close()
    }
  }, 20_000)
})
