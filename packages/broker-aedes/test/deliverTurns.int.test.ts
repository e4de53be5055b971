/**
 * Review of the aedes microtask patch: a burst of QoS 0/1 publishes that one client wrote on its
 * socket in one go must not run as one microtask chain. With Aedes' setImmediate, at most about
 * `concurrency` (100) publishes complete in one turn of the event loop, and timers, other sockets
 * (PUBACKs, keep-alives) and the runtime's group commits get a turn in between; with the patch the
 * whole burst (every publish buffered on the socket, times its subscribers) completes in one.
 */
import net from "node:net"
import { describe, expect, it } from "vitest"
import mqtt from "mqtt"
import { EmbeddedBroker } from "@baton/broker-aedes"
import { MqttWire } from "@baton/testkit"

const { connectPacket, publishPacket } = MqttWire

describe.each([0, 1] as const)("a burst of QoS %s publishes on one socket", (qos) => {
  it("completes over many turns of the event loop, not in one microtask chain", async () => {
    let completed = 0
    const broker = await EmbeddedBroker.start({
      host: "127.0.0.1",
      mqttPort: 0,
      aedes: { published: (_p: unknown, client: unknown, cb: (e: Error | null) => void) => {
        if (client) completed++
        cb(null)
      } } as never
    })
    const subs = await Promise.all(
      [0, 1, 2].map(async () => {
        const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.mqttPort}`, { protocolVersion: 4, reconnectPeriod: 0 })
        const got: Array<string> = []
        c.on("message", (_t, p) => got.push(p.toString()))
        await c.subscribeAsync("t/#", { qos })
        return Object.assign(c, { got })
      })
    )
    const n = 5000
    const sock = net.connect(broker.mqttPort, "127.0.0.1")
    await new Promise<void>((r) => sock.once("connect", () => r()))
    sock.write(connectPacket("burst"))
    await new Promise((r) => sock.once("data", r)) // CONNACK
    sock.on("data", () => {})
    // Per turn of the event loop: how many of the burst's publishes completed since the last turn.
    const perTurn: Array<number> = []
    let seen = 0
    let timerLateMs = 0
    let last = performance.now()
    const timer = setInterval(() => {
      const now = performance.now()
      timerLateMs = Math.max(timerLateMs, now - last - 5)
      last = now
    }, 5)
    const turn = () => {
      perTurn.push(completed - seen)
      seen = completed
      if (completed < n) setImmediate(turn)
    }
    setImmediate(turn)
    sock.write(Buffer.concat(Array.from({ length: n }, (_, i) => publishPacket("t/x", `m${i}`, qos, (i % 60000) + 1))))
    const t0 = Date.now()
    while ((completed < n || subs.some((c) => c.got.length < n)) && Date.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 10))
    clearInterval(timer)
    sock.destroy()
    await Promise.all(subs.map((c) => c.endAsync()))
    await broker.close()
    const most = Math.max(...perTurn)
    console.log(`QoS ${qos}: ${completed}/${n} completed, at most ${most} in one turn, ${perTurn.length} turns, a 5 ms timer late by ${timerLateMs.toFixed(0)} ms at worst`)
    expect(completed).toBe(n)
    // Each subscriber got the burst once, in publish order.
    for (const c of subs) expect(c.got).toEqual(Array.from({ length: n }, (_, i) => `m${i}`))
    expect(most).toBeLessThanOrEqual(500)
  }, 60_000)
})

/** Counts the messages handed to a subscriber (Aedes asks `authorizeForward` for each) per turn of the loop. */
const forwardCounter = () => {
  const c = { forwarded: 0, perTurn: [] as Array<number>, seen: 0, on: false, lateMs: 0, last: 0, timer: undefined as undefined | ReturnType<typeof setInterval> }
  const turn = () => {
    c.perTurn.push(c.forwarded - c.seen)
    c.seen = c.forwarded
    if (c.on) setImmediate(turn)
  }
  return {
    c,
    aedes: { authorizeForward: (_client: unknown, packet: unknown) => (c.forwarded++, packet) } as never,
    start: () => {
      c.on = true
      c.seen = c.forwarded
      setImmediate(turn)
      c.last = performance.now()
      c.timer = setInterval(() => {
        const now = performance.now()
        c.lateMs = Math.max(c.lateMs, now - c.last - 5)
        c.last = now
      }, 5)
    },
    stop: () => {
      c.on = false
      clearInterval(c.timer)
    }
  }
}

/**
 * Waits (20 s at most) until `n` messages have arrived (`got`), stops `f`'s counting, closes what
 * `close` says, and checks that all arrived with at most 500 handed over in one turn of the loop.
 */
const allOverManyTurns = async (label: string, f: ReturnType<typeof forwardCounter>, n: number, got: () => number, close: () => Promise<void>) => {
  const t0 = Date.now()
  while (got() < n && Date.now() - t0 < 20_000) await new Promise((r) => setTimeout(r, 10))
  f.stop()
  await close()
  const most = Math.max(...f.c.perTurn)
  console.log(`${label}: ${got()}/${n} received, at most ${most} handed over in one turn, ${f.c.perTurn.length} turns, a 5 ms timer late by ${f.c.lateMs.toFixed(0)} ms at worst`)
  expect(got()).toBe(n)
  expect(most).toBeLessThanOrEqual(500)
}

describe("other paths that hand a subscriber many messages at once", () => {
  it("retained messages on SUBSCRIBE go out over many turns of the loop", async () => {
    const f = forwardCounter()
    const broker = await EmbeddedBroker.start({ host: "127.0.0.1", mqttPort: 0, aedes: f.aedes })
    const n = 3000
    const sock = net.connect(broker.mqttPort, "127.0.0.1")
    await new Promise<void>((r) => sock.once("connect", () => r()))
    sock.write(connectPacket("retainer"))
    await new Promise((r) => sock.once("data", r))
    sock.write(Buffer.concat(Array.from({ length: n }, (_, i) => MqttWire.packet(0x31, Buffer.concat([MqttWire.str(`r/${i}`), Buffer.from(`v${i}`)])))))
    await new Promise((r) => setTimeout(r, 1000))
    const c = mqtt.connect(`mqtt://127.0.0.1:${broker.mqttPort}`, { protocolVersion: 4, reconnectPeriod: 0 })
    let got = 0
    c.on("message", () => got++)
    await new Promise((r) => c.once("connect", r))
    f.start()
    await c.subscribeAsync("r/#", { qos: 1 })
    await allOverManyTurns("retained", f, n, () => got, async () => {
      sock.destroy()
      await c.endAsync()
      await broker.close()
    })
  }, 60_000)

  it("a persistent session's queued messages on reconnect (memory store) go out over many turns of the loop", async () => {
    const f = forwardCounter()
    const broker = await EmbeddedBroker.start({ host: "127.0.0.1", mqttPort: 0, aedes: f.aedes })
    const url = `mqtt://127.0.0.1:${broker.mqttPort}`
    const opts = { protocolVersion: 4 as const, reconnectPeriod: 0, clean: false, clientId: "rr-queued" }
    const first = await mqtt.connectAsync(url, opts)
    await first.subscribeAsync("q/#", { qos: 1 })
    await first.endAsync()
    const n = 3000
    for (let i = 0; i < n; i++) await broker.publish("q/1", String(i).padEnd(100, "."), 1)
    const c = mqtt.connect(url, opts)
    let got = 0
    c.on("message", () => got++)
    f.start()
    await new Promise((r) => c.once("connect", r))
    await allOverManyTurns("queued", f, n, () => got, async () => {
      await c.endAsync()
      await broker.close()
    })
  }, 60_000)
})
