/**
 * Graceful shutdown on SIGTERM/SIGINT while an external broker (`BATON_BROKER_URL`) is out of
 * reach: the runtime as a child process, the external broker a throwaway Aedes of its own
 * (fixtures/externalBroker.ts, sessions on disk) that the test SIGKILLs, SIGSTOPs and starts again
 * on the same port. Each case: the process exits within a bound with the documented code and its
 * log has the lifecycle lines; where the broker comes back, every order it acknowledged is
 * processed (what the relay could not publish stayed in the outbox for the next start).
 */
import { afterEach, describe, expect, it } from "vitest"
import { spawn, type ChildProcess } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { connect as tcpConnect, createServer, type Socket } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import mqtt from "mqtt"
import { Topics } from "@baton/core"
import { Ports, Process } from "@baton/testkit"
import { freshSchema, query } from "@baton/testkit/postgres"
import { cards } from "./orders.ts"
import { sleep } from "./support.ts"

const main = fileURLToPath(import.meta.resolve("@baton/runtime/main"))
const brokerScript = fileURLToPath(new URL("./fixtures/externalBroker.ts", import.meta.url))

const { freePort } = Ports

const children: Array<ChildProcess> = []
const dirs: Array<string> = []
const tempDir = (prefix: string) => {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  dirs.push(dir)
  return dir
}
afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})

interface Child {
  readonly child: ChildProcess
  readonly output: () => string
  /** The exit code (or signal), or "still running" when the bound passed. */
  readonly exitWithin: (ms: number) => Promise<number | string>
  readonly waitFor: (pattern: RegExp, ms: number) => Promise<void>
}

const run = (args: ReadonlyArray<string>, env: Record<string, string> = {}): Child => {
  const child = spawn(process.execPath, [...Process.nodeOptions, ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] })
  children.push(child)
  let output = ""
  child.stdout!.on("data", (b: Buffer) => (output += b.toString()))
  child.stderr!.on("data", (b: Buffer) => (output += b.toString()))
  const exited = new Promise<number | string>((resolve) => child.on("exit", (code, signal) => resolve(code ?? signal ?? "unknown")))
  return {
    child,
    output: () => output,
    exitWithin: (ms) => Promise.race([exited, sleep(ms).then(() => "still running")]),
    waitFor: async (pattern, ms) => {
      const until = Date.now() + ms
      while (!pattern.test(output)) {
        if (Date.now() > until) throw new Error(`no ${pattern} within ${ms} ms:\n${output}`)
        await sleep(20)
      }
    }
  }
}

const startBroker = async (port: number, dir: string): Promise<Child> => {
  const broker = run([brokerScript, String(port), dir])
  await broker.waitFor(/listening \d+/, 15_000)
  return broker
}

const runtimeEnv = (port: number, dataDir: string) => ({
  BATON_BROKER_URL: `mqtt://127.0.0.1:${port}`,
  BATON_HTTP_PORT: "0",
  BATON_DATA_DIR: dataDir,
  BATON_RESTART_DELAY_MS: "10"
})

const orderPayload = (n: number) =>
  JSON.stringify({
    id: `order-${n}`,
    type: "place-order",
    data: { customerId: `c${n}`, email: `c${n}@example.com`, items: [{ sku: "BOOK-1", qty: 1, price: 9.5 }], payment: { card: cards.approved } }
  })

const ordersIn = (dataDir: string) => Process.readStore(dataDir, (db) => Process.count(db, "SELECT count(*) AS n FROM orders"))

/** Orders acknowledged by the broker (QoS 1) and their chains running: resolves once the first order is in. */
const placeOrders = async (port: number, dataDir: string, n: number) => {
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0 })
  client.on("error", () => {})
  await Promise.all(Array.from({ length: n }, (_, i) => client.publishAsync("initiate/place-order", orderPayload(i), { qos: 1 })))
  client.end(true)
  await Process.eventually(() => ordersIn(dataDir) > 0, 20_000, "the first order")
}

/** An external broker and the runtime on it, `n` orders placed and their chains running. */
const underLoad = async (n: number) => {
  const port = await freePort()
  const sessions = tempDir("baton-ext-broker-")
  const dataDir = tempDir("baton-shutdown-")
  const broker = await startBroker(port, sessions)
  const runtime = run([main], runtimeEnv(port, dataDir))
  await runtime.waitFor(/runtime ready/, 30_000)
  await placeOrders(port, dataDir, n)
  return { port, sessions, dataDir, broker, runtime }
}

