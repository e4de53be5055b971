import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import mqtt from "mqtt"
import { cards, type CardKind } from "./orders.ts"
import { Mosquitto, Process, Sessions } from "@baton/testkit"
import * as TestRedis from "@baton/testkit/redis"
import * as Crash from "../src/Crash.ts"

const { count, eventually, readStore, startProcess } = Process
type Running = Process.Running

/** Crash runs per property (at least one per kill point of the broker's, see `cover`); raise for a soak run. */
const runs = Number(process.env.BATON_CRASH_RUNS ?? 6)

/**
 * Every kill point of the runtime (Crash.ts), and where it is reached: `received-committed` only
 * with an external broker (processors take their messages over broker sessions),
 * `handover-committed` only with the two-file ingress (`BATON_FRONT=log`, `front-log`: the
 * embedded broker, its initiating events committed to `front/ingress.db`, then handed over to
 * baton.db with the front's mark; docs/front-thread.md, 3.2), the others with either.
 * `outbox-published` is left out of `front-log`'s runs: the relay is the same code in both modes
 * (stage 1 moves nothing of it), and each covering run adds ~7% to this file's time.
 * `front-thread` (`BATON_FRONT=thread`: the broker and the front's log on a worker thread, whose
 * `ingress-before-commit` and `ingress-committed` are reached there and kill the whole process)
 * takes every point of the embedded broker and of the hand-over, `outbox-published` included: its
 * relay publishes across the worker's port, 256 in flight.
 * `after-acks`: no kill point, the process is killed once the broker acknowledged.
 */
type Where = "embedded" | "external" | "front-log" | "front-thread"
type KillPoint = Crash.Point | "after-acks"
const reachedWith: Record<KillPoint, ReadonlyArray<Where>> = {
  "after-acks": ["embedded", "front-log", "front-thread"],
  "ingress-before-commit": ["embedded", "front-log", "front-thread"],
  "ingress-committed": ["embedded", "front-log", "front-thread"],
  "handover-committed": ["front-log", "front-thread"],
  handler: ["embedded", "front-log", "front-thread"],
  "received-committed": ["external"],
  "processed-committed": ["embedded", "external", "front-log", "front-thread"],
  "outbox-published": ["embedded", "front-thread"]
}
const allKillPoints = Object.keys(reachedWith) as Array<KillPoint>
/** `BATON_CRASH_POINTS=handler,outbox-published` restricts the kill points (to chase one). */
const killPoints = allKillPoints.filter((p) => (process.env.BATON_CRASH_POINTS ?? allKillPoints.join(",")).split(",").includes(p))

const order = fc.record({
  items: fc.array(fc.record({ sku: fc.constantFrom("BOOK-1", "BOOK-2", "BOOK-3"), qty: fc.integer({ min: 1, max: 4 }) }), { minLength: 1, maxLength: 3 }),
  cardKind: fc.constantFrom<CardKind>("approved", "approved", "declined", "invalid"),
  qos: fc.constantFrom<1 | 2>(1, 2)
})

const scenarioAt = (kill: fc.Arbitrary<KillPoint>, resendAcked = fc.boolean()) =>
  fc.record({
    orders: fc.array(order, { minLength: 3, maxLength: 20 }),
    kill,
    hit: fc.integer({ min: 1, max: 12 }),
    resendAcked
  })
const scenario = scenarioAt(fc.constantFrom(...killPoints))

type Scenario = typeof scenario extends fc.Arbitrary<infer T> ? T : never

interface Placed {
  readonly id: string
  readonly kind: CardKind
  readonly items: ReadonlyArray<{ readonly sku: string; readonly qty: number }>
  readonly qos: 1 | 2
}

/** `keys`: how many customers place the orders (each its own by default); the customer is the key of a place-order. */
const message = (p: Placed, n: number, keys = Infinity) =>
  JSON.stringify({ id: p.id, type: "place-order", data: { customerId: `crash-${n % keys}`, email: `c${n}@example.com`, items: p.items.map((i) => ({ ...i, price: 2.5 })), payment: { card: cards[p.kind] } } })

