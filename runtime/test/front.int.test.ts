/**
 * `BATON_FRONT=thread` on a real runtime (docs/front-thread.md, stage 2): the embedded broker, its
 * guard and the front's log on a worker thread. The runtime runs in this test's process, so a
 * synchronous spin here blocks main's event loop; the clients that must be heard meanwhile run in
 * a child process (a client on this thread could not read its PUBACKs) and time them on the wall
 * clock, which both processes share.
 */
import { spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import type { Worker } from "node:worker_threads"
import { Effect, Exit } from "effect"
import mqtt from "mqtt"
import { describe, expect, it, vi } from "vitest"
import type { Config } from "../src/Config.ts"
import { cards } from "./orders.ts"
import { collect, connect, getJson, startRuntime, trySubscribe, until, type Harness } from "./support.ts"

// The front's worker (named `baton-front`), recorded as Front.ts creates it: the only way to make it fail alone from here
// (the runtime exposes no handle on it). Nothing else about it changes.
const spied = vi.hoisted(() => ({ workers: [] as Array<Worker> }))
vi.mock("node:worker_threads", async (importOriginal) => {
  const original = await importOriginal<typeof import("node:worker_threads")>()
  class Recorded extends original.Worker {
    constructor(...args: ConstructorParameters<typeof original.Worker>) {
      super(...args)
      if (args[1]?.name === "baton-front") spied.workers.push(this)
    }
  }
  return { ...original, Worker: Recorded }
})

const runtimeDir = join(dirname(fileURLToPath(import.meta.url)), "..")

const placeOrder = (id: string, customerId: string) =>
  JSON.stringify({ id, type: "place-order", data: { customerId, email: "front@example.com", items: [{ sku: "BOOK-2", qty: 1, price: 3 }], payment: { card: cards.approved } } })

/** Blocks this thread, and so the runtime's main event loop, for `ms`. */
const spin = (ms: number) => {
  const end = Date.now() + ms
  while (Date.now() < end) {
    // main blocked
  }
}

interface Ack {
  readonly i: number
  readonly id: string
  readonly sent: number
  readonly acked: number
}

// The publisher in a child process: connects, says so, waits `delayMs`, then publishes `count`
// place-order events at QoS 1, one every `intervalMs` (0: all at once, in order on its connection),
// and prints each PUBACK's time. CommonJS from `-e`, `mqtt` resolved from the runtime package.
const publisherScript = `
const mqtt = require("mqtt")
const [url, count, intervalMs, delayMs, prefix, card] = process.argv.slice(1)
const out = (line) => process.stdout.write(JSON.stringify(line) + "\\n")
const client = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, clean: true })
client.on("error", (e) => { process.stderr.write(String(e)); process.exit(2) })
client.on("connect", () => {
  client.stream.setNoDelay?.(true)
  out({ t: "connected", at: Date.now() })
  let acked = 0
  const one = (i) => {
    const id = crypto.randomUUID()
    const data = { customerId: prefix + "-" + i, email: "front@example.com", items: [{ sku: "BOOK-2", qty: 1, price: 3 }], payment: { card } }
    const sent = Date.now()
    client.publish("initiate/place-order", JSON.stringify({ id, type: "place-order", data }), { qos: 1 }, (error) => {
      if (error) { process.stderr.write(String(error)); process.exit(3) }
      out({ t: "ack", i, id, sent, acked: Date.now() })
      if (++acked === Number(count)) client.end(false, () => process.exit(0))
    })
  }
  setTimeout(() => {
    if (Number(intervalMs) === 0) for (let i = 0; i < Number(count); i++) one(i)
    else for (let i = 0; i < Number(count); i++) setTimeout(() => one(i), i * Number(intervalMs))
  }, Number(delayMs))
})
`

/**
 * Runs the publisher; `connected` runs on this thread when it is connected (a spin there blocks
 * main while the child publishes). Resolves with every PUBACK once all came and the child exited.
 */
const publish = (url: string, options: { count: number; intervalMs: number; delayMs: number; prefix: string; connected: () => void }) =>
  new Promise<ReadonlyArray<Ack>>((resolve, reject) => {
    const child = spawn(process.execPath, ["-e", publisherScript, url, String(options.count), String(options.intervalMs), String(options.delayMs), options.prefix, cards.approved], {
      cwd: runtimeDir,
      stdio: ["ignore", "pipe", "pipe"]
    })
    const acks: Array<Ack> = []
    let stderr = ""
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
    createInterface({ input: child.stdout }).on("line", (line) => {
      const m = JSON.parse(line) as { t: string } & Ack
      if (m.t === "connected") options.connected()
      else acks.push(m)
    })
    const timer = setTimeout(() => child.kill(), 30_000)
    child.on("exit", (code) => {
      clearTimeout(timer)
      if (code === 0) resolve(acks)
      else reject(new Error(`publisher exited ${code}: ${stderr} (${acks.length} PUBACKs)`))
    })
  })

// The subscriber in a child process: connects, says so, subscribes after `delayMs` and prints the
// SUBACK's time, then gathers the correlation ids it gets until its stdin ends.
const subscriberScript = `
const mqtt = require("mqtt")
const [url, delayMs, filter] = process.argv.slice(1)
const out = (line) => process.stdout.write(JSON.stringify(line) + "\\n")
const got = []
const client = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, clean: true })
client.on("error", (e) => { process.stderr.write(String(e)); process.exit(2) })
client.on("message", (_t, payload) => got.push(JSON.parse(payload.toString()).correlationId))
client.on("connect", () => {
  out({ t: "connected" })
  setTimeout(() => client.subscribe(filter, { qos: 1 }, (error) => {
    if (error) { process.stderr.write(String(error)); process.exit(3) }
    out({ t: "suback", at: Date.now() })
  }), Number(delayMs))
})
process.stdin.on("data", () => {})
process.stdin.on("end", () => { out({ t: "got", ids: got }); client.end(false, () => process.exit(0)) })
`

const subscribe = (url: string, options: { delayMs: number; filter: string }) => {
  const child = spawn(process.execPath, ["-e", subscriberScript, url, String(options.delayMs), options.filter], { cwd: runtimeDir, stdio: ["pipe", "pipe", "pipe"] })
  const connected = Promise.withResolvers<void>()
  let subacked: number | undefined
  let got: ReadonlySet<string> | undefined
  let stderr = ""
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
  createInterface({ input: child.stdout }).on("line", (line) => {
    const m = JSON.parse(line) as { t: string; at: number; ids: Array<string> }
    if (m.t === "connected") connected.resolve()
    else if (m.t === "suback") subacked = m.at
    else got = new Set(m.ids)
  })
  const exited = new Promise<number | null>((resolve) => child.on("exit", resolve))
  void exited.then((code) => connected.reject(new Error(`subscriber exited ${code}: ${stderr}`)))
  return {
    connected: connected.promise,
    /** Ends it: its SUBACK's time and what it got. */
    done: async () => {
      child.stdin.end()
      const code = await exited
      if (code !== 0 || subacked === undefined || got === undefined) throw new Error(`subscriber exited ${code}: ${stderr}`)
      return { subacked, got }
    }
  }
}

const ordersOf = async (h: Harness, prefix: string) =>
  Number((await h.runtime.store.run(h.runtime.store.query(`SELECT count(*) AS n FROM orders WHERE customer_id LIKE '${prefix}-%'`).all()))[0]!.n)

const withRuntime = async (overrides: Partial<Config>, body: (h: Harness) => Promise<void>) => {
  const h = await startRuntime({ front: "thread", ...overrides })
  try {
    await body(h)
  } finally {
    await h.stop()
  }
}

describe("BATON_FRONT=thread", () => {
  // (a) The point of the thread: a PUBACK waits for the front's own commit, not for main's loop.
  // In `log` mode the same publishes wait for main (the contrast shows the spin does block it).
  it.each([
    ["thread", true],
    ["log", false]
  ] as const)("with main's loop blocked 400 ms, in %s mode the PUBACKs of initiating events come at once: %s", async (front, atOnce) => {
    await withRuntime({ front }, async (h) => {
      let blocked = { from: 0, to: 0 }
      const acks = await publish(h.url, {
        count: 15,
        intervalMs: 20,
        delayMs: 50,
        prefix: `a-${front}`,
        connected: () => {
          const from = Date.now()
          spin(400)
          blocked = { from, to: Date.now() }
        }
      })
      // Those sent while main was blocked, with time left for their PUBACK before it resumed.
      const during = acks.filter((a) => a.sent >= blocked.from && a.sent <= blocked.to - 150)
      expect(during.length).toBeGreaterThanOrEqual(8)
      // Late: after main resumed, or more than 100 ms after it was sent.
      const late = during.filter((a) => a.acked >= blocked.to || a.acked - a.sent >= 100)
      expect(late.length).toBe(atOnce ? 0 : during.length)
      // Logged, then forwarded once main runs again: every order exists.
      await until("15 orders created", async () => (await ordersOf(h, `a-${front}`)) === 15)
    })
  })

  // (e) Past `frontBacklog` entries committed and not forwarded, new PUBACKs wait (TCP pushes back
  // on the client); once main forwards below half, they come, and nothing is lost.
  it("holds PUBACKs past frontBacklog (64) while main is blocked, then acknowledges and creates all 300 orders", async () => {
    await withRuntime({ frontBacklog: 64 }, async (h) => {
      let resumed = 0
      const acks = await publish(h.url, {
        count: 300,
        intervalMs: 0,
        delayMs: 50,
        prefix: "bl",
        connected: () => {
          spin(1_000)
          resumed = Date.now()
        }
      })
      expect(acks.filter((a) => a.acked < resumed).length).toBe(64)
      expect(acks.length).toBe(300)
      await until("300 orders created", async () => (await ordersOf(h, "bl")) === 300, 20_000)
      expect(h.logger.lines.some((l) => l.includes("front backlog full"))).toBe(true)
    })
  })

  // (d) The relay keeps 256 publishes in flight to the front; the front puts them into Aedes one at
  // a time, so a subscriber still sees each key's events in the order they were decided.
  it("relays 2,000 order-created events to a subscriber in publish order per customer", async () => {
    await withRuntime({}, async (h) => {
      // A persistent session: each publish to it is stored for it before it is sent (the broker's
      // longest path for a message).
      const subscriber = await mqtt.connectAsync(h.url, { protocolVersion: 4, reconnectPeriod: 0, clean: false, clientId: `front-d-${crypto.randomUUID().slice(0, 8)}` })
      const publisher = await connect(h.url)
      try {
        const events = await collect(subscriber, ["events/order-created"])
        const customers = ["c1", "c2", "c3", "c4"].map((c) => `${c}-${crypto.randomUUID().slice(0, 6)}`)
        const ids = new Map<string, { customer: string; n: number }>()
        const sends: Array<Promise<unknown>> = []
        for (let n = 0; n < 500; n++)
          for (const customer of customers) {
            const id = crypto.randomUUID()
            ids.set(id, { customer, n })
            sends.push(publisher.publishAsync("initiate/place-order", placeOrder(id, customer), { qos: 1 }))
          }
        await Promise.all(sends)
        await events.until((all) => all.length >= 2_000, 40_000, "2,000 order-created")
        const seen = new Map<string, Array<number>>()
        for (const r of events.received) {
          const o = ids.get(r.envelope.correlationId ?? "")
          if (o !== undefined) seen.set(o.customer, [...(seen.get(o.customer) ?? []), o.n])
        }
        const inOrder = Array.from({ length: 500 }, (_, n) => n)
        for (const customer of customers) expect({ customer, ns: seen.get(customer) }).toEqual({ customer, ns: inOrder })
      } finally {
        await publisher.endAsync()
        await subscriber.endAsync()
      }
    })
  }, 60_000)

  // (b) A new filter's SUBACK waits until main's mirror holds it, so `wanted` does not say no for
  // the client that subscribed. Each round the filter's only subscriber leaves, so the next
  // SUBSCRIBE is new to main again (announced, dropped, announced...): a mirror that misses an
  // announcement or a drop out of turn loses the round. (The client's own order follows the
  // filter's announcement on the port, so this one cannot see the SUBACK's wait: the next can.)
  it("SUBACK, then the subscriber's own order: its order-created arrives, 150 rounds with the filter dropped between them", async () => {
    await withRuntime({}, async (h) => {
      const client = await connect(h.url)
      try {
        const got = new Set<string>()
        const waiters = new Map<string, () => void>()
        client.on("message", (_t, payload) => {
          const id = (JSON.parse(payload.toString()) as { correlationId: string }).correlationId
          got.add(id)
          waiters.get(id)?.()
        })
        for (let round = 0; round < 150; round++) {
          await client.subscribeAsync("events/order-created", { qos: 1 })
          const id = crypto.randomUUID()
          const arrived = new Promise<void>((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error(`round ${round}: no order-created for ${id} within 5 s`)), 5_000)
            waiters.set(id, () => {
              clearTimeout(timer)
              resolve()
            })
          })
          await client.publishAsync("initiate/place-order", placeOrder(id, `sub-${round}`), { qos: 1 })
          await arrived
          waiters.delete(id)
          // The last subscriber gone: the front tells main to forget the filter (after Aedes'
          // matcher removed it), and the next round's SUBSCRIBE announces it again.
          await client.unsubscribeAsync("events/order-created")
        }
        expect(got.size).toBe(150)
      } finally {
        await client.endAsync()
      }
    })
  }, 60_000)

  // (b, while main decides) The rule itself, seen from outside: a client whose SUBACK came back
  // gets every matching event decided after it. The subscriber runs in a child process while main
  // is busy deciding another client's flood of orders: a SUBACK that did not wait for main's mirror
  // reaches it while main still decides with the mirror as it was. An order's `created_at` is
  // taken on main before its order-created is announced (and `wanted` asked): one created after
  // the SUBACK's arrival must reach the subscriber.
  it("SUBACK while main decides another client's flood: every order-created decided after it arrives, 8 rounds", async () => {
    await withRuntime({}, async (h) => {
      const flood = await connect(h.url)
      try {
        let informative = 0
        const missed: Array<string> = []
        for (let round = 0; round < 8; round++) {
          const prefix = `flood${round}`
          const subscriber = subscribe(h.url, { delayMs: 40, filter: "events/order-created" })
          await subscriber.connected
          await Promise.all(Array.from({ length: 300 }, (_, n) => flood.publishAsync("initiate/place-order", placeOrder(crypto.randomUUID(), `${prefix}-${n}`), { qos: 1 })))
          await until(`round ${round}: 300 orders`, async () => (await ordersOf(h, prefix)) === 300)
          await h.runtime.idle()
          const { subacked, got } = await subscriber.done()
          const rows = await h.runtime.store.run(h.runtime.store.query(`SELECT correlation_id, created_at FROM orders WHERE customer_id LIKE '${prefix}-%'`).all())
          const after = rows.filter((r) => Date.parse(String(r.created_at)) > subacked + 1)
          if (after.length > 0 && after.length < rows.length) informative++
          for (const r of after) if (!got.has(String(r.correlation_id))) missed.push(`round ${round}: ${String(r.correlation_id)} created ${String(r.created_at)}, SUBACK at ${new Date(subacked).toISOString()}`)
        }
        expect(missed.slice(0, 5)).toEqual([])
        // The SUBACK came while main was deciding the flood in most rounds (else a round shows nothing).
        expect(informative).toBeGreaterThanOrEqual(4)
      } finally {
        await flood.endAsync()
      }
    })
  }, 60_000)

  // (c) The worker failing alone ends the runtime (`fatal`, one line); the next start forwards every
  // event the front acknowledged, from its log above main's mark.
  it.each([
    // A message it cannot read: an uncaught rejection on its thread (`error`, then `exit`).
    ["throws", (worker: Worker): void => worker.postMessage({ t: "publish", first: 1, epoch: 0, items: null })],
    // Ended from outside, as an OOM of its heap would: `exit` alone.
    ["is terminated", (worker: Worker): void => void worker.terminate()]
  ] as const)("a front thread that %s ends the runtime with one 'front thread failed' line; a restart forwards every acknowledged order", async (_how, kill) => {
    const dataDir = mkdtempSync(join(tmpdir(), "baton-front-thread-"))
    try {
      const before = spied.workers.length
      const a = await startRuntime({ front: "thread", dataDir })
      const worker = spied.workers.at(-1)!
      expect(spied.workers.length).toBe(before + 1)
      let acks: ReadonlyArray<Ack> = []
      try {
        acks = await publish(a.url, {
          count: 10,
          intervalMs: 10,
          delayMs: 20,
          prefix: "dead",
          connected: () => {
            // Main blocked while the front acknowledges: none of these is forwarded yet when the
            // worker ends.
            spin(400)
            kill(worker)
          }
        })
      } catch {
        // The broker went with the worker: the child may see its connection closed.
      }
      const exit = await Promise.race([Effect.runPromiseExit(a.runtime.fatal), new Promise<"hang">((r) => setTimeout(() => r("hang"), 5_000))])
      expect(exit === "hang" ? "hang" : Exit.isFailure(exit)).toBe(true)
      await a.runtime.stop().catch(() => undefined)
      expect(a.logger.lines.filter((l) => l.includes("front thread failed"))).toHaveLength(1)
      expect(acks.length).toBeGreaterThan(0)

      const b = await startRuntime({ front: "thread", dataDir })
      try {
        await until("every acknowledged order forwarded after the restart", async () => (await ordersOf(b, "dead")) >= acks.length)
        const created = (await b.runtime.store.run(b.runtime.store.query("SELECT customer_id FROM orders WHERE customer_id LIKE 'dead-%'").all())).map((r) => String(r.customer_id))
        for (const a of acks) expect(created).toContain(`dead-${a.i}`)
      } finally {
        await b.runtime.stop()
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true })
    }
  })

  // What lives in the front thread (its clients, its backlog, its guard's refusals), asked across its port at scrape time.
  it("answers /metrics and GET /errors from the front thread: its connections, its backlog, its guard's refusals", async () => {
    await withRuntime({}, async (h) => {
      const client = await connect(h.url)
      try {
        // The client role may not subscribe to `#`: refused and counted by the front's guard.
        expect(await trySubscribe(client, "#")).toBe(false)
        const metrics = await (await fetch(`http://127.0.0.1:${h.runtime.httpPort}/metrics`)).text()
        const gauge = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+)$`, "m").exec(metrics)?.[1])
        expect(gauge("baton_broker_connections")).toBeGreaterThanOrEqual(1)
        expect(gauge("baton_front_backlog")).toBe(0)
        const errors = await getJson(h.runtime.httpPort, "/errors")
        expect(errors.body.security["subscribe-refused"]).toBe(1)
      } finally {
        await client.endAsync()
      }
    })
  })
})
