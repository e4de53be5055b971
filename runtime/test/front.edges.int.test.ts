/**
 * `BATON_FRONT=thread` at its edges (docs/front-thread.md, stage 2): cases found by an adversarial
 * reading of the front's code (each red before its fix), each one a real runtime on ephemeral
 * ports with real MQTT clients and real SQLite; the stop under load in every mode.
 */
import { spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { createInterface } from "node:readline"
import { DatabaseSync } from "node:sqlite"
import { fileURLToPath } from "node:url"
import { Users } from "@baton/auth"
import mqtt from "mqtt"
import { describe, expect, it, vi } from "vitest"
import { cards } from "./orders.ts"
import { connect, sleep, startRuntime, until } from "./support.ts"

// Called as Front.ts creates the front's worker (named `baton-front`): the only way to act at that
// moment from here. Nothing else about the worker changes.
const hooks = vi.hoisted(() => ({ frontCreated: undefined as (() => void) | undefined }))
vi.mock("node:worker_threads", async (importOriginal) => {
  const original = await importOriginal<typeof import("node:worker_threads")>()
  class Hooked extends original.Worker {
    constructor(...args: ConstructorParameters<typeof original.Worker>) {
      super(...args)
      if (args[1]?.name === "baton-front") hooks.frontCreated?.()
    }
  }
  return { ...original, Worker: Hooked }
})

const placeOrder = (id: string, customerId: string) =>
  JSON.stringify({ id, type: "place-order", data: { customerId, email: "review@example.com", items: [{ sku: "BOOK-2", qty: 1, price: 3 }], payment: { card: cards.approved } } })

const runtimeDir = join(dirname(fileURLToPath(import.meta.url)), "..")

// Two clients in a child process (main's loop is blocked meanwhile): both connect, then each
// subscribes to the same filter after its own delay, and the SUBACKs' times are printed.
const twoSubscribersScript = `
const mqtt = require("mqtt")
const [url, filter, ...delays] = process.argv.slice(1)
const out = (line) => process.stdout.write(JSON.stringify(line) + "\\n")
const clients = delays.map(() => mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, clean: true }))
let connected = 0
const subacks = []
for (const c of clients) c.on("error", (e) => { process.stderr.write(String(e)); process.exit(2) })
for (const c of clients) c.on("connect", () => {
  if (++connected < clients.length) return
  out({ t: "connected" })
  clients.forEach((client, i) => setTimeout(() => client.subscribe(filter, { qos: 1 }, (error) => {
    if (error) { process.stderr.write(String(error)); process.exit(3) }
    subacks[i] = Date.now()
    if (subacks.filter((s) => s !== undefined).length === clients.length) {
      out({ t: "subacks", at: subacks })
      for (const c of clients) c.end(true)
      process.exit(0)
    }
  }), Number(delays[i])))
})
`

/** Blocks this thread, and so the runtime's main event loop, for `ms`. */
const spin = (ms: number) => {
  const end = Date.now() + ms
  while (Date.now() < end) {
    // main blocked
  }
}

describe("BATON_FRONT=thread, reviewed", () => {
  // The rule of the mirror: a client whose SUBACK came back gets every matching event decided
  // after it, so a new filter's SUBACK waits until main's mirror holds it. A second client that
  // subscribes to the same filter while the first one's announcement is still on its way to main
  // must wait for it too: granted at once, its SUBACK comes while main still decides with a mirror
  // that says no for it. Main is blocked here, so no announcement can reach its mirror.
  it("a second SUBSCRIBE of a filter still being announced waits for main's mirror too", async () => {
    const h = await startRuntime({ front: "thread" })
    try {
      const child = spawn(process.execPath, ["-e", twoSubscribersScript, h.url, "events/order-created", "50", "300"], { cwd: runtimeDir, stdio: ["ignore", "pipe", "pipe"] })
      let stderr = ""
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
      let resumed = 0
      const subacks = await new Promise<ReadonlyArray<number>>((resolve, reject) => {
        createInterface({ input: child.stdout }).on("line", (line) => {
          const m = JSON.parse(line) as { t: string; at: ReadonlyArray<number> }
          if (m.t === "connected") {
            spin(1_000)
            resumed = Date.now()
          } else resolve(m.at)
        })
        child.on("exit", (code) => code !== 0 && reject(new Error(`subscribers exited ${code}: ${stderr}`)))
      })
      // Both SUBACKs once main ran again (its mirror holds the filter), none while it was blocked.
      expect(subacks.map((at) => at >= resumed)).toEqual([true, true])
    } finally {
      await h.stop()
    }
  })

  // The backlog's room is given back when main forwards below half; appends that failed (the
  // front's file locked past its busy timeout, by a backup or an operator's sqlite3) free their
  // places too. Were only main's `forwarded` to wake the waiting, an accept held while the failing
  // ones were in flight would wait for a `forwarded` that never comes (nothing new commits), and
  // every initiating event after it with it: no PUBACK ever again.
  it("appends that failed while others waited for room free the backlog: the next publisher is acknowledged", async () => {
    const h = await startRuntime({ front: "thread", frontBacklog: 2 })
    try {
      const lock = new DatabaseSync(join(h.config.dataDir, "front", "ingress.db"))
      lock.exec("PRAGMA busy_timeout = 1000; BEGIN IMMEDIATE")
      const first = await connect(h.url)
      first.on("error", () => undefined)
      // Three at once on one connection: two take the backlog's places (their append waits on the
      // lock, then fails), the third waits for room.
      for (let i = 0; i < 3; i++) void first.publishAsync("initiate/place-order", placeOrder(crypto.randomUUID(), `locked-${i}`), { qos: 1 }).catch(() => undefined)
      await sleep(5_600)
      lock.exec("COMMIT")
      lock.close()
      first.end(true)
      const next = await connect(h.url)
      try {
        const id = crypto.randomUUID()
        const acked = await Promise.race([next.publishAsync("initiate/place-order", placeOrder(id, "after-lock"), { qos: 1 }).then(() => "acked"), sleep(4_000).then(() => "no PUBACK within 4 s")])
        expect(acked).toBe("acked")
        await until("its order created", async () => (await h.runtime.store.run(h.runtime.store.query("SELECT count(*) AS n FROM orders WHERE customer_id = 'after-lock'").all()))[0]!.n === 1)
      } finally {
        next.end(true)
      }
    } finally {
      await h.stop()
    }
  }, 30_000)

  // The users file is handed to the front in its `workerData`, and each reload after that across
  // the port, once the front is there. A reload while the worker starts (main's `front` not yet
  // set) must reach it too: otherwise a user removed then stays able to connect to the front until
  // the file changes again (main's HTTP side refusing it meanwhile).
  it("a users file reloaded while the front thread starts is the one the front's guard checks", async () => {
    const dir = mkdtempSync(join(tmpdir(), "baton-front-users-"))
    const authFile = join(dir, "users.json")
    const password = "correct horse"
    const both = await Users.addUser(await Users.addUser({ users: {}, tokens: {} }, "kept", password, ["client"]), "removed", password, ["client"])
    Users.save(authFile, both)
    hooks.frontCreated = () => {
      hooks.frontCreated = undefined
      // Soon after the worker is created, well before it is listening: the next poll reloads it.
      setTimeout(() => Users.save(authFile, { ...both, users: { kept: both.users.kept! } }), 30)
    }
    const h = await startRuntime({ front: "thread", authFile, authReloadMs: 10 })
    try {
      await until("the reload logged", () => h.logger.lines.some((l) => l.includes("users file reloaded")))
      const tryConnect = (username: string) =>
        mqtt.connectAsync(h.url, { protocolVersion: 4, reconnectPeriod: 0, clean: true, clientId: `${username}-${crypto.randomUUID().slice(0, 6)}`, username, password }).then(
          (c) => c.endAsync().then(() => "connected"),
          () => "refused"
        )
      expect(await tryConnect("kept")).toBe("connected")
      expect(await tryConnect("removed")).toBe("refused")
    } finally {
      hooks.frontCreated = undefined
      await h.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  })

  // Stopping, main stops its consumers and processors before the front's thread closes; the front
  // keeps acknowledging meanwhile (what it commits then is forwarded at the next start, from its
  // log above main's mark). Were main to drain on those late `accepted`, it would hand them to
  // processors already stopped, which reject them ("actor ... is stopped"): acknowledged, lost.
  // In every mode a stop under sustained load ends (the drain stops after its page once the
  // ingress stopped; in `log` mode it went on while the publishes did, so the stop hung).
  it.each(["thread", "log", "off"] as const)("%s: stopped under load and started again, every order acknowledged exists", async (front) => {
    const dataDir = mkdtempSync(join(tmpdir(), "baton-front-stop-"))
    try {
      const a = await startRuntime({ front, dataDir, durable: true })
      const clients = await Promise.all([0, 1, 2, 3].map(() => connect(a.url)))
      const acked: Array<string> = []
      let going = true
      // Each client one order at a time, until its connection goes with the broker.
      const loops = clients.map(async (c, k) => {
        c.on("error", () => undefined)
        for (let n = 0; going; n++) {
          const customer = `stop-${k}-${n}`
          try {
            await c.publishAsync("initiate/place-order", placeOrder(crypto.randomUUID(), customer), { qos: 1 })
          } catch {
            return
          }
          acked.push(customer)
        }
      })
      await sleep(400)
      await a.runtime.stop()
      going = false
      for (const c of clients) c.end(true)
      await Promise.race([Promise.all(loops), sleep(2_000)])
      expect(acked.length).toBeGreaterThan(0)
      const b = await startRuntime({ front, dataDir, durable: true })
      try {
        const created = async () => new Set((await b.runtime.store.run(b.runtime.store.query("SELECT customer_id FROM orders WHERE customer_id LIKE 'stop-%'").all())).map((r) => String(r.customer_id)))
        await until("every acknowledged order created", async () => {
          const have = await created()
          return acked.every((c) => have.has(c))
        }).catch(async (error: unknown) => {
          const have = await created()
          throw new Error(`${String(error)}: missing ${acked.filter((c) => !have.has(c)).join(",")} of ${acked.length}`)
        })
      } finally {
        await b.runtime.stop()
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true })
    }
  }, 40_000)
})