/** Publishes the orders; resolves with the ids the broker acknowledged before the connection died. */
const publishAll = async (url: string, placed: ReadonlyArray<Placed>, keys?: number): Promise<Set<string>> => {
  const acked = new Set<string>()
  const client = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clean: true })
  const closed = new Promise<void>((resolve) => client.once("close", () => resolve()))
  // Publishes in flight when the broker dies never settle: the connection's close ends the wait.
  await Promise.race([
    Promise.allSettled(placed.map((p, n) => client.publishAsync("initiate/place-order", message(p, n, keys), { qos: p.qos }).then(() => void acked.add(p.id)))),
    closed,
    new Promise((r) => setTimeout(r, 15_000))
  ])
  client.end(true)
  return acked
}

/**
 * The orders acknowledged before the kill, by customer, were placed in the order they were
 * published: order-placement handles one key's events in their forwarding order (its `orders.seq`),
 * and the forwarding follows the log's, which is the publishes' (one connection, PUBACKs in order).
 */
const checkOrderPerKey = (dataDir: string, placed: ReadonlyArray<Placed>, acked: ReadonlySet<string>, keys: number) =>
  readStore(dataDir, (db) => {
    const placedAt = db.prepare("SELECT correlation_id, customer_id FROM orders ORDER BY seq").all().map((r) => ({ id: String(r.correlation_id), key: String(r.customer_id) }))
    const index = new Map(placed.map((p, n) => [p.id, n]))
    for (let k = 0; k < keys; k++) {
      const forwarded = placedAt.filter((o) => o.key === `crash-${k}` && acked.has(o.id)).map((o) => index.get(o.id)!)
      expect(forwarded, `acknowledged orders of crash-${k} in the order published`).toEqual([...forwarded].sort((a, b) => a - b))
    }
  })

const check = (dataDir: string, placed: ReadonlyArray<Placed>) =>
  readStore(dataDir, (db) => {
    const ids = placed.map((p) => p.id)
    const orders = db.prepare("SELECT id, correlation_id FROM orders").all().map((r) => ({ id: String(r.id), correlation: String(r.correlation_id) }))
    // Every order exists exactly once.
    expect(orders.map((o) => o.correlation).sort()).toEqual([...ids].sort())
    const orderOf = new Map(orders.map((o) => [o.correlation, o.id]))
    for (const p of placed) {
      const orderId = orderOf.get(p.id)!
      const approved = p.kind === "approved"
      expect(count(db, "SELECT COUNT(*) FROM payments WHERE order_id = ? AND approved = ?", orderId, approved ? 1 : 0), `payment of ${orderId}`).toBe(1)
      expect(count(db, "SELECT COUNT(*) FROM stock_allocations WHERE order_id = ?", orderId)).toBe(1)
      expect(count(db, "SELECT COUNT(*) FROM stock_releases WHERE order_id = ?", orderId), `release of ${orderId}`).toBe(approved ? 0 : 1)
      expect(count(db, "SELECT COUNT(*) FROM emails WHERE order_id = ? AND template = 'order-confirmation'", orderId)).toBe(1)
      expect(count(db, "SELECT COUNT(*) FROM emails WHERE order_id = ? AND template = 'ready-to-ship'", orderId)).toBe(approved ? 1 : 0)
      expect(count(db, "SELECT COUNT(*) FROM emails WHERE order_id = ? AND template = 'payment-method-declined'", orderId)).toBe(approved ? 0 : 1)
      expect(count(db, "SELECT COUNT(*) FROM fulfillments WHERE order_id = ?", orderId)).toBe(approved ? 1 : 0)
      expect(count(db, "SELECT COUNT(*) FROM shipments WHERE order_id = ?", orderId)).toBe(approved ? 1 : 0)
    }
    // Stock decremented exactly once per item of an approved order (a denied order's is given back once).
    for (const sku of ["BOOK-1", "BOOK-2", "BOOK-3"]) {
      const ordered = placed.filter((p) => p.kind === "approved").flatMap((p) => p.items).filter((i) => i.sku === sku).reduce((n, i) => n + i.qty, 0)
      expect(count(db, "SELECT on_hand - backordered FROM stock WHERE sku = ?", sku), sku).toBe(1000 - ordered)
    }
    // No event applied twice: each processor processed exactly the events the orders caused.
    const expected = expectedWork(placed)
    const done = processed(dataDir)
    expect({ ...Object.fromEntries(Object.keys(expected).map((k) => [k, 0])), ...done }).toEqual(expected)
    expect(count(db, "SELECT COUNT(*) FROM inbox WHERE status <> 'done'")).toBe(0)
    expect(count(db, "SELECT COUNT(*) FROM rejections")).toBe(0)
    expect(count(db, "SELECT COUNT(*) FROM outbox")).toBe(0)
  })