/**
 * Resolves (`within`) once the broker at `port` announces that `clientId` subscribed to `filter`
 * (Aedes' `$SYS/<broker>/new/subscribes`, published once the subscription is stored and live,
 * before the SUBACK). Watching from before the subscription is made: call it first.
 */
const subscriptionOf = async (port: number, clientId: string, filter: string) => {
  const watcher = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0 })
  watcher.on("error", () => {})
  const seen = new Promise<void>((resolve) =>
    watcher.on("message", (_topic, payload) => {
      const announced = JSON.parse(payload.toString()) as { clientId: string; subs: ReadonlyArray<{ topic: string }> }
      if (announced.clientId === clientId && announced.subs.some((sub) => sub.topic === filter)) resolve()
    })
  )
  await watcher.subscribeAsync("$SYS/+/new/subscribes", { qos: 0 })
  return {
    within: async (ms: number, output: () => string) => {
      const done = await Promise.race([seen.then(() => true), sleep(ms).then(() => false)])
      watcher.end(true)
      if (!done) throw new Error(`${clientId} did not subscribe to ${filter} within ${ms} ms:\n${output()}`)
    }
  }
}

/**
 * A proxy to the broker that holds each connection for `delayOf(n, connect)` ms (given the
 * connection's number and its first bytes: the CONNECT packet) before passing it on; `Infinity`
 * never passes it on, nor answers it. Closes a connection when the broker's side closes (the broker
 * killed: its clients see the loss, as without the proxy).
 */
const delaying = async (brokerPort: number, delayOf: (n: number, connect: Buffer) => number) => {
  const sockets = new Set<Socket>()
  let n = 0
  const server = createServer((socket) => {
    const number = n++
    sockets.add(socket)
    socket.on("error", () => {})
    socket.on("close", () => sockets.delete(socket))
    socket.once("data", (connect: Buffer) => {
      socket.pause()
      const ms = delayOf(number, connect)
      if (ms === Infinity) return
      setTimeout(() => {
        if (socket.destroyed) return
        const upstream = tcpConnect(brokerPort, "127.0.0.1")
        sockets.add(upstream)
        upstream.on("error", () => socket.destroy())
        upstream.on("close", () => {
          sockets.delete(upstream)
          socket.destroy()
        })
        socket.on("close", () => upstream.destroy())
        upstream.write(connect)
        socket.pipe(upstream).pipe(socket)
        socket.resume()
      }, ms)
    })
  })
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  return {
    port: (server.address() as { port: number }).port,
    close: () => {
      for (const s of sockets) s.destroy()
      server.close()
    }
  }
}

/** The lifecycle lines of a graceful shutdown, each once, in order. */
const expectShutdownLines = (output: string) => {
  const lines = ["runtime stopping", "broker disconnected", "store closed", "runtime stopped"]
  const at = lines.map((line) => output.indexOf(` ${line}`))
  expect(at.every((i) => i >= 0), output).toBe(true)
  expect([...at].sort((a, b) => a - b)).toEqual(at)
  for (const line of lines) expect(output.split(` ${line}`).length - 1, line).toBe(1)
}

