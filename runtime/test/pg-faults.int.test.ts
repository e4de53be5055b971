/**
 * PostgreSQL faults under load: the runtime as a child process on a fresh schema (embedded broker,
 * ephemeral ports) takes a few hundred orders over MQTT while its database connections are cut
 * again and again (`pg_terminate_backend` on the connections its `application_name`,
 * `baton/<instance>`, names: no other test's, and none of PostgreSQL's own), or while its pool
 * holds two connections. Every order must complete once, every effect apply once, nothing fail,
 * and the log must show each outage once and its end once.
 * `BATON_PG_FAULT_ORDERS` (default 300) sets the size.
 */
import { describe, expect, it } from "vitest"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import mqtt from "mqtt"
import pg from "pg"
import { Envelope } from "@baton/core"
import { Process } from "@baton/testkit"
import { freshSchema, query, serverUrl } from "@baton/testkit/postgres"
import { cards } from "./orders.ts"
import { checkOrderEffects } from "./cluster.ts"
import { sleep } from "./support.ts"

const size = Number(process.env.BATON_PG_FAULT_ORDERS ?? 300)
const skus = ["BOOK-1", "BOOK-2", "BOOK-3", "BOOK-4", "BOOK-5"]
const approved = (n: number) => n % 7 !== 3
const orderId = (run: string, n: number) => `${run}-order-${n}`
const orderPayload = (run: string, n: number) =>
  JSON.stringify({
    id: orderId(run, n),
    type: "place-order",
    data: {
      customerId: `${run}-c${n}`,
      email: `c${n}@example.com`,
      items: [{ sku: skus[n % 5]!, qty: 1 + (n % 3), price: 9.5 }, ...(n % 4 === 0 ? [{ sku: skus[(n + 2) % 5]!, qty: 1, price: 4 }] : [])],
      payment: { card: approved(n) ? cards.approved : cards.declined }
    }
  })

/** The runtime on a fresh schema, with a subscriber that records every public event it publishes. */
/** The runtime on a fresh schema (or on `given`, which `end` then leaves to its caller). */
const start = async (env: Record<string, string>, given?: Awaited<ReturnType<typeof freshSchema>>) => {
  const schema = given ?? (await freshSchema())
  const dir = mkdtempSync(join(tmpdir(), "baton-pgfault-"))
  const instance = env.BATON_INSTANCE ?? `pgf${Math.random().toString(36).slice(2, 8)}`
  const cleanup = async () => {
    rmSync(dir, { recursive: true, force: true })
    if (given === undefined) await schema.drop()
  }
  let running: Process.Running
  try {
    running = await Process.startProcess(dir, { BATON_DATABASE_URL: schema.url, BATON_INSTANCE: instance, BATON_APP: "order-entry", ...env })
  } catch (error) {
    await cleanup()
    throw error
  }
  const url = `mqtt://127.0.0.1:${running.mqttPort}`
  const events: Array<Envelope.Envelope> = []
  const subscriber = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0 })
  subscriber.on("message", (_topic, payload) => events.push(JSON.parse(payload.toString()) as Envelope.Envelope))
  await subscriber.subscribeAsync("events/#", { qos: 1 })
  const sql = <R extends Record<string, unknown>>(text: string, params: ReadonlyArray<unknown> = []) => query<R & pg.QueryResultRow>(schema.url, text, params)
  const number = async (text: string, params: ReadonlyArray<unknown> = []) => Number(Object.values((await sql(text, params))[0] ?? { n: 0 })[0])
  let ended = false
  return {
    instance,
    running,
    url,
    events,
    sql,
    number,
    /** Stops the runtime (SIGTERM, or SIGKILL if it did not stop yet) and drops the schema: once. */
    end: async (signal: NodeJS.Signals = "SIGKILL") => {
      if (ended) return running.exited
      ended = true
      subscriber.end(true)
      const code = await running.kill(signal)
      await cleanup()
      return code
    }
  }
}
type Run = Awaited<ReturnType<typeof start>>