const processorNames = ["order-placement", "notification", "payment", "inventory", "warehouse", "order-fulfillment", "shipping"]

/** What each processor must have processed once every order's chain is complete. */
const expectedWork = (placed: ReadonlyArray<Placed>): Record<string, number> => {
  const approved = placed.filter((p) => p.kind === "approved").length
  return {
    "order-placement": placed.length,
    payment: placed.length,
    // Each order's allocation, and each denied order's release.
    inventory: placed.length + (placed.length - approved),
    warehouse: placed.length,
    notification: placed.length * 2,
    "order-fulfillment": approved,
    shipping: approved
  }
}

const processed = (dataDir: string): Record<string, number> =>
  readStore(dataDir, (db) =>
    Object.fromEntries(db.prepare("SELECT processor, COUNT(*) AS n FROM inbox WHERE status = 'done' GROUP BY processor").all().map((r) => [String(r.processor), Number(r.n)]))
  )

const terminal = (dataDir: string, placed: ReadonlyArray<Placed>) => {
  const expected = expectedWork(placed)
  const done = processed(dataDir)
  return Object.entries(expected).every(([p, n]) => (done[p] ?? 0) >= n) && readStore(dataDir, (db) => count(db, "SELECT COUNT(*) FROM outbox") === 0)
}

/**
 * A crash run. `covering`: the run that covers its kill point, which must be reached (the process
 * kills itself there): a hit count within the work, and time to get there.
 */
const crashRun = (given: Record<string, string>, urlOf: (r: Running) => string, keys?: number) => async (s: Scenario, covering = false) => {
  const dataDir = mkdtempSync(join(tmpdir(), "baton-crash-"))
  // Sessions in Redis: under a prefix of this run's, deleted after it.
  const redis = given.BATON_REDIS_URL === undefined ? undefined : TestRedis.scoped(given.BATON_REDIS_URL)
  const env = redis === undefined ? given : { ...given, BATON_REDIS_URL: redis.url }
  const instance = `crash${Math.random().toString(36).slice(2, 8)}`
  const placed: Array<Placed> = s.orders.map((o) => ({ id: crypto.randomUUID(), kind: o.cardKind, items: o.items, qos: o.qos }))
  // The ingress log commits once per batch of publishes, and a hand-over takes what one commit
  // holds, so their points are reached only a few times. A covering run kills within the work
  // (every order passes each other point at least once).
  const hit = s.kill.startsWith("ingress-") || s.kill === "handover-committed" ? (covering ? 1 : 1 + (s.hit % 3)) : covering ? 1 + (s.hit % s.orders.length) : s.hit
  const crashAt: Record<string, string> = s.kill === "after-acks" ? {} : { BATON_CRASH_AT: `${s.kill}:${hit}` }
  let first: Running | undefined
  let second: Running | undefined
  try {
    first = await startProcess(dataDir, { ...env, BATON_INSTANCE: instance, ...crashAt })
    if (env.BATON_BROKER_URL === undefined) await Process.watchEverything(urlOf(first))
    const acked = await publishAll(urlOf(first), placed, keys)
    // The kill point may not be reached (hit count past the work): then the kill comes from outside.
    const reached = await Promise.race([first.exited.then((code) => code === "SIGKILL"), new Promise<boolean>((r) => setTimeout(() => r(false), s.kill === "after-acks" ? 0 : covering ? 20_000 : 300))])
    if (covering && s.kill !== "after-acks") expect(reached, `the process killed itself at ${s.kill}:${hit}`).toBe(true)
    const exit = await first.kill("SIGKILL")
    expect(exit).toBe("SIGKILL")

    second = await startProcess(dataDir, { ...env, BATON_INSTANCE: instance })
    // A client resends what was not acknowledged; resending acknowledged ones too must change nothing.
    const resend = placed.filter((p) => !acked.has(p.id) || s.resendAcked)
    await publishAll(urlOf(second), resend, keys)
    await eventually(() => terminal(dataDir, placed), 30_000, "every order to reach a terminal state").catch((timedOut: unknown) => {
      // Name the broken rule rather than the wait: an order the broker acknowledged is never resent by its client.
      const stored = new Set(readStore(dataDir, (db) => db.prepare("SELECT correlation_id FROM orders").all().map((r) => String(r.correlation_id))))
      expect(placed.filter((p) => acked.has(p.id) && !stored.has(p.id)).map((p) => p.id), "orders acknowledged to their client (PUBACK/PUBCOMP) and then lost").toEqual([])
      throw timedOut
    })
    expect(await second.kill("SIGTERM")).toBe(0)
    check(dataDir, placed)
    if (keys !== undefined) checkOrderPerKey(dataDir, placed, acked, keys)
  } finally {
    await first?.kill("SIGKILL")
    await second?.kill("SIGKILL")
    if (env.BATON_BROKER_URL !== undefined) await Sessions.purge(env.BATON_BROKER_URL, Process.sessionIds(instance, processorNames))
    rmSync(dataDir, { recursive: true, force: true })
    await redis?.clean()
  }
}