describe("shutdown while the external broker is out of reach", () => {
  for (const signal of ["SIGTERM", "SIGINT"] as const)
    it(`${signal} with publishes in flight to a killed broker: exits 0 within 10 s; nothing acknowledged is lost once it is back`, async () => {
      // Orders acknowledged by the broker, then the broker killed while their chains run.
      const n = 300
      const { port, sessions, dataDir, runtime, ...first } = await underLoad(n)
      let broker = first.broker
      broker.child.kill("SIGKILL")
      await broker.exitWithin(5_000)
      await runtime.waitFor(/mqtt publisher (error|disconnected)/, 5_000)
      await sleep(1_000)

      runtime.child.kill(signal)
      expect(await runtime.exitWithin(10_000), runtime.output()).toBe(0)
      expectShutdownLines(runtime.output())
      // What the relay could not publish: one warning, no error.
      const stopping = runtime.output().split(" runtime stopping")[1] ?? ""
      expect(stopping.match(/ERROR .*/g), stopping).toBeNull()
      expect(stopping.match(/WARN {2}outbox not flushed: the rest is published at the next start/g), stopping).toHaveLength(1)
      // One line per client for the outage, not one per reconnection attempt.
      expect(runtime.output().match(/mqtt publisher \w+, reconnecting/g)).toHaveLength(1)

      // The broker back (its sessions on disk), the runtime again on the same data directory.
      broker = await startBroker(port, sessions)
      const again = run([main], runtimeEnv(port, dataDir))
      await again.waitFor(/runtime ready/, 30_000)
      await Process.eventually(() => ordersIn(dataDir) === n, 60_000, `all ${n} orders (${ordersIn(dataDir)} so far)`)
      await Process.eventually(() => Process.readStore(dataDir, (db) => Process.count(db, "SELECT count(*) AS n FROM outbox")) === 0, 30_000, "the outbox emptied")
      again.child.kill("SIGTERM")
      expect(await again.exitWithin(10_000), again.output()).toBe(0)
      broker.child.kill("SIGKILL")
    }, 180_000)

  it("a cluster member on PostgreSQL, SIGTERM with the broker killed under load: exits 0 within 10 s; every acknowledged order processed once it is back", async () => {
    const port = await freePort()
    const sessions = tempDir("baton-ext-broker-")
    const schema = await freshSchema()
    // The first run's ingress session opened late, as on a loaded host: its CONNECT held 300 ms.
    const slow = await delaying(port, (_, connect) => (connect.includes("baton-cluster-ingress") ? 300 : 0))
    try {
      const env = { ...runtimeEnv(port, tempDir("baton-shutdown-")), BATON_DATABASE_URL: schema.url, BATON_INSTANCE: "n1", BATON_HEARTBEAT_MS: "250", BATON_DEAD_AFTER_MS: "2000" }
      const orders = async () => Number((await query<{ n: string }>(schema.url, "SELECT count(*) AS n FROM orders"))[0]?.n ?? 0)
      let broker = await startBroker(port, sessions)
      // The orders are published once the broker holds the ingress session's subscription, not at
      // "ingress session taken": that is logged as the session is being opened (partition 0
      // acquired), before its CONNECT, and until its SUBSCRIBE the broker has no subscriber for
      // initiate/#: a publish is acknowledged and dropped (MQTT 3.1.1 keeps nothing for no
      // session). A CI run on a loaded host failed so (30 of the 200 orders processed, then
      // nothing: the others had gone before the subscription); with the CONNECT held below, every
      // run did (0 of 200). From the subscription on, the session is persistent: the broker keeps
      // every order for it, whatever happens to the runtime (or to the broker: on disk). The
      // second run connects directly.
      const subscribed = await subscriptionOf(port, "baton-cluster-ingress", Topics.allInitiating)
      const runtime = run([main], { ...env, BATON_BROKER_URL: `mqtt://127.0.0.1:${slow.port}` })
      await runtime.waitFor(/ingress session taken/, 30_000)
      await subscribed.within(30_000, runtime.output)
      // The runtime says so too, once its SUBSCRIBE is answered.
      await runtime.waitFor(/ingress session subscribed/, 5_000)
      const n = 200
      const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0 })
      client.on("error", () => {})
      await Promise.all(Array.from({ length: n }, (_, i) => client.publishAsync("initiate/place-order", orderPayload(i), { qos: 1 })))
      const until = Date.now() + 20_000
      while ((await orders()) === 0 && Date.now() < until) await sleep(50)
      broker.child.kill("SIGKILL")
      await broker.exitWithin(5_000)
      client.end(true)
      await runtime.waitFor(/mqtt publisher (error|disconnected)/, 5_000)
      await sleep(1_000)
      runtime.child.kill("SIGTERM")
      expect(await runtime.exitWithin(10_000), runtime.output()).toBe(0)
      expectShutdownLines(runtime.output())

      broker = await startBroker(port, sessions)
      const again = run([main], env)
      await again.waitFor(/runtime ready/, 30_000)
      const deadline = Date.now() + 60_000
      while ((await orders()) < n && Date.now() < deadline) await sleep(200)
      expect(await orders(), `orders after the restart; the first run's log:\n${runtime.output()}\nthe second's:\n${again.output()}`).toBe(n)
      again.child.kill("SIGTERM")
      expect(await again.exitWithin(10_000), again.output()).toBe(0)
      broker.child.kill("SIGKILL")
    } finally {
      slow.close()
      await schema.drop()
    }
  }, 180_000)

  it("SIGTERM while the start waits for a CONNACK (a stopped broker): exits 0 at once, without waiting for the attempt to time out", async () => {
    const port = await freePort()
    const broker = await startBroker(port, tempDir("baton-ext-broker-"))
    // Stopped: the kernel still accepts connections, nothing answers them.
    broker.child.kill("SIGSTOP")
    try {
      const runtime = run([main], runtimeEnv(port, tempDir("baton-shutdown-")))
      await runtime.waitFor(/no BATON_AUTH_FILE/, 30_000)
      await sleep(200)
      runtime.child.kill("SIGTERM")
      expect(await runtime.exitWithin(5_000), runtime.output()).toBe(0)
      // (Before, the start went on waiting until the attempt timed out, 3 s after it began.)
      expect(runtime.output()).not.toMatch(/connack timeout/)
      expect(runtime.output()).toMatch(/ runtime stopped/)
      expect(runtime.output()).not.toMatch(/runtime ready/)
    } finally {
      broker.child.kill("SIGKILL")
    }
  }, 60_000)

  it("refuses to start with nothing listening at BATON_BROKER_URL: one line, exit 1, within 10 s", async () => {
    const runtime = run([main], runtimeEnv(await freePort(), tempDir("baton-shutdown-")))
    // (The bound from the first line: Node's own start takes seconds on a loaded machine.)
    await runtime.waitFor(/runtime starting/, 30_000)
    expect(await runtime.exitWithin(10_000), runtime.output()).toBe(1)
    expect(runtime.output().match(/ERROR .*/g)).toEqual([expect.stringMatching(/runtime failed reason="cannot connect to MQTT broker at mqtt:\/\/127\.0\.0\.1:\d+: connect ECONNREFUSED/)])
    expect(runtime.output()).toMatch(/ runtime stopped/)
  }, 30_000)
})

describe("the embedded broker with its Redis or PostgreSQL out of reach", () => {
  const embeddedEnv = (dataDir: string) => ({ BATON_HTTP_PORT: "0", BATON_MQTT_PORT: "0", BATON_WS_PORT: "off", BATON_DATA_DIR: dataDir })

  it("refuses to start with nothing listening at BATON_REDIS_URL: one line, exit 1, within 5 s", async () => {
    const port = await freePort()
    const runtime = run([main], { ...embeddedEnv(tempDir("baton-shutdown-")), BATON_REDIS_URL: `redis://127.0.0.1:${port}` })
    // (The bound from the first line: Node's own start takes seconds on a loaded machine.)
    await runtime.waitFor(/runtime starting/, 30_000)
    expect(await runtime.exitWithin(5_000), runtime.output()).toBe(1)
    expect(runtime.output().match(/(ERROR|WARN) .*/g)).toEqual([
      expect.stringMatching(/^WARN .*no BATON_AUTH_FILE/),
      `ERROR runtime failed reason="cannot connect to Redis at 127.0.0.1:${port} (BATON_REDIS_URL): connect ECONNREFUSED 127.0.0.1:${port}"`
    ])
    expect(runtime.output()).toMatch(/ runtime stopped/)
  }, 30_000)

  it("refuses to start with nothing listening at BATON_DATABASE_URL: one line, exit 1, within 5 s", async () => {
    const port = await freePort()
    const runtime = run([main], { ...embeddedEnv(tempDir("baton-shutdown-")), BATON_DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/test` })
    // (The bound from the first line: Node's own start takes seconds on a loaded machine.)
    await runtime.waitFor(/runtime starting/, 30_000)
    expect(await runtime.exitWithin(5_000), runtime.output()).toBe(1)
    expect(runtime.output().match(/ERROR .*/g)).toEqual([expect.stringMatching(/runtime failed reason="cannot open the store: PostgreSQL connect failed: connect ECONNREFUSED/)])
    expect(runtime.output()).toMatch(/ runtime stopped/)
  }, 30_000)
})

describe("shutdown while the external broker hangs (half-open TCP)", () => {
  it("SIGTERM with publishes in flight to a stopped broker (SIGSTOP, no FIN/RST): exits 0 within 20 s, not at the keepalive timeout; nothing acknowledged is lost once it is back", async () => {
    const n = 300
    const { port, sessions, dataDir, runtime, ...first } = await underLoad(n)
    let broker = first.broker
    // Stopped, not killed: the connections stay open, nothing answers on them.
    broker.child.kill("SIGSTOP")
    try {
      await sleep(1_000)
      runtime.child.kill("SIGTERM")
      // (Waits 5 s for the broker's answer, then gives up; before, ~45 s: MQTT.js' keepalive timeout.)
      expect(await runtime.exitWithin(20_000), runtime.output()).toBe(0)
      expectShutdownLines(runtime.output())
    } finally {
      broker.child.kill("SIGKILL")
      await broker.exitWithin(5_000)
    }
    broker = await startBroker(port, sessions)
    const again = run([main], runtimeEnv(port, dataDir))
    await again.waitFor(/runtime ready/, 30_000)
    await Process.eventually(() => ordersIn(dataDir) === n, 60_000, `all ${n} orders (${ordersIn(dataDir)} so far)`)
    again.child.kill("SIGTERM")
    expect(await again.exitWithin(10_000), again.output()).toBe(0)
    broker.child.kill("SIGKILL")
  }, 180_000)
})

describe("a signal at start while a subscriber waits for its CONNACK", () => {
  it("SIGTERM while a processor's session waits for its CONNACK: exits 0 at once, without waiting for the attempt to time out", async () => {
    const brokerPort = await freePort()
    const broker = await startBroker(brokerPort, tempDir("baton-ext-broker-"))
    // Every connection but the first (the publisher's) held.
    const proxy = await delaying(brokerPort, (n) => (n > 0 ? Infinity : 0))
    try {
      const runtime = run([main], runtimeEnv(proxy.port, tempDir("baton-shutdown-")))
      await runtime.waitFor(/broker connected/, 30_000)
      // Past the subscribers' connect (held by the proxy), well inside its 3 s attempt: a loaded
      // machine has 2.5 s to act on the signal before the attempt would time out.
      await sleep(500)
      expect(runtime.output()).not.toMatch(/processor started/)
      runtime.child.kill("SIGTERM")
      expect(await runtime.exitWithin(5_000), runtime.output()).toBe(0)
      // Not waited for: before, the start went on until the attempt timed out (3 s after it began).
      expect(runtime.output()).not.toMatch(/mqtt subscriber disconnected/)
      expect(runtime.output()).toMatch(/ runtime stopped/)
      expect(runtime.output()).not.toMatch(/runtime ready|ERROR/)
    } finally {
      proxy.close()
      broker.child.kill("SIGKILL")
    }
  }, 60_000)
})

describe("a cluster member's ingress session being opened at shutdown", () => {
  it("SIGTERM while the ingress session waits for its CONNACK: not tried again, exits 0", async () => {
    const brokerPort = await freePort()
    const broker = await startBroker(brokerPort, tempDir("baton-ext-broker-"))
    const proxy = await delaying(brokerPort, (_, connect) => (connect.includes("baton-cluster-ingress") ? Infinity : 0))
    const schema = await freshSchema()
    try {
      const env = { ...runtimeEnv(proxy.port, tempDir("baton-shutdown-")), BATON_DATABASE_URL: schema.url, BATON_INSTANCE: "n1", BATON_HEARTBEAT_MS: "250", BATON_DEAD_AFTER_MS: "2000" }
      const runtime = run([main], env)
      await runtime.waitFor(/ingress session taken/, 30_000)
      await sleep(500)
      runtime.child.kill("SIGTERM")
      expect(await runtime.exitWithin(10_000), runtime.output()).toBe(0)
      expectShutdownLines(runtime.output())
      // Given up at once: before, the attempt went on until it timed out (3 s), then was logged as failed.
      expect(runtime.output()).not.toMatch(/ingress session not opened/)
    } finally {
      proxy.close()
      broker.child.kill("SIGKILL")
      await schema.drop()
    }
  }, 60_000)
})