/** Polls `done` until it holds; fails at once (with the runtime's output) if the runtime exits. */
const until = async (r: Run, what: string, done: () => Promise<boolean>, timeoutMs: number) => {
  const deadline = Date.now() + timeoutMs
  while (!(await done())) {
    if (r.running.child.exitCode !== null || r.running.child.signalCode !== null)
      throw new Error(`the runtime exited (${r.running.child.exitCode ?? r.running.child.signalCode}) waiting for ${what}:\n${r.running.output().slice(-4000)}`)
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}:\n${r.running.output().split("\n").filter((l) => /warn|error/.test(l)).slice(-40).join("\n")}`)
    await sleep(200)
  }
}

/** Cuts every database connection of the instance, every 400-900 ms, until stopped. */
const cutConnections = (instance: string) => {
  const admin = new pg.Client({ connectionString: serverUrl, application_name: "baton-test-pgfaults" })
  let stopped = false
  let rounds = 0
  let cut = 0
  const loop = (async () => {
    await admin.connect()
    while (!stopped) {
      await sleep(400 + Math.random() * 500)
      if (stopped) break
      const { rows } = await admin.query<{ cut: boolean }>(
        `SELECT pg_terminate_backend(pid) AS cut FROM pg_stat_activity
          WHERE application_name = $1 AND backend_type = 'client backend' AND datname = current_database() AND pid <> pg_backend_pid()`,
        [`baton/${instance}`]
      )
      const n = rows.filter((r) => r.cut).length
      if (n > 0) {
        rounds++
        cut += n
      }
    }
    await admin.end()
  })()
  loop.catch(() => undefined) // reported by `stop`
  return {
    /** Rounds that cut at least one connection so far. */
    rounds: () => rounds,
    stop: async () => {
      stopped = true
      await loop
      return { rounds, cut }
    }
  }
}

/**
 * An MQTT publisher that resends (same envelope id) whatever was not acknowledged: the broker
 * drops a publisher's connection when the ingress log could not commit its message. A dropped
 * connection fails the publishes in flight at once (MQTT.js would leave them pending).
 */
const publisher = (url: string) => {
  let current: Promise<{ readonly client: mqtt.MqttClient; readonly closed: Promise<never> }> | undefined
  let resent = 0
  const connect = async () => {
    for (;;) {
      try {
        const client = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 2000 })
        client.on("error", () => undefined)
        const closed = new Promise<never>((_, reject) => client.once("close", () => reject(new Error("connection closed"))))
        closed.catch(() => undefined)
        return { client, closed }
      } catch {
        await sleep(50)
      }
    }
  }
  const publish = async (topic: string, payload: string): Promise<void> => {
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) resent++
      const session = (current ??= connect())
      const { client, closed } = await session
      try {
        await Promise.race([client.publishAsync(topic, payload, { qos: 1 }), closed, sleep(5000).then(() => Promise.reject(new Error("no PUBACK")))])
        return
      } catch {
        client.end(true)
        if (current === session) current = undefined
      }
    }
  }
  return { publish, resent: () => resent, close: async () => (await current)?.client.end(true) }
}

/** Publishes the orders in waves of 30; resolves with how many publishes were sent again. */
const placeOrders = async (r: Run, run: string) => {
  const publishers = [0, 1, 2].map(() => publisher(r.url))
  for (let n = 0; n < size; n += 30)
    await Promise.all(Array.from({ length: Math.min(30, size - n) }, (_, k) => publishers[(n + k) % 3]!.publish("initiate/place-order", orderPayload(run, n + k))))
  for (const p of publishers) await p.close()
  return publishers.reduce((n, p) => n + p.resent(), 0)
}

const terminal = (r: Run, run: string) =>
  r.number(
    `SELECT COUNT(*) FROM orders o WHERE o.customer_id LIKE $1 AND (EXISTS (SELECT 1 FROM shipments s WHERE s.order_id = o.id)
      OR (EXISTS (SELECT 1 FROM emails e WHERE e.order_id = o.id AND e.template = 'payment-method-declined') AND EXISTS (SELECT 1 FROM stock_releases r WHERE r.order_id = o.id)))`,
    [`${run}-%`]
  )

/** What each processor must have processed once every order's chain is complete, for `runs` runs of the orders. */
const expectedWork = (runs = 1) => {
  const ok = Array.from({ length: size }, (_, n) => n).filter(approved).length
  const work = { "order-placement": size, payment: size, inventory: size + (size - ok), warehouse: size, notification: size * 2, "order-fulfillment": ok, shipping: ok }
  return Object.fromEntries(Object.entries(work).map(([processor, n]) => [processor, n * runs]))
}

/** The distinct envelopes (by id) of a type in each order's chain: retransmissions on the wire count once. */
const distinctOf = (events: ReadonlyArray<Envelope.Envelope>, type: string, correlationId: string) =>
  new Set(events.filter((e) => e.type === type && e.correlationId === correlationId).map((e) => e.id)).size

/** Runs the orders through, then checks: every order ended once, every effect applied once, nothing failed. */
const runOrders = async (r: Run) => {
  const run = `pgf-${Math.random().toString(36).slice(2, 8)}`
  const t0 = Date.now()
  const died = r.running.exited.then((code) => Promise.reject(new Error(`the runtime exited (${code}) while orders were placed:\n${r.running.output().slice(-4000)}`)))
  died.catch(() => undefined)
  const resent = await Promise.race([placeOrders(r, run), died])
  process.stdout.write(`  ${size} orders acknowledged in ${Date.now() - t0} ms (${resent} sent again)\n`)
  await until(r, `${size} orders in a terminal state`, async () => (await terminal(r, run)) >= size, 50_000)
  process.stdout.write(`  ${size} orders in a terminal state after ${Date.now() - t0} ms\n`)
  return run
}

/** `wire`: the events on the broker too (not after a SIGKILL: what the subscriber, not a persistent session, had in flight is gone). */
const checkQuiescent = async (r: Run, runs: string | ReadonlyArray<string>, wire = true) => {
  const all = typeof runs === "string" ? [runs] : runs
  // Quiescence: nothing pending, nothing left to send; then every end event on the wire.
  await until(r, "the inbox and the outbox to drain", async () => (await r.number("SELECT COUNT(*) FROM inbox WHERE status = 'pending'")) === 0 && (await r.number("SELECT COUNT(*) FROM outbox")) === 0, 20_000)
  if (wire) await checkWire(r, all)
  for (const run of all) await checkOrderEffects(r, run, size)
  // One payment and one allocation per order (checkOrderEffects counts them), and no message applied twice or failed.
  const done = Object.fromEntries((await r.sql<{ processor: string; n: string }>("SELECT processor, COUNT(*) AS n FROM inbox WHERE status = 'done' GROUP BY processor")).map((x) => [x.processor, Number(x.n)]))
  expect(done).toEqual(expectedWork(all.length))
  expect(await r.number("SELECT COUNT(*) FROM inbox WHERE status <> 'done'")).toBe(0)
  expect(await r.sql("SELECT kind, reason FROM rejections")).toEqual([])
}

/** Every order's events on the broker once (by id): its creation, its payment's outcome, its end. */
const checkWire = async (r: Run, all: ReadonlyArray<string>) => {
  const ends = () => all.flatMap((run) => Array.from({ length: size }, (_, n) => distinctOf(r.events, approved(n) ? "order-shipped" : "inventory-released", orderId(run, n))))
  await until(r, "every order's end event on the broker", async () => ends().every((n) => n >= 1), 10_000)
  await sleep(300) // any duplicate arrives meanwhile
  for (const run of all) {
    for (let n = 0; n < size; n++) {
      const c = orderId(run, n)
      expect([distinctOf(r.events, "order-created", c), distinctOf(r.events, "payment-applied", c), distinctOf(r.events, "payment-denied", c)], `order ${c}`).toEqual(
        approved(n) ? [1, 1, 0] : [1, 0, 1]
      )
      expect([distinctOf(r.events, "order-shipped", c), distinctOf(r.events, "inventory-released", c)], `end of ${c}`).toEqual(approved(n) ? [1, 0] : [0, 1])
    }
  }
}

const lines = (output: string, event: string) => output.split("\n").filter((l) => l.includes(event))

describe("PostgreSQL faults", () => {
  it(
    "connections cut mid-transaction, again and again: nothing acknowledged is lost, nothing applied twice, one log line per outage and one when back",
    async () => {
      const r = await start({})
      const cutter = cutConnections(r.instance)
      try {
        // Orders until the cuts have hit the runtime in three rounds at least (a run of the orders
        // can take less than three rounds' time: 400-900 ms each).
        const runs = [await runOrders(r)]
        while (cutter.rounds() < 3 && runs.length < 20) runs.push(await runOrders(r))
        const cuts = await cutter.stop()
        await checkQuiescent(r, runs)
        // The cuts did hit the runtime mid-flight, and it survived them.
        expect(cuts.rounds, "rounds of cut connections").toBeGreaterThanOrEqual(3)
        expect(r.running.child.exitCode).toBeNull()
        const down = lines(r.running.output(), "store unreachable, retrying")
        const back = lines(r.running.output(), "store reachable again")
        const idle = lines(r.running.output(), "idle database connections lost")
        process.stdout.write(`  ${cuts.rounds} rounds cut ${cuts.cut} connections; the store logged ${down.length} outages, ${idle.length} losses of idle connections\n`)
        // Idle connections dropped together: one line for the lot.
        expect(idle.length, idle.join("\n")).toBeLessThanOrEqual(cuts.rounds)
        expect(down.length, "outages the store noticed").toBeGreaterThanOrEqual(1)
        // At most one line per outage (a round of cuts), and each outage ends with one line.
        expect(down.length, down.join("\n")).toBeLessThanOrEqual(cuts.rounds)
        expect(back.length).toBe(down.length)
        expect(await r.end("SIGTERM")).toBe(0)
      } finally {
        await cutter.stop()
        await r.end()
      }
    },
    90_000
  )

  it(
    "a pool of two connections under load (BATON_DB_POOL=2): transactions queue, nothing fails, everything completes",
    async () => {
      const r = await start({ BATON_DB_POOL: "2" })
      let most = 0
      let sampling = true
      try {
        // The pool's bound holds: at most two connections for messages and two for the cluster's heartbeats.
        const sampler = (async () => {
          while (sampling) {
            most = Math.max(most, await r.number("SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = $1", [`baton/${r.instance}`]))
            await sleep(100)
          }
        })()
        const run = await runOrders(r)
        sampling = false
        await sampler
        await checkQuiescent(r, run)
        expect(most).toBeGreaterThanOrEqual(1)
        expect(most).toBeLessThanOrEqual(4)
        expect(lines(r.running.output(), "store unreachable")).toEqual([])
        expect(await r.end("SIGTERM")).toBe(0)
      } finally {
        sampling = false
        await r.end()
      }
    },
    90_000
  )

  // Consumer.chain on PostgreSQL: payment's and shipping's messages run in their root's transaction
  // (not the warehouse's: it has lock keys); durability.crash kills in chains on SQLite only.
  for (const point of ["handler@shipping", "processed-committed@payment", "handler@payment"])
    it(
      `SIGKILL at ${point} (a hop run in its root's transaction), then restarted on the same schema with every order sent again: every order once, every effect once`,
      async () => {
        const schema = await freshSchema()
        const instance = `pgk${Math.random().toString(36).slice(2, 8)}`
        const run = `pgk-${Math.random().toString(36).slice(2, 8)}`
        try {
          const first = await start({ BATON_INSTANCE: instance, BATON_CRASH_AT: `${point}:7` }, schema)
          // Orders one at a time until the runtime killed itself (each acknowledged before the next).
          const client = await mqtt.connectAsync(first.url, { protocolVersion: 4, reconnectPeriod: 0 })
          client.on("error", () => undefined)
          let acked = 0
          const gone = first.running.exited.then(() => Promise.reject(new Error("gone")))
          gone.catch(() => undefined)
          try {
            for (; acked < size; acked++) await Promise.race([client.publishAsync("initiate/place-order", orderPayload(run, acked), { qos: 1 }), gone])
          } catch {
            // killed meanwhile
          }
          expect(await first.running.exited, `the runtime killed itself at ${point}:7`).toBe("SIGKILL")
          expect(acked, "orders acknowledged before the kill").toBeGreaterThan(0)
          client.end(true)
          await first.end()
          const second = await start({ BATON_INSTANCE: instance }, schema)
          try {
            await placeOrders(second, run)
            await until(second, `${size} orders in a terminal state`, async () => (await terminal(second, run)) >= size, 60_000)
            await checkQuiescent(second, run, false)
            // Its messages ran in their roots' transactions (a row written done at once: received when done).
            const chained = await second.number("SELECT COUNT(*) FROM inbox WHERE processor = $1 AND received_at = done_at", [point.split("@")[1]])
            expect(chained, `${point.split("@")[1]}'s messages chained`).toBeGreaterThan(size / 2)
            expect(await second.end("SIGTERM")).toBe(0)
          } finally {
            await second.end()
          }
        } finally {
          await schema.drop()
        }
      },
      120_000
    )
})