/**
 * Every kill point of `where` once, each at a run of its own with random orders (in every CI run,
 * so that each durability guarantee fails every time it is broken), then random runs up to `total`.
 * A covering run resends only what was not acknowledged: an acknowledged order lost shows.
 */
const cover = async (where: Where, total: number, run: (s: Scenario, covering: boolean) => Promise<void>) => {
  const points = killPoints.filter((p) => reachedWith[p].includes(where))
  for (const kill of points) await fc.assert(fc.asyncProperty(scenarioAt(fc.constant(kill), fc.constant(false)), (s) => run(s, true)), { numRuns: 1, endOnFailure: true })
  if (total > points.length) await fc.assert(fc.asyncProperty(scenario, (s) => run(s, false)), { numRuns: total - points.length, endOnFailure: true })
}

/**
 * Deterministic, in every run: the runtime is killed again and again between a processor's inbox
 * commit and the broker's acknowledgement (`received-committed`, external broker), so that
 * Mosquitto redelivers messages the inbox already holds, pending or already done, several times
 * per run. Each must be recognised, not handled again: every effect once, and no handler run for a
 * message that is no longer pending (its transaction would be rolled back, but it ran).
 */
const redeliveries = async (url: string) => {
  const dataDir = mkdtempSync(join(tmpdir(), "baton-redeliver-"))
  const instance = `redeliver${Math.random().toString(36).slice(2, 8)}`
  const placed: Array<Placed> = Array.from({ length: 4 }, (_, n) => ({ id: crypto.randomUUID(), kind: n % 2 === 1 ? "declined" : "approved", items: [{ sku: "BOOK-1", qty: 1 }], qos: 1 }))
  const outputs: Array<string> = []
  let running: Running | undefined
  try {
    let acked = new Set<string>()
    // Each start is killed at its n-th inbox commit: the first while the orders come in, the others
    // on the redeliveries and the work that follows them.
    for (const [i, hit] of [4, 3].entries()) {
      const env = { BATON_BROKER_URL: url, BATON_INSTANCE: instance, BATON_CRASH_AT: `received-committed:${hit}` }
      // The redeliveries may reach the kill point before the process reports itself ready.
      const started = await startProcess(dataDir, env).catch((error: Error) => {
        if (!/runtime exited \(SIGKILL\) before it was ready/.test(error.message)) throw error
        outputs.push(error.message)
        return undefined
      })
      if (started === undefined) continue
      running = started
      if (i === 0) acked = await publishAll(url, placed)
      const exit = await Promise.race([running.exited, new Promise((r) => setTimeout(() => r("not reached"), 10_000))])
      outputs.push(running.output())
      expect(exit, `start ${i + 1} killed itself at received-committed:${hit}`).toBe("SIGKILL")
    }
    running = await startProcess(dataDir, { BATON_BROKER_URL: url, BATON_INSTANCE: instance })
    await publishAll(url, placed.filter((p) => !acked.has(p.id)))
    await eventually(() => terminal(dataDir, placed), 30_000, "every order to reach a terminal state")
    expect(await running.kill("SIGTERM")).toBe(0)
    outputs.push(running.output())
    check(dataDir, placed)
    const rerun = outputs.join("\n").match(/.*no longer pending.*/g) ?? []
    expect(rerun, "a redelivered message was handled again (the inbox's deduplication is broken)").toEqual([])
  } finally {
    await running?.kill("SIGKILL")
    await Sessions.purge(url, Process.sessionIds(instance, processorNames))
    rmSync(dataDir, { recursive: true, force: true })
  }
}

describe("no data loss across SIGKILL", () => {
  it("covers every kill point the runtime defines, and the runtime reaches each of them somewhere", () => {
    expect(allKillPoints.filter((p) => p !== "after-acks").sort(), "the kill points of this test are Crash.ts's").toEqual([...Crash.points].sort())
    const src = new URL("../src/", import.meta.url)
    const called = readdirSync(src, { recursive: true, encoding: "utf8" })
      .filter((f) => f.endsWith(".ts"))
      .flatMap((f) => [...readFileSync(new URL(f, src), "utf8").matchAll(/Crash\.point\("([a-z-]+)"/g)].map((m) => m[1]!))
    expect([...new Set(called)].sort(), "every kill point is a Crash.point call of the runtime").toEqual([...Crash.points].sort())
  })

  it(
    "embedded broker: for random orders (QoS 1 and 2) and every kill point, every order completes once, every effect applied once",
    async () => {
      await cover("embedded", runs, crashRun({}, (r) => `mqtt://127.0.0.1:${r.mqttPort}`))
    },
    300_000
  )

  it(
    "embedded broker: kills at a hop of the order flow run in its root's transaction (Consumer.chain: warehouse's, inside order-placement's transaction, and once it committed, amid the chained hops' after-commit work): every order completes once, every effect applied once",
    async () => {
      const run = crashRun({}, (r) => `mqtt://127.0.0.1:${r.mqttPort}`)
      for (const kill of ["handler@warehouse", "processed-committed@warehouse"] as ReadonlyArray<string>)
        await fc.assert(fc.asyncProperty(scenarioAt(fc.constant(kill as KillPoint), fc.constant(false)), (s) => run(s, true)), { numRuns: 2, endOnFailure: true })
    },
    300_000
  )

  it(
    "two-file ingress (BATON_FRONT=log): for random orders of three customers and every kill point of the ingress and the processors, handover-committed included, every order completes once, every effect applied once, the acknowledged ones placed in order per customer",
    async () => {
      await cover("front-log", runs, crashRun({ BATON_FRONT: "log" }, (r) => `mqtt://127.0.0.1:${r.mqttPort}`, 3))
    },
    300_000
  )

  it(
    "front thread (BATON_FRONT=thread): for random orders of three customers and every kill point, on either thread, every order completes once, every effect applied once, the acknowledged ones placed in order per customer",
    async () => {
      await cover("front-thread", runs, crashRun({ BATON_FRONT: "thread" }, (r) => `mqtt://127.0.0.1:${r.mqttPort}`, 3))
    },
    300_000
  )

  it(
    "embedded broker with sessions in Redis (BATON_REDIS_URL): the same guarantees",
    async () => {
      const redis = process.env.BATON_TEST_REDIS_URL ?? "redis://127.0.0.1:6379/3"
      const run = crashRun({ BATON_REDIS_URL: redis }, (r) => `mqtt://127.0.0.1:${r.mqttPort}`)
      await fc.assert(fc.asyncProperty(scenario, (s) => run(s)), { numRuns: Math.max(2, Math.ceil(runs / 2)), endOnFailure: true })
    },
    300_000
  )

  it(
    "external Mosquitto: messages the inbox already holds, redelivered after kills between the inbox commit and the acknowledgement (several per run), are applied once",
    async () => {
      await Mosquitto.exclusive(() => redeliveries(process.env.BATON_TEST_MOSQUITTO_URL ?? "mqtt://127.0.0.1:1883"))
    },
    600_000 // with the wait for Mosquitto (Mosquitto.ts)
  )

  it(
    "external Mosquitto: the same guarantees for everything the runtime controls, and the kill point only an external broker reaches",
    async () => {
      const url = process.env.BATON_TEST_MOSQUITTO_URL ?? "mqtt://127.0.0.1:1883"
      await Mosquitto.exclusive(() => cover("external", Math.max(2, Math.ceil(runs / 2)), crashRun({ BATON_BROKER_URL: url }, () => url)))
    },
    600_000 // with the wait for Mosquitto
  )
})
